package webhook_test

import (
	"context"
	"fmt"
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

func TestHandler_Recent(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := route.New([]corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "process",
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}}, route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := webhook.New([]corral.Target{target}, fake.NewForge(), ledger.New(st, m, nil, nil), 0, nil, nil)
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/{target}", h)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	good := payload(77, "queued")
	post(t, ts.URL+"/webhooks/acme", "d-ok", good, github.Sign(secret, good))
	post(t, ts.URL+"/webhooks/acme", "d-ok", good, github.Sign(secret, good))
	post(t, ts.URL+"/webhooks/acme", "d-bad", good, github.Sign("not-the-secret", good))
	post(t, ts.URL+"/webhooks/ghost", "d-ghost", good, github.Sign(secret, good))

	got := h.Recent()
	want := []struct {
		target, delivery, result string
		status                   int
		job                      bool
	}{ // newest first
		{"ghost", "d-ghost", "unknown_target", 404, false},
		{"acme", "d-bad", "bad_signature", 401, false},
		{"acme", "d-ok", "duplicate", 202, false}, // the ledger names no job for a duplicate
		{"acme", "d-ok", "accepted", 202, true},
	}
	if len(got) != len(want) {
		t.Fatalf("Recent() has %d deliveries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Target != w.target || g.Delivery != w.delivery || g.Result != w.result || g.Status != w.status ||
			(g.JobID != 0) != w.job || g.Event != "workflow_job" || g.At.IsZero() {
			t.Errorf("delivery %d = %+v, want %+v", i, g, w)
		}
		if s := fmt.Sprintf("%+v", g); strings.Contains(s, secret.Reveal()) {
			t.Errorf("delivery %d holds the secret: %s", i, s)
		}
	}
}

func TestHandler_RecentIsBounded(t *testing.T) {
	h := webhook.New([]corral.Target{target}, fake.NewForge(), nil, 0, nil, nil)
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/{target}", h)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	n := webhook.RecentSize + 7
	for i := range n {
		post(t, ts.URL+"/webhooks/acme", fmt.Sprint("d-", i), []byte("{}"), "sha256=00")
	}
	got := h.Recent()
	if len(got) != webhook.RecentSize {
		t.Fatalf("Recent() holds %d deliveries after %d, want the last %d", len(got), n, webhook.RecentSize)
	}
	if got[0].Delivery != fmt.Sprint("d-", n-1) || got[len(got)-1].Delivery != fmt.Sprint("d-", n-webhook.RecentSize) {
		t.Errorf("Recent() runs from %s to %s, want d-%d to d-%d", got[0].Delivery, got[len(got)-1].Delivery, n-1, n-webhook.RecentSize)
	}
}
