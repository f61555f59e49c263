package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/route"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
	"github.com/corral-ci/corral/internal/webhook"
)

func appTargets() []corral.Target {
	app := func(id string, scope corral.Scope, path, inst string) corral.Target {
		return corral.Target{ID: id, TenantID: "default", Kind: corral.KindGitHub, Scope: scope, Path: path,
			WebhookSecret: secret, Settings: map[string]string{"app_id": "7", "installation_id": inst}}
	}
	return []corral.Target{
		app("repo", corral.ScopeRepo, "acme/app", "100"),
		app("org", corral.ScopeOrg, "acme", "100"),
		app("ent", corral.ScopeEnterprise, "bigcorp", "200"),
	}
}

func appPayload(jobID, installation int64, repo string) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": "queued",
		"workflow_job": map[string]any{"id": jobID, "run_id": 1, "name": "build", "labels": []string{"corral"},
			"status": "queued", "created_at": "2026-11-25T10:00:00Z"},
		"repository":   map[string]any{"id": 1, "name": "x", "full_name": repo},
		"installation": map[string]any{"id": installation},
	})
	return b
}

func TestHandler_ServeApp(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := route.New([]corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "process",
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}}, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := webhook.New(appTargets(), fake.NewForge(), ledger.New(st, m, nil, nil), 0, nil, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/app/{app}", h.ServeApp)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	post := func(app, delivery, event string, body []byte, sig string) (int, string) {
		req, _ := http.NewRequest("POST", ts.URL+"/webhooks/app/"+app, bytes.NewReader(body))
		req.Header = fake.Header(event, delivery, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	cases := []struct {
		name, app, event, sig string
		body                  []byte
		code                  int
		says                  string
	}{
		{"repository target first", "7", "workflow_job", "", appPayload(1, 100, "acme/app"), 202, `"target":"repo"`},
		{"then its organization", "7", "workflow_job", "", appPayload(2, 100, "acme/other"), 202, `"target":"org"`},
		{"then the enterprise", "7", "workflow_job", "", appPayload(3, 200, "bigcorp-team/tool"), 202, `"target":"ent"`},
		{"unknown installation", "7", "workflow_job", "", appPayload(4, 999, "acme/app"), 404, "installation 999"},
		{"unknown app", "8", "workflow_job", "", appPayload(5, 100, "acme/app"), 404, "GitHub App"},
		{"wrong signature", "7", "workflow_job", "sha256=00", appPayload(6, 100, "acme/app"), 401, "signature"},
		{"ping", "7", "ping", "", []byte(`{"zen":"hi","hook_id":1}`), 202, `"status":"ignored"`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sig := c.sig
			if sig == "" {
				sig = github.Sign(secret, c.body)
			}
			code, out := post(c.app, "d"+string(rune('a'+i)), c.event, c.body, sig)
			if code != c.code || !strings.Contains(out, c.says) {
				t.Fatalf("got %d %s, want %d mentioning %q", code, out, c.code, c.says)
			}
		})
	}
	if n := jobCount(t, st); n != 3 {
		t.Fatalf("jobs recorded = %d, want 3 (refused deliveries record nothing)", n)
	}
}
