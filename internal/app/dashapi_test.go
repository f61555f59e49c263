package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// timedPayload is a workflow_job event with the forge's own stamps.
func timedPayload(id int64, action, conclusion string, started, completed time.Time) []byte {
	j := map[string]any{"id": id, "run_id": 1, "name": "build", "labels": []string{"corral", fmt.Sprint("job-", id)},
		"status": action, "created_at": started.Add(-time.Minute).Format(time.RFC3339)}
	if !started.IsZero() {
		j["started_at"] = started.Format(time.RFC3339)
		j["runner_name"] = fmt.Sprint("runner-", id)
	}
	if !completed.IsZero() {
		j["completed_at"] = completed.Format(time.RFC3339)
		j["conclusion"] = conclusion
	}
	b, _ := json.Marshal(map[string]any{"action": action, "workflow_job": j, "repository": map[string]any{"full_name": "acme/app"}})
	return b
}

// deliver posts a workflow_job delivery to target acme (tenant default).
func deliver(t *testing.T, f *fixture, delivery string, body []byte) {
	t.Helper()
	req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", delivery, github.Sign(secret, body))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Fatalf("webhook %s: %d %s", delivery, rec.Code, rec.Body)
	}
}

// getJSON reads url with the fixture's token who.
func getJSON(t *testing.T, f *fixture, who, url string, v any) {
	t.Helper()
	code, out := getAs(t, f.h, url, f.tok[who])
	if code != 200 {
		t.Fatalf("GET %s = %d %s", url, code, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, out)
	}
}

// The fixture holds job 42 and instance i-default (idle) of tenant
// default in pool linux, job 43 and i-other of tenant other in beta-linux.
func TestApp_Overview(t *testing.T) {
	f := newFixture(t)
	deliver(t, f, "ov-1", jobPayload(1, "queued", ""))
	deliver(t, f, "ov-2", jobPayload(2, "queued", ""))
	now := time.Now()
	err := f.st.Update(context.Background(), func(tx corral.Tx) error {
		for i, s := range []corral.InstanceState{corral.InstIdle, corral.InstBusy, corral.InstStarting} {
			in := corral.Instance{ID: fmt.Sprint("i-", i), Name: fmt.Sprint("r-", i), PoolID: "linux", TenantID: "default",
				TargetID: "acme", State: s, CreatedAt: now, UpdatedAt: now}
			if err := tx.PutInstance(context.Background(), &in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var o app.Overview
	getJSON(t, f, "admin", "/api/v1/overview", &o)
	if o.Jobs["routed"] != 4 || o.Jobs["running"] != 0 || o.Jobs["unroutable"] != 0 {
		t.Errorf("jobs by state = %v, want 4 routed", o.Jobs)
	}
	if len(o.Pools) != 2 {
		t.Fatalf("pools = %+v, want linux and beta-linux", o.Pools)
	}
	for _, p := range o.Pools {
		switch p.ID {
		case "linux":
			if p.Live != 4 || p.ByState["idle"] != 2 || p.ByState["busy"] != 1 || p.ByState["starting"] != 1 || p.Waiting != 3 {
				t.Errorf("pool = %+v, want 4 live (2 idle, busy, starting) and 3 waiting", p)
			}
		case "beta-linux":
			if p.Live != 1 || p.Waiting != 1 {
				t.Errorf("pool = %+v, want 1 live and 1 waiting", p)
			}
		}
	}
	if len(o.Providers) != 1 || o.Providers[0].Name != "noop" {
		t.Errorf("providers = %+v, want noop", o.Providers)
	}
	if o.Leader.Replica == "" || o.Leader.Leading {
		t.Errorf("leader = %+v: a replica that was never run does not lead", o.Leader)
	}
	var pools struct{ Pools []app.PoolView }
	getJSON(t, f, "admin", "/api/v1/pools", &pools)
	if len(pools.Pools) != 2 || pools.Pools[0].Flavor != "2 cpu, 4096 MiB, 0 MiB disk, x64" {
		t.Errorf("pools = %+v", pools.Pools)
	}

	// A tenant token sees its tenant's jobs and pools only.
	getJSON(t, f, "other-tenant-read", "/api/v1/overview", &o)
	if o.Jobs["routed"] != 1 || len(o.Pools) != 1 || o.Pools[0].ID != "beta-linux" || o.Pools[0].Live != 1 {
		t.Errorf("tenant other sees jobs %v and pools %+v, want 1 routed and beta-linux alone", o.Jobs, o.Pools)
	}
	getJSON(t, f, "tenant-read", "/api/v1/pools", &pools)
	if len(pools.Pools) != 1 || pools.Pools[0].ID != "linux" || pools.Pools[0].Live != 4 {
		t.Errorf("tenant default sees pools %+v, want linux alone", pools.Pools)
	}
}

func TestApp_UsageHourly(t *testing.T) {
	f := newFixture(t)
	hour := time.Now().UTC().Truncate(time.Hour)
	prev := hour.Add(-time.Hour)
	// Two jobs finished in the previous hour (30 and 10 runner minutes,
	// one failed), one three days ago (outside the window), one still open.
	deliver(t, f, "a-q", timedPayload(1, "queued", "", time.Time{}, time.Time{}))
	deliver(t, f, "a-s", timedPayload(1, "in_progress", "", prev.Add(5*time.Minute), time.Time{}))
	deliver(t, f, "b-s", timedPayload(2, "in_progress", "", prev.Add(10*time.Minute), time.Time{}))
	deliver(t, f, "a-c", timedPayload(1, "completed", "success", prev.Add(5*time.Minute), prev.Add(35*time.Minute)))
	deliver(t, f, "b-c", timedPayload(2, "completed", "failure", prev.Add(10*time.Minute), prev.Add(20*time.Minute)))
	old := hour.Add(-72 * time.Hour)
	deliver(t, f, "c-c", timedPayload(3, "completed", "success", old, old.Add(time.Minute)))
	deliver(t, f, "d-q", jobPayload(4, "queued", ""))

	var u struct{ Hours []app.UsageHour }
	getJSON(t, f, "admin", "/api/v1/usage/hourly", &u)
	if len(u.Hours) != 24 {
		t.Fatalf("%d hours, want 24", len(u.Hours))
	}
	if last := u.Hours[23].Hour; !last.Equal(hour) {
		t.Errorf("last bucket %s, want the current hour %s", last, hour)
	}
	for i, h := range u.Hours {
		want := app.UsageHour{Hour: h.Hour}
		if i == 22 {
			want = app.UsageHour{Hour: prev, Finished: 2, Failed: 1, RunnerMinutes: 40}
		}
		if h != want {
			t.Errorf("hour %d = %+v, want %+v", i, h, want)
		}
	}
	getJSON(t, f, "admin", "/api/v1/usage/hourly?hours=96", &u)
	total := 0
	for _, h := range u.Hours {
		total += h.Finished
	}
	if len(u.Hours) != 96 || total != 3 {
		t.Errorf("96 hours: %d buckets, %d jobs finished; want 96 and 3", len(u.Hours), total)
	}
	finished := func(who string) int {
		getJSON(t, f, who, "/api/v1/usage/hourly?hours=96", &u)
		n := 0
		for _, h := range u.Hours {
			n += h.Finished
		}
		return n
	}
	if a, o := finished("tenant-read"), finished("other-tenant-read"); a != 3 || o != 0 {
		t.Errorf("jobs finished seen by tenant default %d, by tenant other %d; want 3 and 0", a, o)
	}
	for _, q := range []string{"0", "169", "x"} {
		if code, out := getAs(t, f.h, "/api/v1/usage/hourly?hours="+q, f.tok["admin"]); code != 400 || !bytes.Contains([]byte(out), []byte("hours=")) {
			t.Errorf("hours=%s: %d %s, want 400 naming hours", q, code, out)
		}
	}
}

func TestApp_Deliveries(t *testing.T) {
	f := newFixture(t) // it delivered d-1 (acme, tenant default) and d-2 (beta, tenant other)
	deliver(t, f, "x-1", jobPayload(1, "queued", ""))
	deliver(t, f, "x-1", jobPayload(1, "queued", ""))
	body := jobPayload(2, "queued", "")
	req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", "x-forged", github.Sign("wrong", body))
	f.h.ServeHTTP(httptest.NewRecorder(), req)
	req = httptest.NewRequest("POST", "/webhooks/ghost", bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", "x-ghost", github.Sign("wrong", body))
	f.h.ServeHTTP(httptest.NewRecorder(), req)

	seen := func(who string) string {
		var d struct{ Deliveries []app.DeliveryView }
		getJSON(t, f, who, "/api/v1/deliveries", &d)
		var got []string
		for _, x := range d.Deliveries {
			got = append(got, x.Delivery+":"+x.Result)
		}
		return fmt.Sprint(got)
	}
	for who, want := range map[string]string{
		"admin":             "[x-ghost:unknown_target x-forged:bad_signature x-1:duplicate x-1:accepted d-2:accepted d-1:accepted]",
		"tenant-read":       "[x-forged:bad_signature x-1:duplicate x-1:accepted d-1:accepted]",
		"other-tenant-read": "[d-2:accepted]",
	} {
		if got := seen(who); got != want {
			t.Errorf("%s sees deliveries %s, want %s", who, got, want)
		}
	}
	if code, out := getAs(t, f.h, "/api/v1/deliveries", f.tok["admin"]); code != 200 || bytes.Contains([]byte(out), []byte(secret.Reveal())) ||
		bytes.Contains([]byte(out), []byte("workflow_job\":{")) {
		t.Errorf("deliveries answer leaks a secret or a body: %s", out)
	}
}
