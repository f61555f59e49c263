package app_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func (f *fixture) write(t *testing.T, method, url, who, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.tok[who])
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestApp_TargetWrites: a target written through the API is checked with
// the config file's rules (a bad value is 400 naming its key), its
// credentials are sealed before the store and never answered (GET says
// only whether one is set), the catalog opens them at once, a tenant
// admin writes only its own tenant, and DELETE removes it.
func TestApp_TargetWrites(t *testing.T) {
	f := newFixture(t)
	const pat, whs, pat2 = "ghp_planted_PAT_0123456789", "planted-webhook-secret-42", "ghp_second_PAT_9876543210"
	for _, tc := range []struct {
		who, body, key string
		code           int
	}{
		{"admin", `{"id":"bad","kind":"gitlab","scope":"org","path":"x","token":"t","webhook_secret":"w"}`, "kind", 400},
		{"admin", `{"id":"bad","kind":"github","scope":"repo","path":"noslash","token":"t","webhook_secret":"w"}`, "path", 400},
		{"admin", `{"id":"bad","kind":"github","scope":"org","path":"x","webhook_secret":"w"}`, "token", 400},
		{"admin", `{"id":"bad","kind":"github","scope":"org","path":"x","token":"t"}`, "webhook_secret", 400},
		{"admin", `{"id":"Bad Id","kind":"github","scope":"org","path":"x","token":"t","webhook_secret":"w"}`, "id", 400},
		{"admin", `{"id":"bad","kind":"github","scope":"org","path":"x","token":"t","webhook_secret":"w","colour":"red"}`, "colour", 400},
		{"admin", `{"id":"bad","tenant":"nope","kind":"github","scope":"org","path":"x","token":"t","webhook_secret":"w"}`, "tenant", 400},
		{"admin", `{"id":"acme","kind":"github","scope":"org","path":"x","token":"t","webhook_secret":"w"}`, "exists", 409},
		{"other-tenant-admin", `{"id":"bad","tenant":"default","kind":"github","scope":"org","path":"x","token":"t","webhook_secret":"w"}`, "tenant", 403},
	} {
		code, out := f.write(t, "POST", "/api/v1/targets", tc.who, tc.body)
		if code != tc.code || !strings.Contains(out, tc.key) {
			t.Errorf("POST %s as %s: %d %s, want %d naming %q", tc.body, tc.who, code, out, tc.code, tc.key)
		}
	}
	// A tenant admin's target goes to its own tenant.
	code, out := f.write(t, "POST", "/api/v1/targets", "tenant-admin",
		`{"id":"made","kind":"github","scope":"org","path":"acme-org","token":"`+pat+`","webhook_secret":"`+whs+`"}`)
	if code != 201 || strings.Contains(out, pat) || strings.Contains(out, whs) {
		t.Fatalf("POST: %d %s", code, out)
	}
	var got struct {
		Target struct {
			Tenant           string
			URL              string
			WebhookSecretSet bool `json:"webhook_secret_set"`
			TokenSet         bool `json:"token_set"`
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Target.Tenant != "default" || got.Target.URL != "https://api.github.com" || !got.Target.TokenSet || !got.Target.WebhookSecretSet {
		t.Fatalf("created: %+v", got.Target)
	}
	live, ok := f.a.Catalog.Current().Target("made")
	if !ok || live.Token.Reveal() != pat || live.WebhookSecret.Reveal() != whs {
		t.Fatalf("the catalog does not hold the opened credentials: %v", ok)
	}
	stored := func() corral.Target {
		t.Helper()
		var ts []corral.Target
		_ = f.st.View(context.Background(), func(tx corral.ReadTx) error {
			var err error
			ts, err = tx.Targets(context.Background())
			return err
		})
		for _, x := range ts {
			if x.ID == "made" {
				return x
			}
		}
		t.Fatal("target made is not in the store")
		return corral.Target{}
	}
	st := stored()
	raw, _ := json.Marshal(st.Sealed)
	if st.Token != "" || st.WebhookSecret != "" || len(st.Sealed) != 2 || strings.Contains(string(raw), pat) || strings.Contains(string(raw), whs) {
		t.Fatalf("store holds %s (token %q)", raw, st.Token.Reveal())
	}
	// Another tenant can neither change, delete, nor see it.
	if code, _ := f.write(t, "PATCH", "/api/v1/targets/made", "other-tenant-admin", `{"token":"x"}`); code != 404 {
		t.Errorf("PATCH by another tenant: %d", code)
	}
	if code, _ := f.write(t, "DELETE", "/api/v1/targets/made", "other-tenant-admin", ""); code != 404 {
		t.Errorf("DELETE by another tenant: %d", code)
	}
	// A tenant admin cannot move its target to another tenant.
	if code, _ := f.write(t, "PATCH", "/api/v1/targets/made", "tenant-admin", `{"tenant":"other"}`); code != 403 {
		t.Errorf("PATCH to another tenant: %d", code)
	}
	// PATCH a new token: the catalog has it at once, the webhook secret stays.
	if code, out := f.write(t, "PATCH", "/api/v1/targets/made", "tenant-admin", `{"token":"`+pat2+`"}`); code != 200 || strings.Contains(out, pat2) {
		t.Fatalf("PATCH token: %d %s", code, out)
	}
	live, _ = f.a.Catalog.Current().Target("made")
	if live.Token.Reveal() != pat2 || live.WebhookSecret.Reveal() != whs {
		t.Fatal("after PATCH the catalog does not hold the new token and the old webhook secret")
	}
	if code, out := f.write(t, "PATCH", "/api/v1/targets/made", "admin", `{"scope":"repo"}`); code != 400 || !strings.Contains(out, "path") {
		t.Errorf("PATCH to a bad scope/path: %d %s", code, out)
	}
	_, list := f.write(t, "GET", "/api/v1/targets", "admin", "")
	for _, s := range []string{pat, pat2, whs} {
		if strings.Contains(list, s) {
			t.Fatalf("GET /targets shows a credential: %s", list)
		}
	}
	if code, _ := f.write(t, "DELETE", "/api/v1/targets/made", "tenant-admin", ""); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if _, ok := f.a.Catalog.Current().Target("made"); ok {
		t.Fatal("deleted target still in the catalog")
	}
}
