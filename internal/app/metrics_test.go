package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A workload of n jobs through the webhook endpoint, a scheduler and a
// provider: the histograms have n observations, the webhook counters
// count what was sent, and no label carries a job id.
func TestApp_Metrics(t *testing.T) {
	const n = 5
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	forge := fake.NewForge()
	forge.AssumeOpen = true // jobs come by webhook only; the sweep must not finish them
	a, err := app.New(app.Options{Store: st, Forges: forge, Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxLifetime: time.Hour}},
		ControllerID: "test", SchedulerInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := a.Handler()
	post := func(delivery string, body []byte, sig string) int {
		req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
		req.Header = fake.Header("workflow_job", delivery, sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	const base = 7_000_000_000 // forge job ids well above 2^32
	for i := int64(0); i < n; i++ {
		body := jobPayload(base+i, "queued", "")
		if code := post(fmt.Sprint("q", i), body, github.Sign(secret, body)); code != 202 {
			t.Fatalf("queued %d: %d", i, code)
		}
	}
	dup := jobPayload(base, "queued", "")
	if code := post("q0", dup, github.Sign(secret, dup)); code != 202 {
		t.Fatalf("duplicate: %d, want 202", code)
	}
	if code := post("bad", dup, github.Sign("wrong", dup)); code != 401 {
		t.Fatalf("bad signature: %d, want 401", code)
	}
	var ins []corral.Instance
	defer func() {
		if t.Failed() {
			var js []corral.Job
			var all []corral.Instance
			_ = st.View(context.Background(), func(tx corral.ReadTx) error {
				js, _ = tx.Jobs(context.Background(), corral.JobFilter{})
				all, _ = tx.Instances(context.Background(), corral.InstanceFilter{})
				return nil
			})
			for _, j := range js {
				t.Logf("job %d %s %q", j.ID, j.State, j.Reason)
			}
			for _, in := range all {
				t.Logf("instance %s %s job %d %q", in.ID, in.State, in.JobID, in.LastError)
			}
		}
	}()
	waitUntil(t, "an instance per job", func() bool {
		_ = st.View(ctx, func(tx corral.ReadTx) error {
			ins, err = tx.Instances(ctx, corral.InstanceFilter{States: []corral.InstanceState{corral.InstStarting}})
			return err
		})
		return len(ins) == n
	})
	for _, in := range ins {
		var j corral.Job
		_ = st.View(ctx, func(tx corral.ReadTx) error { j, err = tx.Job(ctx, in.JobID); return err })
		body := jobPayload(j.ForgeJobID, "in_progress", in.Name)
		if code := post("s"+in.ID, body, github.Sign(secret, body)); code != 202 {
			t.Fatalf("in_progress: %d", code)
		}
		body = jobPayload(j.ForgeJobID, "completed", in.Name)
		if code := post("c"+in.ID, body, github.Sign(secret, body)); code != 202 {
			t.Fatalf("completed: %d", code)
		}
	}

	if code, _ := get(t, h, "/metrics"); code != 401 {
		t.Fatalf("/metrics without a token: %d, want 401", code)
	}
	scraper := mintToken(t, st, "scraper", corral.ScopeMetrics, "", 0, time.Now(), false)
	_, page := getAs(t, h, "/metrics", scraper)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no metric %s", name)
		}
		for _, m := range f.Metric {
			if has(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
		return 0
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"corral_webhooks_total", map[string]string{"result": "accepted"}, 3 * n},
		{"corral_webhooks_total", map[string]string{"result": "duplicate"}, 1},
		{"corral_webhooks_total", map[string]string{"result": "bad_signature"}, 1},
		{"corral_job_queue_wait_seconds", map[string]string{"pool": "linux"}, n},
		{"corral_provisioning_phase_seconds", map[string]string{"pool": "linux", "phase": "created"}, n},
		{"corral_jobs_completed_total", map[string]string{"pool": "linux", "conclusion": "success"}, n},
		{"corral_instances_reserved_total", map[string]string{"pool": "linux"}, n},
		{"corral_instances_created_total", map[string]string{"pool": "linux"}, n},
		{"corral_leader", nil, 1},
	}
	for _, c := range checks {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// No label value is a job id (corral's or the forge's) or an instance id.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				v := l.GetValue()
				if strings.Contains(v, fmt.Sprint(base)[:7]) || strings.HasPrefix(v, "corral-") {
					t.Errorf("%s has label %s=%q: looks like a job or runner id", name, l.GetName(), v)
				}
				for _, in := range ins {
					if v == in.ID || v == in.Name || v == fmt.Sprint(in.JobID) {
						t.Errorf("%s has label %s=%q: an instance or job id", name, l.GetName(), v)
					}
				}
			}
		}
	}
}

func has(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.Label {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
