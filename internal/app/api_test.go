package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/provider/garm"
	"github.com/corral-ci/corral/internal/runners"
	"github.com/corral-ci/corral/internal/secretbox"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

const otherSecret = corral.Secret("other-tenant-secret")

// fixture is an App with two tenants, "default" (target acme, pool
// linux) and "other" (target beta, pool beta-linux), one job and one
// instance of each, and a token of every kind.
type fixture struct {
	a            *app.App
	st           corral.Store
	h            http.Handler
	jobA, jobB   int64 // of tenant default and other
	tok          map[string]string
	delivery     atomic.Int64
	forge        *fake.Forge
	adminTok     string
	defaultRead  string
	defaultAdmin string
	meta         *garm.Metadata
}

func newApp(t *testing.T) *app.App { return newFixture(t).a }

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cache, err := runners.New(runners.Config{Dir: t.TempDir(), BaseURL: "http://127.0.0.1:1/runners/"})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := garm.NewMetadata(garm.MetadataConfig{BaseURL: "http://127.0.0.1:1", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	flavor := corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}
	fg := fake.NewForge()
	box, err := secretbox.New(bytes.Repeat([]byte{7}, 32), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(app.Options{Store: st, SecretBox: box, Forges: fg, Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		Tenants: []corral.Tenant{{ID: "default"}, {ID: "other"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret},
			{ID: "beta", TenantID: "other", Kind: corral.KindGitHub, WebhookSecret: otherSecret}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop", Flavor: flavor, PricePerMinute: 0.5},
			{ID: "beta-linux", TenantID: "other", Labels: []string{"corral"}, Provider: "noop", Flavor: flavor}},
		Runners:      cache,
		Metadata:     meta,
		ControllerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{a: a, st: st, h: a.Handler(), tok: map[string]string{}, forge: fg, meta: meta}
	f.jobA = f.webhook(t, "acme", secret, 42)
	f.jobB = f.webhook(t, "beta", otherSecret, 43)
	now := time.Now()
	for _, in := range []corral.Instance{
		{ID: "i-default", Name: "corral-linux-1", PoolID: "linux", TenantID: "default", TargetID: "acme", State: corral.InstIdle, CreatedAt: now, UpdatedAt: now},
		{ID: "i-other", Name: "corral-beta-1", PoolID: "beta-linux", TenantID: "other", TargetID: "beta", State: corral.InstIdle, CreatedAt: now, UpdatedAt: now},
	} {
		if err := st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutInstance(context.Background(), &in) }); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range map[string]struct {
		scope   corral.TokenScope
		tenant  string
		expires time.Duration
		at      time.Time
		revoke  bool
	}{
		"admin":              {corral.ScopeAdmin, "", 0, now, false},
		"metrics":            {corral.ScopeMetrics, "", 0, now, false},
		"tenant-admin":       {corral.ScopeTenantAdmin, "default", time.Hour, now, false},
		"tenant-read":        {corral.ScopeTenantRead, "default", 0, now, false},
		"other-tenant-admin": {corral.ScopeTenantAdmin, "other", 0, now, false},
		"other-tenant-read":  {corral.ScopeTenantRead, "other", 0, now, false},
		"expired":            {corral.ScopeAdmin, "", time.Minute, now.Add(-time.Hour), false},
		"revoked":            {corral.ScopeAdmin, "", 0, now, true},
	} {
		f.tok[name] = mintToken(t, st, name, s.scope, s.tenant, s.expires, s.at, s.revoke)
	}
	f.tok["garbage"] = auth.SecretPrefix + "not-a-token-at-all"
	return f
}

func mintToken(t testing.TB, st corral.Store, name string, scope corral.TokenScope, tenant string, expires time.Duration, at time.Time, revoke bool) string {
	t.Helper()
	secret, tk, err := auth.New(name, scope, tenant, expires, at)
	if err != nil {
		t.Fatal(err)
	}
	if revoke {
		tk.RevokedAt = at
	}
	if err := st.Update(context.Background(), func(tx corral.Tx) error { return tx.PutToken(context.Background(), tk) }); err != nil {
		t.Fatal(err)
	}
	return secret
}

// webhook posts a queued job to target and returns its corral job id.
func (f *fixture) webhook(t testing.TB, target string, sec corral.Secret, forgeID int64) int64 {
	t.Helper()
	body := jobPayload(forgeID, "queued", "")
	req := httptest.NewRequest("POST", "/webhooks/"+target, bytes.NewReader(body))
	req.Header = fake.Header("workflow_job", fmt.Sprint("d-", f.delivery.Add(1)), github.Sign(sec, body))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Fatalf("webhook %s: %d %s", target, rec.Code, rec.Body)
	}
	var id int64
	_ = f.st.View(context.Background(), func(tx corral.ReadTx) error {
		j, err := tx.JobByForgeID(context.Background(), target, forgeID)
		id = j.ID
		return err
	})
	if id == 0 {
		t.Fatalf("job %s/%d not stored", target, forgeID)
	}
	return id
}

// get sends GET url without a token.
func get(t *testing.T, h http.Handler, url string) (int, string) { return getAs(t, h, url, "") }

// getAs sends GET url with the bearer token (none if empty).
func getAs(t *testing.T, h http.Handler, url, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestApp_API(t *testing.T) {
	f := newFixture(t)
	h, admin := f.h, f.tok["admin"]
	code, out := getAs(t, h, "/api/v1/jobs?target=acme", admin)
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
	code, out = getAs(t, h, "/api/v1/jobs/"+itoa(j.ID), admin)
	if code != 200 || !strings.Contains(out, `"kind":"queued"`) || !strings.Contains(out, `"kind":"routed"`) {
		t.Fatalf("job detail: %d %s", code, out)
	}
	for url, want := range map[string]int{"/api/v1/jobs/999": 404, "/api/v1/jobs/abc": 400, "/api/v1/jobs?after=x": 400,
		"/healthz": 200, "/api/v1/instances": 200, "/api/v1/targets": 200, "/api/v1/tokens": 200} {
		if code, out := getAs(t, h, url, admin); code != want {
			t.Errorf("GET %s = %d %s, want %d", url, code, out, want)
		}
	}
	for _, url := range []string{"/api/v1/jobs", "/api/v1/instances", "/api/v1/targets", "/api/v1/tokens", "/healthz"} {
		_, out := getAs(t, h, url, admin)
		for _, s := range append([]string{secret.Reveal(), otherSecret.Reveal()}, values(f.tok)...) {
			if strings.Contains(out, s) {
				t.Fatalf("%s leaks a secret", url)
			}
		}
	}
	code, out = getAs(t, h, "/api/v1/tokens", admin)
	if code != 200 || strings.Count(out, `"id":"tok_`) != 8 || !strings.Contains(out, `"scope":"tenant-read","tenant":"default"`) ||
		!strings.Contains(out, `"revoked_at"`) {
		t.Fatalf("tokens: %d %s", code, out)
	}
}

// TestApp_API_TenantFiltering: per endpoint, a tenant token sees its own
// tenant's objects only; an admin token sees both tenants.
func TestApp_API_TenantFiltering(t *testing.T) {
	f := newFixture(t)
	ids := func(url, tok, list, field string) []string {
		t.Helper()
		code, out := getAs(t, f.h, url, tok)
		var body map[string][]map[string]any
		if err := json.Unmarshal([]byte(out), &body); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %s %v", url, code, out, err)
		}
		var got []string
		for _, o := range body[list] {
			got = append(got, fmt.Sprint(o[field]))
		}
		sort.Strings(got)
		return got
	}
	for _, tc := range []struct {
		url, list, field string
		mine, theirs     string // the default tenant's object, the other's
	}{
		{"/api/v1/jobs", "jobs", "target", "acme", "beta"},
		{"/api/v1/jobs?state=routed", "jobs", "target", "acme", "beta"},
		{"/api/v1/instances", "instances", "id", "i-default", "i-other"},
		{"/api/v1/targets", "targets", "id", "acme", "beta"},
	} {
		for tok, want := range map[string][]string{
			"tenant-read": {tc.mine}, "tenant-admin": {tc.mine},
			"other-tenant-read": {tc.theirs}, "other-tenant-admin": {tc.theirs},
			"admin": {tc.mine, tc.theirs},
		} {
			if got := ids(tc.url, f.tok[tok], tc.list, tc.field); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("GET %s as %s: %v, want %v", tc.url, tok, got, want)
			}
		}
	}
	// Object endpoints: another tenant's job does not exist for you.
	for _, tc := range []struct {
		tok  string
		job  int64
		want int
	}{
		{"tenant-read", f.jobA, 200}, {"tenant-read", f.jobB, 404}, {"other-tenant-read", f.jobA, 404},
		{"other-tenant-admin", f.jobB, 200}, {"admin", f.jobA, 200}, {"admin", f.jobB, 200},
	} {
		code, out := getAs(t, f.h, "/api/v1/jobs/"+itoa(tc.job), f.tok[tc.tok])
		if code != tc.want {
			t.Errorf("GET job %d as %s: %d %s, want %d", tc.job, tc.tok, code, out, tc.want)
		}
		// The same body as a job that does not exist, but for the request id.
		if code == 404 && regexp.MustCompile(`,"request_id":"[0-9a-f]{32}"`).ReplaceAllString(out, "") != fmt.Sprintf("{\"error\":\"job %d: not found\"}\n", tc.job) {
			t.Errorf("404 body %q differs from a job that does not exist", out)
		}
	}
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// GET /api/v1/leader: two replicas on one store answer the same holder
// and term, and only the holder says it leads; when it stops (releasing
// the lease) the other takes over in a new term, and both show it.
func TestApp_APILeader(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	admin := mintToken(t, st, "admin", corral.ScopeAdmin, "", 0, time.Now(), false)
	replica := func(holder string) (http.Handler, context.CancelFunc, chan error) {
		a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
			Tenants:      []corral.Tenant{{ID: "default"}},
			Targets:      []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
			ControllerID: "test", Holder: holder, LeaseTTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		h := a.Handler()
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+admin)
			h.ServeHTTP(w, r)
		}), cancel, done
	}
	leaderOf := func(h http.Handler) app.LeaderView {
		t.Helper()
		code, out := get(t, h, "/api/v1/leader")
		var v app.LeaderView
		if err := json.Unmarshal([]byte(out), &v); err != nil || code != 200 {
			t.Fatalf("GET /api/v1/leader = %d %s (%v)", code, out, err)
		}
		return v
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	ha, stopA, doneA := replica("a")
	wait("a leads", func() bool { return leaderOf(ha).Leading })
	hb, _, _ := replica("b")
	va, vb := leaderOf(ha), leaderOf(hb)
	if va.Holder != "a" || va.Term < 1 || va.LeadingTerm != va.Term || va.Replica != "a" || va.ExpiresAt == nil || !va.ExpiresAt.After(time.Now()) {
		t.Errorf("a's view = %+v, want a leading in its term, the lease not expired", va)
	}
	if vb.Holder != "a" || vb.Term != va.Term || vb.Leading || vb.LeadingTerm != 0 || vb.Replica != "b" {
		t.Errorf("b's view = %+v, want a's lease in term %d, b not leading", vb, va.Term)
	}
	// The same lead in /metrics and /readyz (b's readyz waits for b's
	// first look at the lease).
	shows(t, ha, "/metrics", "corral_leader 1", fmt.Sprintf("corral_leader_term %d", va.Term))
	shows(t, hb, "/metrics", "corral_leader 0", "corral_leader_term 0")
	shows(t, ha, "/readyz", fmt.Sprintf("this replica leads (term %d)", va.Term))
	wait("b's readyz names a", func() bool { _, out := get(t, hb, "/readyz"); return strings.Contains(out, "a leads (lease until") })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	doneA <- nil // for the cleanup
	wait("b leads", func() bool { return leaderOf(hb).Leading })
	if vb := leaderOf(hb); vb.Holder != "b" || vb.Term <= va.Term || vb.LeadingTerm != vb.Term {
		t.Errorf("after a stopped, b's view = %+v, want b leading in a term above %d", vb, va.Term)
	}
	if va := leaderOf(ha); va.Holder != "b" || va.Leading {
		t.Errorf("the stopped replica a's view = %+v, want b holding the lease, a not leading", va)
	}
	vb = leaderOf(hb)
	shows(t, hb, "/metrics", "corral_leader 1", fmt.Sprintf("corral_leader_term %d", vb.Term))
	shows(t, hb, "/readyz", fmt.Sprintf("this replica leads (term %d)", vb.Term))
	shows(t, ha, "/metrics", "corral_leader 0", "corral_leader_term 0")
}

// shows fails unless GET url answers a body holding every want.
func shows(t *testing.T, h http.Handler, url string, wants ...string) {
	t.Helper()
	_, out := get(t, h, url)
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("GET %s does not show %q:\n%s", url, w, out)
		}
	}
}
