package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// TestRequestID_EveryRoute walks the route table: every route's answer
// (API, webhooks, dashboard, health, metrics, downloads), with a token and
// without, carries an X-Request-Id, the caller's when sane and a fresh one
// when hostile, and every JSON error body carries the same id as
// request_id.
func TestRequestID_EveryRoute(t *testing.T) {
	f := newFixture(t)
	errBodies := 0
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, r := range f.a.Routes() {
		path := param.ReplaceAllString(r.Path, "x")
		for _, tok := range []string{"", f.tok["admin"]} {
			for _, sent := range []string{"caller-id.1", "bad id\twith tab", strings.Repeat("z", 129)} {
				req := httptest.NewRequest(r.Method, path, strings.NewReader("{}"))
				req.Header.Set(reqid.Header, sent)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				w := httptest.NewRecorder()
				f.h.ServeHTTP(w, req)
				got := w.Header().Get(reqid.Header)
				if !reqid.Valid(got) {
					t.Errorf("%s (token %v, id %q): answer %d has no valid X-Request-Id (%q)", r.Pattern(), tok != "", sent, w.Code, got)
					continue
				}
				if reqid.Valid(sent) != (got == sent) {
					t.Errorf("%s: sent id %q, answer id %q", r.Pattern(), sent, got)
				}
				// corral's error bodies (not /readyz's report, and not the
				// garm metadata routes, which answer in garm's own shape).
				garm := strings.HasPrefix(r.Path, "/api/v1/metadata/") || strings.HasPrefix(r.Path, "/api/v1/callbacks/")
				if w.Code >= 400 && r.Path != "/readyz" && !garm && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
					var body httperr.Body
					if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" || body.RequestID != got {
						t.Errorf("%s: %d error body %s, want request_id %q", r.Pattern(), w.Code, w.Body, got)
					}
					errBodies++
				}
			}
		}
	}
	if errBodies < 50 {
		t.Fatalf("only %d error bodies checked", errBodies)
	}
	// A path no route serves (404 from the mux) carries one too.
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("GET", "/nowhere", nil))
	if w.Code != http.StatusNotFound || !reqid.Valid(w.Header().Get(reqid.Header)) {
		t.Fatalf("/nowhere: %d, id %q", w.Code, w.Header().Get(reqid.Header))
	}
}
