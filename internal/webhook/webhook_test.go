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

const secret = corral.Secret("s3cret-for-tests")

var target = corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}

func server(t testing.TB, maxBody int64) (*httptest.Server, corral.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return serverOn(t, st, maxBody), st
}

func serverOn(t testing.TB, st corral.Store, maxBody int64) *httptest.Server {
	m, err := route.New([]corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "process",
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}}, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := webhook.New([]corral.Target{target}, fake.NewForge(), ledger.New(st, m, nil, nil), maxBody, nil, nil)
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/{target}", h)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func payload(jobID int64, action string) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": action,
		"workflow_job": map[string]any{"id": jobID, "run_id": 1, "name": "build", "labels": []string{"self-hosted", "corral"},
			"status": action, "created_at": "2026-11-25T10:00:00Z", "runner_name": nil},
		"repository": map[string]any{"id": 1, "name": "app", "full_name": "acme/app"},
		"sender":     map[string]any{"login": "octocat"},
	})
	return b
}

func post(t *testing.T, url, delivery string, body []byte, sig string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", delivery, sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func jobCount(t *testing.T, st corral.Store) int {
	t.Helper()
	var n int
	_ = st.View(context.Background(), func(tx corral.ReadTx) error {
		js, err := tx.Jobs(context.Background(), corral.JobFilter{})
		n = len(js)
		return err
	})
	return n
}

func TestHandler_ServeHTTP(t *testing.T) {
	ts, st := server(t, 64<<10)
	url := ts.URL + "/webhooks/acme"
	good := payload(5_000_000_000, "queued")
	cases := []struct {
		name, url, delivery, sig string
		body                     []byte
		code                     int
		says                     string
	}{
		{"wrong signature", url, "d1", github.Sign("other-secret", good), good, 401, "signature"},
		{"no signature", url, "d1", "", good, 401, "X-Hub-Signature-256"},
		{"unknown target", ts.URL + "/webhooks/nope", "d1", github.Sign(secret, good), good, 404, "unknown target"},
		{"malformed", url, "d1", github.Sign(secret, []byte("{not json")), []byte("{not json"), 400, ""},
		{"oversized", url, "d1", "sha256=00", bytes.Repeat([]byte("x"), 65<<10), 413, "over"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := post(t, c.url, c.delivery, c.body, c.sig)
			if code != c.code || !strings.Contains(body, c.says) {
				t.Fatalf("got %d %s, want %d mentioning %q", code, body, c.code, c.says)
			}
			if strings.Contains(body, secret.Reveal()) {
				t.Fatal("answer leaks the secret")
			}
			if n := jobCount(t, st); n != 0 {
				t.Fatalf("a refused delivery recorded %d jobs", n)
			}
		})
	}
	t.Run("accepted once", func(t *testing.T) {
		for i, want := range []string{`"status":"accepted"`, `"status":"duplicate"`} {
			code, body := post(t, url, "same-delivery", good, github.Sign(secret, good))
			if code != 202 || !strings.Contains(body, want) {
				t.Fatalf("delivery %d: %d %s, want 202 %s", i+1, code, body, want)
			}
		}
		if n := jobCount(t, st); n != 1 {
			t.Fatalf("jobs = %d, want 1", n)
		}
	})
}
