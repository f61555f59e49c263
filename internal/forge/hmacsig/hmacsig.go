// Package hmacsig signs and checks webhook bodies with HMAC-SHA256 as
// GitHub, Gitea and Forgejo do: the lowercase hex of the MAC of the exact
// bytes. Each forge's parser adds its own header names and prefixes.
package hmacsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/corral-ci/corral/internal/corral"
)

// ErrNotHex: the signature is not hex at all.
var ErrNotHex = errors.New("signature is not hex")

// Sum returns the lowercase hex HMAC-SHA256 of body.
func Sum(secret corral.Secret, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret.Reveal()))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Check compares hexSig with the HMAC-SHA256 of body in constant time. It
// returns ErrNotHex for a signature that is not hex, and false for one that
// does not match.
func Check(secret corral.Secret, body []byte, hexSig string) (bool, error) {
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false, ErrNotHex
	}
	m := hmac.New(sha256.New, []byte(secret.Reveal()))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil)), nil
}
