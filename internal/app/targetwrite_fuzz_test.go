package app

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
)

// FuzzTargetWrite: any body of POST/PATCH /api/v1/targets is either
// refused as bad input or becomes a target that passes the config
// file's checks; nothing panics, and a refusal never quotes a credential
// of the body.
func FuzzTargetWrite(f *testing.F) {
	f.Add(`{"id":"t","kind":"github","scope":"org","path":"acme","webhook_secret":"w-SECRET","token":"p-SECRET"}`)
	f.Add(`{"id":"t","kind":"gitea","scope":"repo","path":"a/b","url":"http://x","mode":"poll","token":"p-SECRET","poll_interval":"5s"}`)
	f.Add(`{"id":"t","kind":"github","scope":"repo","path":"a","settings":{"app_id":"1"},"token":"p-SECRET"}`)
	f.Add(`{"colour":"x"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		tw, err := decodeTargetWrite(httptest.NewRequest("POST", "/api/v1/targets", strings.NewReader(body)))
		if err != nil {
			if !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("decode error is not bad input: %v", err)
			}
			return
		}
		ct, err := tw.merge(corral.Target{})
		if err != nil {
			if !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("merge error is not bad input: %v", err)
			}
			return
		}
		got, err := config.CheckTarget(ct, []string{"default"}, nil)
		if err != nil {
			if !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("check error is not bad input: %v", err)
			}
			// (Secret marshals redacted: this is the body's other values,
			// which an error may quote.)
			rest, _ := json.Marshal(ct)
			for _, s := range []corral.Secret{ct.Token, ct.WebhookSecret} {
				if len(s) >= 8 && !strings.Contains(string(rest), s.Reveal()) && strings.Contains(err.Error(), s.Reveal()) {
					t.Fatalf("the refusal quotes a credential: %v", err)
				}
			}
			return
		}
		if got.ID != ct.ID || got.Token != ct.Token || got.TenantID == "" {
			t.Fatalf("checked target %+v from %+v", got, ct)
		}
	})
}
