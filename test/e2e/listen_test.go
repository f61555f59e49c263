package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
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

// TestServe_SplitListenersTLS: with api_listen, both listeners serve TLS
// with their certificates; the webhook listener serves webhooks and
// health but no API route, the API listener the API and metrics (behind
// tokens) but no webhook.
func TestServe_SplitListenersTLS(t *testing.T) {
	cert, key, roots := selfSigned(t)
	pub, priv := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "corral.yaml")
	body := "data_dir: " + t.TempDir() + "\nlisten: " + pub + "\napi_listen: " + priv +
		"\ntls_cert: " + cert + "\ntls_key: " + key + "\napi_tls_cert: " + cert + "\napi_tls_key: " + key + `
targets:
  - {id: acme, kind: github, scope: org, path: acme, url: "http://127.0.0.1:9", webhook_secret: env:E2E_TLS_SECRET, token: env:E2E_TLS_SECRET}
pools:
  - {id: onprem, labels: [corral], provider: process, flavor: 2cpu4gb20gb, max_instances: 1}
`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"E2E_TLS_SECRET=tls-test-secret"}
	admin := e2etest.MintToken(t, e2etest.Serve{Bin: corralBin, Config: cfg, Env: env}, "-admin")
	var out bytes.Buffer
	cmd := exec.Command(corralBin, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	call := func(method, url, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(20 * time.Second)
	for call("GET", "https://"+priv+"/healthz", "") != 200 || call("GET", "https://"+pub+"/healthz", "") != 200 {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy TLS listeners within 20s:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct {
		method, url, token string
		want               int
	}{
		{"GET", "https://" + pub + "/api/v1/jobs", admin, 404},
		{"GET", "https://" + pub + "/api/v1/targets", admin, 404},
		{"GET", "https://" + pub + "/metrics", admin, 404},
		{"POST", "https://" + pub + "/webhooks/acme", "", 401}, // served: its signature check refuses
		{"GET", "https://" + priv + "/api/v1/jobs", admin, 200},
		{"GET", "https://" + priv + "/api/v1/jobs", "", 401},
		{"GET", "https://" + priv + "/metrics", admin, 200},
		{"POST", "https://" + priv + "/webhooks/acme", "", 404},
		{"GET", "https://" + priv + "/readyz", "", 200},
	} {
		if got := call(tc.method, tc.url, tc.token); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.url, got, tc.want)
		}
	}
	// Plain HTTP is not served on a TLS listener.
	resp, err := http.Get("http://" + priv + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS API listener")
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
