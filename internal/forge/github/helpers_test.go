package github

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

const testPAT = "ghp_testSECRETtoken0123456789abcdef"

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// hit is one request the fake saw.
type hit struct {
	Method, Path, Query, Auth, IfNoneMatch, APIVersion string
	Body                                               string
	At                                                 time.Time // fake clock
}

// fakeGH is a small GitHub REST stand-in: handlers per "METHOD /path",
// a record of every request, 404 for the rest.
type fakeGH struct {
	t     *testing.T
	clock *corral.FakeClock
	mu    sync.Mutex
	h     map[string]http.HandlerFunc
	hits  []hit
	srv   *httptest.Server
	// prefix is stripped from paths (a GHES /api/v3 base).
	prefix string
}

func newFake(t *testing.T, clock *corral.FakeClock) *fakeGH {
	f := &fakeGH{t: t, clock: clock, h: map[string]http.HandlerFunc{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	// Defaults the probe needs: github.com-like meta, an empty runner list.
	f.on("GET /meta", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{}) })
	for _, p := range []string{"/repos/o/r", "/orgs/o", "/enterprises/e"} {
		f.on("GET "+p+"/actions/runners", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"total_count": 0, "runners": []any{}})
		})
	}
	return f
}

func (f *fakeGH) on(key string, h http.HandlerFunc) {
	f.mu.Lock()
	f.h[key] = h
	f.mu.Unlock()
}

func (f *fakeGH) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	r.URL.Path = strings.TrimPrefix(r.URL.Path, f.prefix)
	f.hits = append(f.hits, hit{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"),
		IfNoneMatch: r.Header.Get("If-None-Match"), APIVersion: r.Header.Get("X-GitHub-Api-Version"), Body: string(b), At: f.clock.Now()})
	h := f.h[r.Method+" "+r.URL.Path]
	f.mu.Unlock()
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	w.Header().Set("X-GitHub-Request-Id", "REQ-1")
	if h == nil {
		writeJSON(w, 404, map[string]any{"message": "Not Found"})
		return
	}
	h(w, r)
}

// count returns how many requests matched "METHOD /path".
func (f *fakeGH) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, h := range f.hits {
		if h.Method+" "+h.Path == key {
			n++
		}
	}
	return n
}

func (f *fakeGH) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.hits)
}

func (f *fakeGH) last(key string) hit {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.hits) - 1; i >= 0; i-- {
		if f.hits[i].Method+" "+f.hits[i].Path == key {
			return f.hits[i]
		}
	}
	f.t.Fatalf("no request %s", key)
	return hit{}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func runnerJSON(id int64, name string, busy bool) map[string]any {
	return map[string]any{"id": id, "name": name, "os": "linux", "status": "online", "busy": busy,
		"labels": []any{map[string]any{"id": 1, "name": "self-hosted", "type": "read-only"}}}
}

// jitOK answers generate-jitconfig with runner id.
func jitOK(id int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		writeJSON(w, 201, map[string]any{"runner": runnerJSON(id, in.Name, false), "encoded_jit_config": "SEKRITjitconfig=="})
	}
}

type testEnv struct {
	f     *fakeGH
	clock *corral.FakeClock
	cache *Cache
}

func newEnv(t *testing.T) *testEnv {
	clk := corral.NewFakeClock(t0)
	return &testEnv{f: newFake(t, clk), clock: clk, cache: NewCache()}
}

func (e *testEnv) target(scope corral.Scope, path string) corral.Target {
	return corral.Target{ID: "t-" + strings.ReplaceAll(path, "/", "-"), Kind: corral.KindGitHub, Scope: scope, Path: path,
		URL: e.f.srv.URL, Token: testPAT, RunnerPrefix: "corral-", Settings: map[string]string{}}
}

func (e *testEnv) options() Options {
	return Options{Clock: e.clock, Cache: e.cache, Sleep: func(ctx context.Context, d time.Duration) error {
		e.clock.Advance(d)
		return ctx.Err()
	}}
}

func (e *testEnv) client(t *testing.T, tg corral.Target) *Client {
	t.Helper()
	c, err := NewClient(tg, e.options())
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
	keyPEM  string
)

func appKey(t *testing.T) (*rsa.PrivateKey, string) {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		testKey = k
		keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	})
	return testKey, keyPEM
}

func mustNotContain(t *testing.T, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Fatalf("secret %q... leaked in %q", sec[:min(6, len(sec))], s)
		}
	}
}

func rateHeaders(w http.ResponseWriter, limit, remaining int, reset time.Time) {
	w.Header().Set("X-RateLimit-Limit", fmt.Sprint(limit))
	w.Header().Set("X-RateLimit-Remaining", fmt.Sprint(remaining))
	w.Header().Set("X-RateLimit-Reset", fmt.Sprint(reset.Unix()))
}
