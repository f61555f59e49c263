// Package secretbox keeps secrets encrypted at rest: AES-256-GCM, one file
// per secret under a directory, the secret's name bound to its ciphertext
// (a file renamed to another secret's name does not open). The key comes
// from the environment (CORRAL_SECRET_KEY, base64 of 32 bytes) or from a
// key file kept with 0600 permissions.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/corral-ci/corral/internal/corral"
)

// EnvKey names the environment variable that holds the key.
const EnvKey = "CORRAL_SECRET_KEY"

// KeyFile is the key file's name inside the data directory.
const KeyFile = "secret.key"

// Dir is where sealed secrets live inside the data directory.
const Dir = "secrets"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)

// ErrNoKey: no key in the environment and no key file.
var ErrNoKey = errors.New("no secret key: set " + EnvKey + " or create the key file")

// Box seals and opens secrets in a directory.
type Box struct {
	aead cipher.AEAD
	dir  string
}

// New returns a box over dir with a 32-byte key.
func New(key []byte, dir string) (*Box, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key: want 32 bytes, got %d: %w", len(key), corral.ErrBadInput)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead, dir: dir}, nil
}

// Open opens the box of a data directory: the key from getenv(EnvKey), else
// from dataDir/secret.key; create makes a new key file when neither exists.
func Open(dataDir string, getenv func(string) string, create bool) (*Box, error) {
	dir := filepath.Join(dataDir, Dir)
	if v := getenv(EnvKey); v != "" {
		key, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("%s: not base64: %w", EnvKey, corral.ErrBadInput)
		}
		return New(key, dir)
	}
	path := filepath.Join(dataDir, KeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("write key file: %w", err)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s)", ErrNoKey, path)
	} else if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	return New(key, dir)
}

func (b *Box) path(name string) (string, error) {
	if !nameRE.MatchString(name) {
		return "", fmt.Errorf("secret name %q: want a-z, 0-9, '.', '_' and '-': %w", name, corral.ErrBadInput)
	}
	return filepath.Join(b.dir, name+".sealed"), nil
}

// Put seals a secret under name, replacing any before it.
func (b *Box) Put(name string, s corral.Secret) error {
	p, err := b.path(name)
	if err != nil {
		return err
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := b.aead.Seal(nonce, nonce, []byte(s.Reveal()), []byte(name))
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, sealed, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Get opens the secret sealed under name.
func (b *Box) Get(name string) (corral.Secret, error) {
	p, err := b.path(name)
	if err != nil {
		return "", err
	}
	sealed, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sealed secret %q: %w", name, corral.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	n := b.aead.NonceSize()
	if len(sealed) < n {
		return "", fmt.Errorf("sealed secret %q is truncated: %w", name, corral.ErrBadInput)
	}
	plain, err := b.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return "", fmt.Errorf("sealed secret %q does not open with this key: %w", name, corral.ErrUnauthorized)
	}
	return corral.Secret(plain), nil
}

// Seal seals s for keeping in the store (not in a file): base64 of nonce
// and ciphertext, with name bound to it as Put does (a sealed value copied
// under another name does not open).
func (b *Box) Seal(name string, s corral.Secret) (string, error) {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b.aead.Seal(nonce, nonce, []byte(s.Reveal()), []byte(name))), nil
}

// Unseal opens a value Seal made under name.
func (b *Box) Unseal(name, sealed string) (corral.Secret, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	n := b.aead.NonceSize()
	if err != nil || len(raw) < n {
		return "", fmt.Errorf("sealed secret %q is not a sealed value: %w", name, corral.ErrBadInput)
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return "", fmt.Errorf("sealed secret %q does not open with this key: %w", name, corral.ErrUnauthorized)
	}
	return corral.Secret(plain), nil
}
