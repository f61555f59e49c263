package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a fresh self-signed certificate for 127.0.0.1 and its
// key, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corral test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(c)
	return certFile, keyFile, roots
}

// TestServe_ListenerConfigErrors: a TLS pair given in half, a key that is
// not the certificate's, or an API certificate without api_listen is
// refused with the key named.
func TestServe_ListenerConfigErrors(t *testing.T) {
	cert, key, _ := selfSigned(t)
	other, _, _ := selfSigned(t)
	for _, tc := range []struct{ cfg, want string }{
		{"tls_cert: " + cert + "\n", "tls_cert and tls_key go together"},
		{"tls_cert: " + other + "\ntls_key: " + key + "\n", "cannot load the certificate and key"},
		{"api_tls_cert: " + cert + "\napi_tls_key: " + key + "\n", "api_listen is not"},
		{"api_listen: nope\n", "api_listen: want host:port"},
		{"listen: 127.0.0.1:9000\napi_listen: 127.0.0.1:9000\n", "is listen's address too"},
	} {
		out, err := runCmd("serve", "-check", "-config", writeFile(t, tc.cfg+routeConfig))
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%q: err %v, output %q; want %q", tc.cfg, err, out, tc.want)
		}
	}
}
