package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newStore(t *testing.T) corral.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func mint(t *testing.T, st corral.Store, scope corral.TokenScope, tenant string, expires time.Duration, now time.Time) (string, corral.Token) {
	t.Helper()
	secret, tk, err := auth.New("t", scope, tenant, expires, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutToken(context.Background(), tk) }); err != nil {
		t.Fatal(err)
	}
	return secret, tk
}

func TestGuard(t *testing.T) {
	st := newStore(t)
	clock := corral.NewFakeClock(t0)
	var logBuf syncBuffer
	g := &auth.Guard{Store: st, Clock: clock, Logger: slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	admin, _ := mint(t, st, corral.ScopeAdmin, "", 0, t0)
	read, readTk := mint(t, st, corral.ScopeTenantRead, "acme", time.Hour, t0)
	metrics, _ := mint(t, st, corral.ScopeMetrics, "", 0, t0)
	expired, _ := mint(t, st, corral.ScopeAdmin, "", time.Minute, t0.Add(-time.Hour))
	revoked, revokedTk := mint(t, st, corral.ScopeAdmin, "", 0, t0)
	if err := st.Update(context.Background(), func(tx corral.Tx) error {
		return tx.RevokeToken(context.Background(), revokedTk.ID, t0)
	}); err != nil {
		t.Fatal(err)
	}
	var seen corral.Token
	h := g.Wrap(auth.TenantRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = auth.FromContext(r.Context())
		w.WriteHeader(204)
	}))
	for _, tc := range []struct {
		name, header string
		want         int
		body         string
	}{
		{"missing", "", 401, "missing bearer token"},
		{"not bearer", "Basic " + admin, 401, "not \\\"Bearer"},
		{"empty bearer", "Bearer ", 401, "not \\\"Bearer"},
		{"garbage", "Bearer nope", 401, "unknown token"},
		{"prefix of a real one", "Bearer " + admin[:len(admin)-1], 401, "unknown token"},
		{"expired", "Bearer " + expired, 401, "expired at"},
		{"revoked", "Bearer " + revoked, 401, "was revoked"},
		{"wrong scope", "Bearer " + metrics, 403, "needs tenant-read"},
		{"admin", "Bearer " + admin, 204, ""},
		{"tenant read, lower-case scheme", "bearer " + read, 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/api/v1/jobs", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.body) {
				t.Fatalf("%d %s, want %d with %q", rec.Code, rec.Body, tc.want, tc.body)
			}
			if tc.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.want >= 400 {
				var body map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body) != 1 || body["error"] == "" {
					t.Errorf("error body %q is not {\"error\": ...}", rec.Body)
				}
			}
		})
	}
	// Refusals are logged, a known token by its id, never a secret.
	logText := logBuf.String()
	if !strings.Contains(logText, "api request refused") || !strings.Contains(logText, revokedTk.ID) || !strings.Contains(logText, "status=403") {
		t.Errorf("refusals not logged:\n%s", logText)
	}
	for _, s := range []string{admin, read, metrics, expired, revoked} {
		if strings.Contains(logText, s) {
			t.Fatalf("the log shows a token secret:\n%s", logText)
		}
	}
	// The handler sees the token's tenant.
	req := httptest.NewRequest("GET", "/api/v1/jobs", nil)
	req.Header.Set("Authorization", "Bearer "+read)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen.ID != readTk.ID || seen.TenantID != "acme" {
		t.Fatalf("handler saw token %+v", seen)
	}
	// A use is recorded; the token expires with the clock.
	var got corral.Token
	_ = st.View(context.Background(), func(tx corral.ReadTx) error {
		got, _ = tx.TokenByHash(context.Background(), auth.Hash(read))
		return nil
	})
	if !got.LastUsed.Equal(t0) {
		t.Errorf("last used = %v, want %v", got.LastUsed, t0)
	}
	clock.Advance(time.Hour)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Fatalf("after its expiry: %d", rec.Code)
	}
}

func TestAccess_Allows(t *testing.T) {
	want := map[auth.Access][]corral.TokenScope{
		auth.Metrics:     {corral.ScopeAdmin, corral.ScopeMetrics},
		auth.TenantRead:  {corral.ScopeAdmin, corral.ScopeTenantAdmin, corral.ScopeTenantRead},
		auth.TenantAdmin: {corral.ScopeAdmin, corral.ScopeTenantAdmin},
		auth.Admin:       {corral.ScopeAdmin},
	}
	for acc, scopes := range want {
		for _, s := range corral.TokenScopes {
			in := false
			for _, x := range scopes {
				in = in || x == s
			}
			if acc.Allows(s) != in {
				t.Errorf("%s allows %s = %v", acc, s, !in)
			}
		}
	}
}

func TestNew(t *testing.T) {
	for _, bad := range []struct {
		scope  corral.TokenScope
		tenant string
	}{{"root", ""}, {corral.ScopeTenantRead, ""}, {corral.ScopeAdmin, "acme"}, {corral.ScopeMetrics, "acme"}} {
		if _, _, err := auth.New("x", bad.scope, bad.tenant, 0, t0); err == nil {
			t.Errorf("New(%s, %q) took it", bad.scope, bad.tenant)
		}
	}
	s1, tk, err := auth.New("x", corral.ScopeTenantAdmin, "acme", time.Hour, t0)
	s2, _, _ := auth.New("x", corral.ScopeTenantAdmin, "acme", time.Hour, t0)
	if err != nil || s1 == s2 || !strings.HasPrefix(s1, auth.SecretPrefix) || len(s1) < 40 ||
		string(tk.Hash) != string(auth.Hash(s1)) || strings.Contains(string(tk.Hash), s1) || !tk.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("New: %q %q %+v %v", s1, s2, tk, err)
	}
}

// BenchmarkGuard is the cost a token adds to a request: the header parse,
// the SHA-256 and the lookup in a real SQLite store.
func BenchmarkGuard(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	secret, tk, _ := auth.New("bench", corral.ScopeAdmin, "", 0, time.Now())
	if err := st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutToken(context.Background(), tk) }); err != nil {
		b.Fatal(err)
	}
	g := &auth.Guard{Store: st, Clock: corral.SystemClock{}}
	req := httptest.NewRequest("GET", "/api/v1/jobs", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	b.ResetTimer()
	for b.Loop() {
		if _, err := g.Check(req, auth.TenantRead); err != nil {
			b.Fatal(err)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
