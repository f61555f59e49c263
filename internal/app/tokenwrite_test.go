package app_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestApp_TokenWrites: a minted token's secret is answered once and then
// opens the API in its scope; GET /tokens never shows it; a tenant-admin
// mints only tenant tokens of its own tenant and revokes only its own
// tenant's; a revoked token is refused at once.
func TestApp_TokenWrites(t *testing.T) {
	f := newFixture(t)
	mint := func(who, body string) (int, string, string) {
		t.Helper()
		code, out := f.write(t, "POST", "/api/v1/tokens", who, body)
		var got struct {
			Token  struct{ ID string }
			Secret string
		}
		_ = json.Unmarshal([]byte(out), &got)
		return code, got.Token.ID, got.Secret
	}
	use := func(secret, path string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range []struct {
		who, body string
		code      int
	}{
		{"tenant-admin", `{"name":"x","scope":"admin"}`, 403},
		{"tenant-admin", `{"name":"x","scope":"metrics"}`, 403},
		{"tenant-admin", `{"name":"x","scope":"tenant-read","tenant":"other"}`, 403},
		{"tenant-read", `{"name":"x","scope":"tenant-read"}`, 403},
		{"admin", `{"name":"x","scope":"root"}`, 400},
		{"admin", `{"name":"x","scope":"tenant-read"}`, 400}, // no tenant
		{"admin", `{"name":"x","scope":"tenant-read","tenant":"nope"}`, 400},
		{"admin", `{"name":"x","scope":"admin","expires":"soon"}`, 400},
		{"admin", `{"scope":"admin"}`, 400},
	} {
		if code, _, _ := mint(tc.who, tc.body); code != tc.code {
			t.Errorf("mint %s as %s: %d, want %d", tc.body, tc.who, code, tc.code)
		}
	}
	code, id, secret := mint("tenant-admin", `{"name":"ci","scope":"tenant-read","expires":"1h"}`)
	if code != 201 || secret == "" {
		t.Fatalf("mint: %d", code)
	}
	if c := use(secret, "/api/v1/jobs"); c != 200 {
		t.Fatalf("the minted token: %d", c)
	}
	if c := use(secret, "/api/v1/pools/linux/pause"); c != 405 && c != 403 {
		t.Fatalf("a read token on a write: %d", c)
	}
	if _, list := f.write(t, "GET", "/api/v1/tokens", "admin", ""); !strings.Contains(list, id) || strings.Contains(list, secret) {
		t.Fatalf("GET /tokens: %s", list)
	}
	if code, _ := f.write(t, "DELETE", "/api/v1/tokens/"+id, "other-tenant-admin", ""); code != 404 {
		t.Errorf("revoke by another tenant: %d", code)
	}
	if c := use(secret, "/api/v1/jobs"); c != 200 {
		t.Fatalf("after a refused revocation: %d", c)
	}
	if code, _ := f.write(t, "DELETE", "/api/v1/tokens/"+id, "tenant-admin", ""); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	if c := use(secret, "/api/v1/jobs"); c != 401 {
		t.Fatalf("a revoked token: %d, want 401", c)
	}
	_, adminID, adminSecret := mint("admin", `{"name":"ops","scope":"admin"}`)
	if c := use(adminSecret, "/api/v1/tokens"); c != 200 {
		t.Fatalf("a minted admin token: %d", c)
	}
	if code, _ := f.write(t, "DELETE", "/api/v1/tokens/"+adminID, "tenant-admin", ""); code != 404 {
		t.Errorf("a tenant-admin revoking an admin token: %d, want 404", code)
	}
}
