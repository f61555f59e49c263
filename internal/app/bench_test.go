package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

const secret = corral.Secret("bench-secret")

func jobPayload(id int64, action, runner string) []byte {
	j := map[string]any{"id": id, "run_id": 1, "name": "build", "labels": []string{"corral", fmt.Sprint("job-", id)},
		"status": action, "created_at": "2026-11-25T10:00:00Z"}
	if runner != "" {
		j["runner_name"] = runner
		j["conclusion"] = "success"
	}
	b, _ := json.Marshal(map[string]any{"action": action, "workflow_job": j,
		"repository": map[string]any{"full_name": "acme/app"}})
	return b
}

func send(b *testing.B, h http.Handler, delivery string, body []byte) {
	req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", delivery, github.Sign(secret, body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		b.Fatalf("webhook: %d %s", rec.Code, rec.Body)
	}
}

// BenchmarkOverhead measures corral's own latency from a queued webhook
// entering the handler to the provider's Create being called, with an
// in-memory forge and a no-op provider (so only corral's work counts: the
// signature check, the durable commit, routing, the wake-up, the limit
// check and reservation, the credential call). Jobs go one at a time; each
// is completed afterwards so the fleet stays small.
func BenchmarkOverhead(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	forge, prov := fake.NewForge(), fake.NewProvider()
	forge.AssumeOpen = true
	var mu sync.Mutex
	created := map[string]chan string{}
	prov.OnCreate = func(s corral.InstanceSpec) {
		for _, l := range s.Labels {
			if strings.HasPrefix(l, "job-") {
				mu.Lock()
				ch := created[l]
				mu.Unlock()
				if ch != nil {
					ch <- s.Name
				}
			}
		}
	}
	a, err := app.New(app.Options{Store: st, Forges: forge, Providers: map[string]corral.Provider{"noop": prov},
		Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret, RunnerPrefix: "corral"}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxLifetime: time.Hour}},
		ControllerID: "bench", NoLeader: true, SchedulerInterval: time.Minute, ReconcileInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := a.Handler()
	var lat []time.Duration
	n := int64(0)
	b.ResetTimer()
	for b.Loop() {
		n++
		label := fmt.Sprint("job-", n)
		ch := make(chan string, 1)
		mu.Lock()
		created[label] = ch
		mu.Unlock()
		t0 := time.Now()
		send(b, h, fmt.Sprint("q-", n), jobPayload(n, "queued", ""))
		var name string
		select {
		case name = <-ch:
		case <-time.After(10 * time.Second):
			b.Fatalf("job %d: provider never asked", n)
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		send(b, h, fmt.Sprint("c-", n), jobPayload(n, "completed", name))
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100].Microseconds())/1000, "p99-ms")
}
