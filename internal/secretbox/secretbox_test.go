package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func TestBox_PutGet(t *testing.T) {
	data := t.TempDir()
	if _, err := Open(data, func(string) string { return "" }, false); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	b, err := Open(data, func(string) string { return "" }, true)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(data, KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if err := b.Put("github-app-1-key", "-----BEGIN PRIVATE KEY-----x"); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(data, Dir, "github-app-1-key.sealed"))
	if bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatal("the secret is stored in clear")
	}
	b2, err := Open(data, func(string) string { return "" }, false) // a restart reads the same key
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b2.Get("github-app-1-key"); err != nil || got.Reveal() != "-----BEGIN PRIVATE KEY-----x" {
		t.Fatalf("Get = %v", err)
	}
	// A file moved to another name does not open.
	_ = os.WriteFile(filepath.Join(data, Dir, "other.sealed"), raw, 0o600)
	if _, err := b2.Get("other"); !errors.Is(err, corral.ErrUnauthorized) {
		t.Fatalf("renamed file: %v", err)
	}
	if _, err := b2.Get("missing"); !errors.Is(err, corral.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := b2.Put("../escape", "x"); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("bad name: %v", err)
	}
	other, _ := New(bytes.Repeat([]byte{7}, 32), filepath.Join(data, Dir))
	if _, err := other.Get("github-app-1-key"); !errors.Is(err, corral.ErrUnauthorized) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestOpen_EnvKey(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	b, err := Open(t.TempDir(), func(k string) string { return map[string]string{EnvKey: key}[k] }, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put("x", "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.TempDir(), func(string) string { return "!!" }, false); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("bad env key: %v", err)
	}
}

// Seal and Unseal: a sealed value opens under its name with its key, and
// not under another name, with another key, or when tampered with; it
// never holds the plaintext.
func TestSealUnseal(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	b1, _ := New(k1, t.TempDir())
	b2, _ := New(k2, t.TempDir())
	const plain = "ghp_sealed_value_123"
	s, err := b1.Seal("target/acme/token", plain)
	if err != nil || strings.Contains(s, plain) {
		t.Fatalf("seal: %q %v", s, err)
	}
	if got, err := b1.Unseal("target/acme/token", s); err != nil || got.Reveal() != plain {
		t.Fatalf("unseal: %v", err)
	}
	if _, err := b1.Unseal("target/other/token", s); err == nil {
		t.Error("opened under another name")
	}
	if _, err := b2.Unseal("target/acme/token", s); err == nil {
		t.Error("opened with another key")
	}
	if _, err := b1.Unseal("target/acme/token", "!!"+s[2:]); err == nil {
		t.Error("opened when tampered")
	}
}
