package app_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// jobsPage is one answer of GET /api/v1/jobs: the job ids in order, the
// next cursor, and the error message of a refusal.
type jobsPage struct {
	code  int
	ids   []int64
	next  string
	error string
}

func (f *fixture) jobsPage(t *testing.T, who, query string) jobsPage {
	t.Helper()
	code, out := getAs(t, f.h, "/api/v1/jobs?"+query, f.tok[who])
	var body struct {
		Jobs []struct {
			ID int64 `json:"id"`
		} `json:"jobs"`
		Next  string `json:"next"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		t.Fatalf("GET /api/v1/jobs?%s: %d %q: %v", query, code, out, err)
	}
	p := jobsPage{code: code, next: body.Next, error: body.Error}
	for _, j := range body.Jobs {
		p.ids = append(p.ids, j.ID)
	}
	return p
}

func sameIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestApp_ListJobsQuery: every filter of GET /api/v1/jobs (state, target,
// pool, repository, since/until in RFC 3339, limit 1..1000, the next
// cursor passed as after) is parsed and applied, a tenant's cursor never
// reaches another tenant's jobs, and every bad value is answered 400 with
// a message that names the parameter.
func TestApp_ListJobsQuery(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	// Two more jobs of tenant default, made earlier: old ran on pool
	// linux and is completed; mid is queued in another repository.
	old := corral.Job{TargetID: "acme", TenantID: "default", ForgeJobID: 100, RunID: 1, Repo: "acme/old", Name: "build",
		Labels: []string{"corral"}, State: corral.JobCompleted, Conclusion: "success", PoolID: "linux",
		CreatedAt: now.Add(-48 * time.Hour), QueuedAt: now.Add(-48 * time.Hour), UpdatedAt: now.Add(-47 * time.Hour)}
	mid := corral.Job{TargetID: "acme", TenantID: "default", ForgeJobID: 101, RunID: 2, Repo: "acme/mid", Name: "test",
		Labels: []string{"corral"}, State: corral.JobQueued,
		CreatedAt: now.Add(-24 * time.Hour), QueuedAt: now.Add(-24 * time.Hour), UpdatedAt: now.Add(-24 * time.Hour)}
	for _, j := range []*corral.Job{&old, &mid} {
		if err := f.st.Update(ctx, func(tx corral.Tx) error { return tx.PutJob(ctx, j) }); err != nil {
			t.Fatal(err)
		}
	}
	a, b := f.jobA, f.jobB // made now, repository acme/app, routed, no pool yet
	at := func(d time.Duration) string { return url.QueryEscape(now.Add(d).Format(time.RFC3339)) }
	// The same instant as "at" in another zone: RFC 3339 offsets are honoured.
	atZone := func(d time.Duration) string {
		return url.QueryEscape(now.Add(d).In(time.FixedZone("", 2*3600)).Format(time.RFC3339))
	}

	for _, c := range []struct {
		name, who, query string
		want             []int64
		next             int64 // 0: no next
	}{
		{"none", "admin", "", []int64{a, b, old.ID, mid.ID}, 0},
		{"target", "admin", "target=beta", []int64{b}, 0},
		{"state", "admin", "state=completed", []int64{old.ID}, 0},
		{"state routed", "admin", "state=routed", []int64{a, b}, 0},
		{"pool", "admin", "pool=linux", []int64{old.ID}, 0},
		{"pool none", "admin", "pool=nope", nil, 0},
		{"repository", "admin", "repository=acme%2Fmid", []int64{mid.ID}, 0},
		{"repository shared", "admin", "repository=acme/app", []int64{a, b}, 0},
		{"since", "admin", "since=" + at(-36*time.Hour), []int64{a, b, mid.ID}, 0},
		{"since inclusive", "admin", "since=" + at(-24*time.Hour), []int64{a, b, mid.ID}, 0},
		{"until", "admin", "until=" + at(-36*time.Hour), []int64{old.ID}, 0},
		{"until exclusive", "admin", "until=" + at(-24*time.Hour), []int64{old.ID}, 0},
		{"since and until", "admin", "since=" + at(-36*time.Hour) + "&until=" + at(-12*time.Hour), []int64{mid.ID}, 0},
		{"since with an offset", "admin", "since=" + atZone(-36*time.Hour), []int64{a, b, mid.ID}, 0},
		{"filters together", "admin", "target=acme&repository=acme/app&since=" + at(-time.Hour), []int64{a}, 0},
		{"limit full page", "admin", "limit=2", []int64{a, b}, b},
		{"limit 1000", "admin", "limit=1000", []int64{a, b, old.ID, mid.ID}, 0},
		{"limit exact", "admin", "limit=4", []int64{a, b, old.ID, mid.ID}, mid.ID},
		{"after", "admin", "after=" + itoa(b) + "&limit=2", []int64{old.ID, mid.ID}, mid.ID},
		{"after the last", "admin", "after=" + itoa(mid.ID), nil, 0},
		{"after 0", "admin", "after=0&limit=1", []int64{a}, a},
		{"tenant", "tenant-read", "", []int64{a, old.ID, mid.ID}, 0},
		// A cursor is only a position: another tenant's job id as after
		// shows no job of that tenant.
		{"tenant after another's job", "tenant-read", "after=" + itoa(a) + "&limit=1", []int64{old.ID}, old.ID},
		{"other tenant", "other-tenant-read", "after=0", []int64{b}, 0},
		{"other tenant, the tenant's pool", "other-tenant-read", "pool=linux", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := f.jobsPage(t, c.who, c.query)
			if p.code != 200 || !sameIDs(p.ids, c.want) {
				t.Fatalf("?%s as %s: %d %v %q, want %v", c.query, c.who, p.code, p.ids, p.error, c.want)
			}
			want := ""
			if c.next != 0 {
				want = itoa(c.next)
			}
			if p.next != want {
				t.Fatalf("?%s: next %q, want %q", c.query, p.next, want)
			}
		})
	}

	t.Run("paging with next", func(t *testing.T) {
		var got []int64
		q := "limit=1"
		for range 10 {
			p := f.jobsPage(t, "admin", q)
			if p.code != 200 {
				t.Fatalf("?%s: %d %s", q, p.code, p.error)
			}
			got = append(got, p.ids...)
			if p.next == "" {
				break
			}
			q = "limit=1&after=" + url.QueryEscape(p.next)
		}
		if want := []int64{a, b, old.ID, mid.ID}; !sameIDs(got, want) {
			t.Fatalf("paged through %v, want %v", got, want)
		}
	})

	for _, c := range []struct{ name, query, param string }{
		{"limit 0", "limit=0", "limit="},
		{"limit 1001", "limit=1001", "limit="},
		{"limit negative", "limit=-1", "limit="},
		{"limit x", "limit=x", "limit="},
		{"limit fraction", "limit=1.5", "limit="},
		{"since not a time", "since=yesterday", "since="},
		{"since a date only", "since=2026-12-01", "since="},
		{"since without a zone", "since=2026-12-01T00:00:00", "since="},
		{"until not a time", "until=1733443200", "until="},
		{"until before since", "since=" + at(-time.Hour) + "&until=" + at(-2*time.Hour), "until="},
		{"until equal to since", "since=" + at(-time.Hour) + "&until=" + at(-time.Hour), "until="},
		{"cursor garbled", "after=x", "after="},
		{"cursor negative", "after=-1", "after="},
		{"cursor not an integer", "after=1e3", "after="},
		{"cursor overflow", "after=99999999999999999999", "after="},
		{"cursor base64", "after=" + url.QueryEscape("eyJpZCI6M30="), "after="},
		{"state unknown", "state=done", "state="},
		{"bad with good", "pool=linux&limit=5000", "limit="},
	} {
		t.Run("bad/"+c.name, func(t *testing.T) {
			p := f.jobsPage(t, "tenant-read", c.query)
			if p.code != 400 || !strings.Contains(p.error, c.param) {
				t.Fatalf("?%s: %d %v %q, want 400 naming %s", c.query, p.code, p.ids, p.error, c.param)
			}
		})
	}
}
