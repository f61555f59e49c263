package app_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// send posts a workflow_job webhook for forge job id to target.
func (f *fixture) send(t *testing.T, target string, sec corral.Secret, id int64, action, runner string) {
	t.Helper()
	body := jobPayload(id, action, runner)
	req := httptest.NewRequest("POST", "/webhooks/"+target, bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", fmt.Sprint("u-", f.delivery.Add(1)), github.Sign(sec, body))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Fatalf("webhook %s %s: %d %s", target, action, rec.Code, rec.Body)
	}
}

// spans reads the runner time of jobs straight from their timelines in
// the store, independently of the usage handler.
func spans(t *testing.T, st corral.Store, ids ...int64) map[int64]time.Duration {
	t.Helper()
	out := map[int64]time.Duration{}
	err := st.View(context.Background(), func(tx corral.ReadTx) error {
		for _, id := range ids {
			tl, err := tx.Timeline(context.Background(), id)
			if err != nil {
				return err
			}
			var s, c time.Time
			for _, e := range tl {
				if e.Kind == corral.EvJobStarted && s.IsZero() {
					s = e.At
				}
				if e.Kind == corral.EvJobCompleted && c.IsZero() {
					c = e.At
				}
			}
			if s.IsZero() || c.IsZero() {
				return fmt.Errorf("job %d: started %v completed %v", id, s, c)
			}
			out[id] = c.Sub(s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func usageAs(t *testing.T, f *fixture, query, tok string) app.UsageReport {
	t.Helper()
	code, out := getAs(t, f.h, "/api/v1/usage"+query, f.tok[tok])
	var rep app.UsageReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 200 {
		t.Fatalf("usage%s as %s: %d %s %v", query, tok, code, out, err)
	}
	return rep
}

func secs(d time.Duration) float64 { return d.Seconds() }

// TestApp_Usage: the usage report sums each completed job's runner time
// (job_started to job_completed stamps) per group and flavor, with a cost
// where the pool has a price, tenant-scoped, as JSON and CSV; bad
// parameters are refused with what is wrong.
func TestApp_Usage(t *testing.T) {
	f := newFixture(t)
	// Job A runs on the default tenant's instance, job B on the other
	// tenant's; job 44 on a runner corral does not know (not corral's
	// runner time: not counted).
	f.send(t, "acme", secret, 42, "in_progress", "corral-linux-1")
	f.send(t, "beta", otherSecret, 43, "in_progress", "corral-beta-1")
	f.send(t, "acme", secret, 44, "in_progress", "elsewhere-1")
	time.Sleep(20 * time.Millisecond) // so the spans are visibly non-zero
	f.send(t, "acme", secret, 42, "completed", "corral-linux-1")
	f.send(t, "beta", otherSecret, 43, "completed", "corral-beta-1")
	f.send(t, "acme", secret, 44, "completed", "elsewhere-1")
	want := spans(t, f.st, f.jobA, f.jobB)
	if want[f.jobA] < 20*time.Millisecond || want[f.jobB] < 20*time.Millisecond {
		t.Fatalf("spans %v: the jobs ran at least 20ms", want)
	}

	rep := usageAs(t, f, "?group_by=tenant", "admin")
	if len(rep.Rows) != 2 || rep.Rows[0].Key != "default" || rep.Rows[1].Key != "other" {
		t.Fatalf("rows %+v", rep.Rows)
	}
	for i, id := range []int64{f.jobA, f.jobB} {
		row := rep.Rows[i]
		if row.Jobs != 1 || row.RunnerSeconds != secs(want[id]) || row.RunnerMinutes != want[id].Minutes() ||
			row.CPU != 2 || row.MemoryMB != 4096 {
			t.Errorf("row %s = %+v, want 1 job of %v on 2 cpu 4096 MiB", row.Key, row, want[id])
		}
	}
	if c := rep.Rows[0].Cost; c == nil || *c != want[f.jobA].Minutes()*0.5 {
		t.Errorf("cost of default = %v, want %v", c, want[f.jobA].Minutes()*0.5)
	}
	if rep.Rows[1].Cost != nil {
		t.Errorf("pool beta-linux has no price, yet a cost %v", *rep.Rows[1].Cost)
	}
	if rep.Total.Jobs != 2 || rep.Total.RunnerSeconds != secs(want[f.jobA]+want[f.jobB]) {
		t.Errorf("total %+v, want 2 jobs, %v", rep.Total, want[f.jobA]+want[f.jobB])
	}

	// Tenant tokens see their own tenant only, whatever the grouping.
	for tok, key := range map[string]string{"tenant-read": "linux", "other-tenant-read": "beta-linux"} {
		rep := usageAs(t, f, "?group_by=pool", tok)
		if len(rep.Rows) != 1 || rep.Rows[0].Key != key || rep.Total.Jobs != 1 {
			t.Errorf("usage by pool as %s: %+v", tok, rep.Rows)
		}
	}
	day := time.Now().UTC().Format(time.DateOnly)
	if rep := usageAs(t, f, "?group_by=day", "tenant-admin"); len(rep.Rows) != 1 || rep.Rows[0].Key != day {
		t.Errorf("by day: %+v, want one row %s", rep.Rows, day)
	}
	if rep := usageAs(t, f, "?group_by=repository", "admin"); len(rep.Rows) != 1 || rep.Rows[0].Key != "acme/app" || rep.Rows[0].Jobs != 2 {
		t.Errorf("by repository: %+v", rep.Rows)
	}
	// The window is of the job_completed stamps: one that ended before
	// it is not counted.
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if rep := usageAs(t, f, "?from="+future+"&to="+time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339), "admin"); len(rep.Rows) != 0 || rep.Total.Jobs != 0 {
		t.Errorf("a window after the jobs: %+v", rep)
	}

	// to alone: from is 30 days before it.
	if rep := usageAs(t, f, "?to=2026-01-31", "admin"); !rep.From.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || rep.Total.Jobs != 0 {
		t.Errorf("to=2026-01-31: from %v, %d jobs", rep.From, rep.Total.Jobs)
	}

	// CSV: the same figures.
	code, out := getAs(t, f.h, "/api/v1/usage?group_by=target&format=csv", f.tok["admin"])
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || code != 200 || len(recs) != 4 {
		t.Fatalf("csv: %d %v\n%s", code, err, out)
	}
	if strings.Join(recs[0], ",") != "target,cpu,memory_mb,jobs,runner_seconds,runner_minutes,cost" {
		t.Errorf("csv header %v", recs[0])
	}
	for i, tc := range []struct {
		key string
		d   time.Duration
	}{{"acme", want[f.jobA]}, {"beta", want[f.jobB]}, {"total", want[f.jobA] + want[f.jobB]}} {
		r := recs[i+1]
		s, _ := strconv.ParseFloat(r[4], 64)
		if r[0] != tc.key || r[3] != "1" && tc.key != "total" || s != secs(tc.d) {
			t.Errorf("csv row %v, want %s with %v", r, tc.key, tc.d)
		}
	}

	for q, msg := range map[string]string{
		"?group_by=flavor":               `group_by=\"flavor\": want tenant, pool, target, repository or day`,
		"?format=xml":                    `format=\"xml\": want json or csv`,
		"?from=yesterday":                `from=\"yesterday\" is neither an RFC 3339 time nor a date`,
		"?from=2026-02-01&to=2026-01-01": "from 2026-02-01T00:00:00Z is not before to 2026-01-01T00:00:00Z",
	} {
		code, out := getAs(t, f.h, "/api/v1/usage"+q, f.tok["admin"])
		if code != 400 || !strings.Contains(out, msg) {
			t.Errorf("usage%s: %d %s, want 400 saying %s", q, code, out, msg)
		}
	}
}

// BenchmarkUsage measures GET /api/v1/usage?group_by=day over n completed
// jobs in SQLite (each with its job_started and job_completed stamps): the
// handler reads every completed job and its timeline per call.
func BenchmarkUsage(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n, "jobs"), func(b *testing.B) {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
				Tenants: []corral.Tenant{{ID: "default"}},
				Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
				Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
					Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, PricePerMinute: 0.008}},
				ControllerID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			t0 := time.Now().Add(-24 * time.Hour)
			err = st.Update(ctx, func(tx corral.Tx) error {
				for i := 0; i < n; i++ {
					at := t0.Add(time.Duration(i) * time.Minute)
					j := corral.Job{TargetID: "acme", TenantID: "default", ForgeJobID: int64(i + 1), Repo: "acme/app", Labels: []string{"corral"},
						State: corral.JobCompleted, PoolID: "linux", CreatedAt: at, QueuedAt: at, StartedAt: at, CompletedAt: at.Add(time.Minute), UpdatedAt: at}
					if err := tx.PutJob(ctx, &j); err != nil {
						return err
					}
					for _, e := range []corral.Event{{JobID: j.ID, At: at, Kind: corral.EvJobStarted}, {JobID: j.ID, At: at.Add(time.Minute), Kind: corral.EvJobCompleted}} {
						if err := tx.AddEvent(ctx, e); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			tok := mintToken(b, st, "bench", corral.ScopeAdmin, "", 0, time.Now(), false)
			h := a.Handler()
			for b.Loop() {
				req := httptest.NewRequest("GET", "/api/v1/usage?group_by=day", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 || !strings.Contains(rec.Body.String(), fmt.Sprintf(`"jobs":%d`, n)) {
					b.Fatalf("usage: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
