package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

func newApp(t *testing.T) *app.App {
	t.Helper()
	a, _ := newAppStore(t)
	return a
}

// newAppStore is newApp with its store.
func newAppStore(t *testing.T) (*app.App, corral.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}},
		ControllerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, st
}

func get(t *testing.T, h http.Handler, url string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	return rec.Code, rec.Body.String()
}

func TestApp_API(t *testing.T) {
	a := newApp(t)
	h := a.Handler()
	body := jobPayload(42, "queued", "")
	req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", "d-1", github.Sign(secret, body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Fatalf("webhook: %d %s", rec.Code, rec.Body)
	}
	code, out := get(t, h, "/api/v1/jobs")
	var list struct {
		Jobs []app.JobView `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 200 || len(list.Jobs) != 1 {
		t.Fatalf("jobs: %d %s %v", code, out, err)
	}
	j := list.Jobs[0]
	if j.ForgeJobID != 42 || j.State != "routed" || len(j.Pools) != 1 || j.Pools[0] != "linux" {
		t.Fatalf("job = %+v", j)
	}
	code, out = get(t, h, "/api/v1/jobs/"+itoa(j.ID))
	if code != 200 || !strings.Contains(out, `"kind":"queued"`) || !strings.Contains(out, `"kind":"routed"`) {
		t.Fatalf("job detail: %d %s", code, out)
	}
	for url, want := range map[string]int{"/api/v1/jobs/999": 404, "/api/v1/jobs/abc": 400, "/api/v1/jobs?after=x": 400,
		"/healthz": 200, "/api/v1/instances": 200, "/api/v1/targets": 200} {
		if code, out := get(t, h, url); code != want {
			t.Errorf("GET %s = %d %s, want %d", url, code, out, want)
		}
	}
	for _, url := range []string{"/api/v1/jobs", "/api/v1/instances", "/api/v1/targets", "/healthz"} {
		if _, out := get(t, h, url); strings.Contains(out, secret.Reveal()) {
			t.Fatalf("%s leaks the webhook secret", url)
		}
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
