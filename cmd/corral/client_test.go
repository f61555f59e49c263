package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// clientRig is a real App (SQLite store, in-memory forge, no-op
// provider) served on 127.0.0.1, with jobs and instances in its store and
// an admin token.
type clientRig struct {
	url, admin string
	st         corral.Store
	jobs       map[string]int64 // routed, unroutable, completed
}

func newClientRig(t *testing.T) *clientRig {
	t.Helper()
	t.Setenv("CORRAL_SERVER", "")
	t.Setenv("CORRAL_TOKEN", "")
	t.Setenv("CORRAL_CLIENT_CONFIG", filepath.Join(t.TempDir(), "none.yaml"))
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	flavor := corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}
	a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		Tenants:      []corral.Tenant{{ID: "default"}},
		Targets:      []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: "s"}},
		Pools:        []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop", Flavor: flavor, MaxInstances: 4, PricePerMinute: 0.01}},
		ControllerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	r := &clientRig{url: srv.URL, st: st, jobs: map[string]int64{}}
	secret, tk, err := auth.New("cli", corral.ScopeAdmin, "", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r.admin = secret
	t0 := time.Now().Add(-time.Hour)
	err = st.Update(ctx, func(tx corral.Tx) error {
		if err := tx.PutToken(ctx, tk); err != nil {
			return err
		}
		for i, s := range []corral.JobState{corral.JobRouted, corral.JobUnroutable, corral.JobCompleted} {
			j := corral.Job{TargetID: "acme", TenantID: "default", ForgeJobID: int64(100 + i), Repo: "acme/app", Name: "build " + string(s),
				Labels: []string{"corral"}, State: s, CreatedAt: t0, QueuedAt: t0, UpdatedAt: t0}
			if s == corral.JobRouted {
				j.Routes = []corral.Route{{PoolID: "linux", Flavor: flavor}}
			}
			if s == corral.JobUnroutable {
				j.Reason = "no pool took it (before a config fix)"
			}
			if s == corral.JobCompleted {
				j.PoolID, j.StartedAt, j.CompletedAt = "linux", t0, t0.Add(90*time.Second)
			}
			if err := tx.PutJob(ctx, &j); err != nil {
				return err
			}
			r.jobs[string(s)] = j.ID
			if s == corral.JobCompleted {
				for _, e := range []corral.Event{{JobID: j.ID, At: t0, Kind: corral.EvJobStarted}, {JobID: j.ID, At: t0.Add(90 * time.Second), Kind: corral.EvJobCompleted}} {
					if err := tx.AddEvent(ctx, e); err != nil {
						return err
					}
				}
			}
		}
		for _, in := range []corral.Instance{
			{ID: "i-idle", Name: "corral-idle", PoolID: "linux", TenantID: "default", TargetID: "acme", State: corral.InstIdle, CreatedAt: t0, UpdatedAt: t0},
			{ID: "i-busy", Name: "corral-busy", PoolID: "linux", TenantID: "default", TargetID: "acme", State: corral.InstBusy, JobID: r.jobs["routed"], CreatedAt: t0, UpdatedAt: t0},
		} {
			if err := tx.PutInstance(ctx, &in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *clientRig) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errOut, err := runSplit(append(args, "-server", r.url, "-token", r.admin)...)
	if errOut != "" {
		t.Logf("stderr: %s", errOut)
	}
	return out, err
}

// column returns the cell of each row under the header's column name, by
// the header's offset: the table is aligned, or this reads garbage.
func column(t *testing.T, table, name string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	at := strings.Index(lines[0], name)
	if at < 0 {
		t.Fatalf("no column %s in\n%s", name, table)
	}
	var out []string
	for _, l := range lines[1:] {
		if len(l) <= at {
			t.Fatalf("row %q is shorter than column %s", l, name)
		}
		out = append(out, strings.Fields(l[at:])[0])
	}
	return out
}

// TestRun_Client runs corral jobs|pools|instances|usage against a real
// App over HTTP: aligned tables, -o json, the operations, and errors.
func TestRun_Client(t *testing.T) {
	r := newClientRig(t)
	out, err := r.run(t, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(column(t, out, "STATE"), ","); got != "routed,unroutable,completed" {
		t.Fatalf("jobs STATE column %q in\n%s", got, out)
	}
	out, err = r.run(t, "jobs", "-o", "json", "-state", "unroutable")
	var list struct{ Jobs []app.JobView }
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Jobs) != 1 || list.Jobs[0].ID != r.jobs["unroutable"] {
		t.Fatalf("jobs -o json: %v %s", err, out)
	}
	// retry: the pool linux takes the job's labels now.
	if out, err = r.run(t, "jobs", "retry", itoa(r.jobs["unroutable"])); err != nil || !strings.HasPrefix(out, "job "+itoa(r.jobs["unroutable"])+": routed") {
		t.Fatalf("jobs retry: %v %q", err, out)
	}
	if _, err = r.run(t, "jobs", "retry", itoa(r.jobs["completed"])); err == nil || !strings.Contains(err.Error(), "409 Conflict: job "+itoa(r.jobs["completed"])+" is completed, not unroutable") {
		t.Fatalf("jobs retry of a completed job: %v", err)
	}

	if out, err = r.run(t, "pools", "drain", "linux"); err != nil || out != "pool linux: draining\n" {
		t.Fatalf("pools drain: %v %q", err, out)
	}
	out, err = r.run(t, "pools")
	if err != nil || strings.Join(column(t, out, "STATE"), ",") != "draining" || strings.Join(column(t, out, "INSTANCES"), ",") != "2" {
		t.Fatalf("pools: %v\n%s", err, out)
	}
	if out, err = r.run(t, "pools", "resume", "linux", "-o", "json"); err != nil || !strings.Contains(out, `"state":"active"`) {
		t.Fatalf("pools resume -o json: %v %q", err, out)
	}
	if _, err = r.run(t, "pools", "drain", "nope"); err == nil || !strings.Contains(err.Error(), `404 Not Found: pool "nope": not found`) {
		t.Fatalf("drain unknown pool: %v", err)
	}

	out, err = r.run(t, "tenants")
	if err != nil || strings.Join(column(t, out, "TENANT"), ",") != "default" || strings.Join(column(t, out, "POOLS"), ",") != "1" {
		t.Fatalf("tenants: %v\n%s", err, out)
	}
	if out, err = r.run(t, "targets", "pause", "acme"); err != nil || out != "target acme: paused true\n" {
		t.Fatalf("targets pause: %v %q", err, out)
	}
	out, err = r.run(t, "targets")
	if err != nil || strings.Join(column(t, out, "TARGET"), ",") != "acme" || strings.Join(column(t, out, "PAUSED"), ",") != "true" {
		t.Fatalf("targets: %v\n%s", err, out)
	}
	if out, err = r.run(t, "targets", "resume", "acme", "-o", "json"); err != nil || !strings.Contains(out, `"paused":false`) {
		t.Fatalf("targets resume -o json: %v %q", err, out)
	}
	if _, err = r.run(t, "targets", "pause", "nope"); err == nil || !strings.Contains(err.Error(), `404 Not Found: target "nope": not found`) {
		t.Fatalf("pause unknown target: %v", err)
	}
	out, err = r.run(t, "tokens")
	if err != nil || strings.Join(column(t, out, "NAME"), ",") != "cli" {
		t.Fatalf("tokens: %v\n%s", err, out)
	}
	if _, err = r.run(t, "tokens", "revoke", "tok_nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("revoke unknown token: %v", err)
	}

	out, err = r.run(t, "instances")
	if err != nil || strings.Join(column(t, out, "ID"), ",") != "i-busy,i-idle" {
		t.Fatalf("instances: %v\n%s", err, out)
	}
	if _, err = r.run(t, "instances", "stop", "i-busy"); err == nil || !strings.Contains(err.Error(), "409 Conflict") || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("stop busy: %v", err)
	}
	if out, err = r.run(t, "instances", "stop", "i-busy", "--force"); err != nil || out != "instance i-busy: busy -> draining\n" {
		t.Fatalf("stop busy --force: %v %q", err, out)
	}

	out, err = r.run(t, "usage", "-group-by", "pool")
	if err != nil || !strings.Contains(out, "linux") || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 {
		t.Fatalf("usage: %v\n%s", err, out)
	}
	if got := column(t, out, "RUNNER MINUTES"); got[0] != "1.50" || got[1] != "1.50" {
		t.Fatalf("usage minutes %v, want 1.50 (one 90 s job)\n%s", got, out)
	}
	if got := column(t, out, "COST"); got[0] != "0.0150" || got[1] != "0.0150" {
		t.Fatalf("usage cost %v (1.5 min at 0.01)\n%s", got, out)
	}
	if out, err = r.run(t, "usage", "-format", "csv"); err != nil || !strings.HasPrefix(out, "tenant,cpu,memory_mb,jobs,runner_seconds,runner_minutes,cost\ndefault,2,4096,1,90,1.5,0.0150\n") {
		t.Fatalf("usage csv: %v\n%s", err, out)
	}

	// rightsizing: a recorded job that used little of a large flavor.
	u := corral.JobUsage{JobID: r.jobs["completed"], TenantID: "default", PoolID: "linux", Repo: "acme/app", JobName: "lint",
		Flavor: corral.Flavor{CPU: 8, MemoryMB: 16384}, PeakCPU: 1.2, P95CPU: 1.1, PeakMemoryBytes: 900 << 20, Samples: 5, RecordedAt: time.Now()}
	if err := r.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutJobUsage(context.Background(), u) }); err != nil {
		t.Fatal(err)
	}
	out, err = r.run(t, "rightsizing")
	if err != nil || strings.Join(column(t, out, "JOB"), ",") != "lint" || strings.Join(column(t, out, "PEAK CPU"), ",") != "1.20" ||
		!strings.Contains(out, "this job peaks at 1.2 CPU (p95 1.1) and 900 MiB: `small` would do") {
		t.Fatalf("rightsizing: %v\n%s", err, out)
	}

	// analytics: two recorded runs of one job, one failed.
	day := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	for i, c := range []string{"success", "failure"} {
		jr := corral.JobRun{JobID: int64(9000 + i), TenantID: "default", TargetID: "acme", Repo: "acme/app", Workflow: "CI", JobName: "lint",
			Conclusion: c, QueuedAt: day, StartedAt: day.Add(time.Duration(10*(i+1)) * time.Second),
			CompletedAt: day.Add(time.Duration(100*(i+1)) * time.Second)}
		if err := r.st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutJobRun(context.Background(), jr) }); err != nil {
			t.Fatal(err)
		}
	}
	// durations 90 s and 180 s, queues 10 s and 20 s: p50 90/10, p95 180/20.
	out, err = r.run(t, "analytics", "-from", "2026-11-01", "-to", "2026-11-03", "-workflow", "CI")
	if err != nil || strings.Join(column(t, out, "RUNS"), ",") != "2" || strings.Join(column(t, out, "SUCCESS %"), ",") != "50" ||
		strings.Join(column(t, out, "P50 S"), ",") != "90" || strings.Join(column(t, out, "P95 S"), ",") != "180" ||
		strings.Join(column(t, out, "QUEUE P95 S"), ",") != "20" || strings.Join(column(t, out, "LAST"), ",") != "failure" {
		t.Fatalf("analytics: %v\n%s", err, out)
	}
	if out, err = r.run(t, "analytics", "-from", "2026-11-01", "-to", "2026-11-03", "-o", "json"); err != nil || !strings.Contains(out, `"runs":2`) {
		t.Fatalf("analytics -o json: %v %q", err, out)
	}
	if _, err = r.run(t, "analytics", "-from", "someday"); err == nil || !strings.Contains(err.Error(), `from="someday"`) {
		t.Fatalf("analytics -from someday: %v", err)
	}

	if _, err = r.run(t, "jobs", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), `-o "yaml": want table or json`) {
		t.Fatalf("-o yaml: %v", err)
	}
	if _, _, err = runSplit("jobs", "-server", r.url); err == nil || !strings.Contains(err.Error(), "no API token") {
		t.Fatalf("no token: %v", err)
	}
	if _, _, err = runSplit("jobs", "-server", r.url, "-token", "corral_wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
}

// TestRun_ClientSettings: the server and token come from flags, else the
// environment, else the client config file, which must be private.
func TestRun_ClientSettings(t *testing.T) {
	r := newClientRig(t)
	cfg := filepath.Join(t.TempDir(), "client.yaml")
	t.Setenv("CORRAL_CLIENT_CONFIG", cfg)
	if err := os.WriteFile(cfg, []byte("server: "+r.url+"\ntoken: "+r.admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runSplit("pools"); err != nil || !strings.Contains(out, "linux") {
		t.Fatalf("from the file: %v %s", err, out)
	}
	// The environment wins over the file; a flag over the environment.
	t.Setenv("CORRAL_TOKEN", "corral_from-env")
	if _, _, err := runSplit("pools"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("env token should win over the file's: %v", err)
	}
	if out, _, err := runSplit("pools", "-token", r.admin); err != nil || !strings.Contains(out, "linux") {
		t.Fatalf("flag token should win over env: %v %s", err, out)
	}
	t.Setenv("CORRAL_TOKEN", "")
	t.Setenv("CORRAL_SERVER", "127.0.0.1:1")
	if _, _, err := runSplit("pools"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("env server should win over the file's: %v", err)
	}
	t.Setenv("CORRAL_SERVER", "")
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runSplit("pools"); err == nil || !strings.Contains(err.Error(), "readable by others (mode 0644)") {
		t.Fatalf("a readable token file: %v", err)
	}
	if err := os.WriteFile(cfg, []byte("server: x\ntokn: y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runSplit("pools"); err == nil || !strings.Contains(err.Error(), "field tokn not found") {
		t.Fatalf("a misspelt key: %v", err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestRun_ClientWatch: corral jobs -watch prints the table again when a
// job changes, and stops when interrupted.
func TestRun_ClientWatch(t *testing.T) {
	r := newClientRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"jobs", "-watch", "-interval", "20ms", "-server", r.url, "-token", r.admin}, &out, &out)
	}()
	wait := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				cancel()
				t.Fatalf("%s; output:\n%s", what, out.String())
			}
		}
	}
	wait("first table", func() bool { return strings.Count(out.String(), "-- ") == 1 })
	time.Sleep(100 * time.Millisecond) // several polls: no change, no new table
	if n := strings.Count(out.String(), "-- "); n != 1 {
		t.Fatalf("%d tables without a change", n)
	}
	_ = r.st.Update(context.Background(), func(tx corral.Tx) error {
		j, err := tx.Job(context.Background(), r.jobs["routed"])
		if err != nil {
			return err
		}
		j.State = corral.JobRunning
		return tx.PutJob(context.Background(), &j)
	})
	wait("a second table once a job changed", func() bool { return strings.Count(out.String(), "-- ") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	last := out.String()[strings.LastIndex(out.String(), "-- "):]
	if !strings.Contains(last, "running") {
		t.Fatalf("the second table does not show the running job:\n%s", last)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
