package gitea

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func newClient(t *testing.T, tg corral.Target, opt Options) *Client {
	t.Helper()
	c, err := NewClient(tg, opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewClient(t *testing.T) {
	ok := target("http://127.0.0.1:3000", corral.ScopeRepo, "o/r")
	cases := []struct {
		name string
		mod  func(*corral.Target)
		ok   bool
	}{
		{"valid", func(*corral.Target) {}, true},
		{"api suffix", func(t *corral.Target) { t.URL += "/api/v1/" }, true},
		{"forgejo", func(t *corral.Target) { t.Kind = corral.KindForgejo }, true},
		{"org", func(t *corral.Target) { t.Scope, t.Path = corral.ScopeOrg, "acme" }, true},
		{"user", func(t *corral.Target) { t.Scope, t.Path = corral.ScopeUser, "" }, true},
		{"instance", func(t *corral.Target) { t.Scope, t.Path = corral.ScopeInstance, "" }, true},
		{"github kind", func(t *corral.Target) { t.Kind = corral.KindGitHub }, false},
		{"enterprise", func(t *corral.Target) { t.Scope = corral.ScopeEnterprise }, false},
		{"repo without owner", func(t *corral.Target) { t.Path = "r" }, false},
		{"org with slash", func(t *corral.Target) { t.Scope, t.Path = corral.ScopeOrg, "a/b" }, false},
		{"relative url", func(t *corral.Target) { t.URL = "gitea.local" }, false},
		{"url with credentials", func(t *corral.Target) { t.URL = "http://u:pw@gitea.local" }, false},
		{"no token", func(t *corral.Target) { t.Token = "" }, false},
		{"bad runner url", func(t *corral.Target) { t.Settings = map[string]string{SettingRunnerURL: "x"} }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := ok
			tc.mod(&tg)
			_, err := NewClient(tg, Options{})
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil && !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("err = %v, want ErrBadInput", err)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Fatal("error shows the URL's password")
			}
		})
	}
}

func TestClient_MintRunner(t *testing.T) {
	t.Run("one call for many runners", func(t *testing.T) {
		f, ts := newFake(t, "/repos/o/r")
		c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.MintRunner(ctxT(t), corral.RunnerSpec{Name: fmt.Sprint("corral-t1-", i), Labels: []string{"corral"}})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := f.count("POST registration-token"); n != 1 {
			t.Fatalf("registration-token calls = %d, want 1", n)
		}
	})
	t.Run("bootstrap", func(t *testing.T) {
		f, ts := newFake(t, "/repos/o/r")
		tg := target(ts.URL+"/api/v1", corral.ScopeRepo, "o/r")
		b, err := newClient(t, tg, Options{}).MintRunner(ctxT(t), corral.RunnerSpec{Name: "corral-t1-a", Labels: []string{"self-hosted", "corral", "2cpu4gb", "corral"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Command) != 3 || b.Command[0] != "sh" || b.Command[1] != "-c" || b.Command[2] != BootstrapScript {
			t.Errorf("Command = %q", b.Command)
		}
		want := map[string]string{EnvURL: ts.URL, EnvToken: f.token, EnvName: "corral-t1-a",
			EnvLabels: "self-hosted:host,corral:host,2cpu4gb:host", EnvBinary: GiteaRunner}
		for k, v := range want {
			if got := b.Env[k].Reveal(); got != v {
				t.Errorf("Env[%s] = %q, want %q", k, got, v)
			}
		}
		if b.Files[ConfigFile].Reveal() != RunnerConfig {
			t.Errorf("no %s", ConfigFile)
		}
		if strings.Contains(strings.Join(b.Command, " "), f.token) {
			t.Error("the token is in the command line")
		}
		if b.RunnerID != 0 {
			t.Errorf("RunnerID = %d", b.RunnerID)
		}
	})
	t.Run("runner url setting and forgejo runner", func(t *testing.T) {
		_, ts := newFake(t, "/repos/o/r")
		tg := target(ts.URL, corral.ScopeRepo, "o/r")
		tg.Kind = corral.KindForgejo
		tg.Settings = map[string]string{SettingRunnerURL: "http://gitea.internal:3000/"}
		b, err := newClient(t, tg, Options{}).MintRunner(ctxT(t), corral.RunnerSpec{Name: "n", Labels: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		if b.Env[EnvURL] != "http://gitea.internal:3000" || b.Env[EnvBinary] != ForgejoRunner {
			t.Errorf("env = %v %v", b.Env[EnvURL].Reveal(), b.Env[EnvBinary].Reveal())
		}
	})
	t.Run("rotation and ForgetToken", func(t *testing.T) {
		f, ts := newFake(t, "/repos/o/r")
		clock := corral.NewFakeClock(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
		c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{Clock: clock, RotateEvery: time.Hour})
		mint := func() corral.Secret {
			b, err := c.MintRunner(ctxT(t), corral.RunnerSpec{Name: "n", Labels: []string{"x"}})
			if err != nil {
				t.Fatal(err)
			}
			return b.Env[EnvToken]
		}
		mint()
		clock.Advance(59 * time.Minute)
		mint()
		if n := f.count("POST registration-token"); n != 1 {
			t.Fatalf("calls before rotation = %d", n)
		}
		f.mu.Lock()
		f.token = "replaced-token-0123456789abcdefghijklmnopq"
		f.mu.Unlock()
		clock.Advance(time.Minute)
		if tok := mint(); tok.Reveal() != "replaced-token-0123456789abcdefghijklmnopq" {
			t.Fatalf("token after rotation = %q", tok.Reveal())
		}
		c.ForgetToken()
		mint()
		if n := f.count("POST registration-token"); n != 3 {
			t.Fatalf("calls = %d, want 3", n)
		}
	})
	t.Run("refused labels cost no call", func(t *testing.T) {
		f, ts := newFake(t, "/repos/o/r")
		c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
		for _, ls := range [][]string{nil, {"a,b"}, {"ubuntu:docker://x"}, {"a b"}, {""}} {
			if _, err := c.MintRunner(ctxT(t), corral.RunnerSpec{Name: "n", Labels: ls}); !errors.Is(err, corral.ErrBadInput) {
				t.Errorf("labels %q: err = %v", ls, err)
			}
		}
		if _, err := c.MintRunner(ctxT(t), corral.RunnerSpec{Name: "", Labels: []string{"a"}}); !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("empty name: err = %v", err)
		}
		if n := f.count("POST registration-token"); n != 0 {
			t.Fatalf("calls = %d", n)
		}
	})
	t.Run("scopes", func(t *testing.T) {
		for _, sc := range []struct {
			scope      corral.Scope
			path, want string
		}{
			{corral.ScopeOrg, "acme", "/orgs/acme"},
			{corral.ScopeUser, "", "/user"},
			{corral.ScopeInstance, "", "/admin"},
		} {
			f, ts := newFake(t, sc.want)
			if _, err := newClient(t, target(ts.URL, sc.scope, sc.path), Options{}).MintRunner(ctxT(t),
				corral.RunnerSpec{Name: "n", Labels: []string{"x"}}); err != nil {
				t.Fatalf("%s: %v", sc.scope, err)
			}
			if f.count("POST registration-token") != 1 {
				t.Fatalf("%s: not called at %s", sc.scope, sc.want)
			}
		}
	})
}

func TestClient_errors(t *testing.T) {
	cases := []struct {
		status int
		want   error
	}{
		{http.StatusUnauthorized, corral.ErrUnauthorized},
		{http.StatusForbidden, corral.ErrUnauthorized},
		{http.StatusNotFound, corral.ErrNotFound},
		{http.StatusConflict, corral.ErrConflict},
		{http.StatusTooManyRequests, corral.ErrRateLimited},
		{http.StatusInternalServerError, corral.ErrUnavailable},
		{http.StatusUnprocessableEntity, corral.ErrBadInput},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			f, ts := newFake(t, "/repos/o/r")
			f.fail, f.msg = tc.status, "echo "+pat
			c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
			_, err := c.OpenJobs(ctxT(t))
			var ce *corral.CallError
			if !errors.As(err, &ce) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want a CallError wrapping %v", err, tc.want)
			}
			if ce.Status != tc.status || ce.Op != "list-jobs" || ce.Target != "t1" || ce.Method != http.MethodGet {
				t.Errorf("CallError = %+v", ce)
			}
			if strings.Contains(err.Error(), pat) {
				t.Fatalf("error shows the token: %v", err)
			}
		})
	}
	t.Run("wrong token", func(t *testing.T) {
		_, ts := newFake(t, "/repos/o/r")
		tg := target(ts.URL, corral.ScopeRepo, "o/r")
		tg.Token = "wrong-token-value"
		_, err := newClient(t, tg, Options{}).MintRunner(ctxT(t), corral.RunnerSpec{Name: "n", Labels: []string{"x"}})
		if !errors.Is(err, corral.ErrUnauthorized) || strings.Contains(err.Error(), "wrong-token-value") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("forge down", func(t *testing.T) {
		_, ts := newFake(t, "/repos/o/r")
		ts.Close()
		_, err := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{}).Runners(ctxT(t))
		if !errors.Is(err, corral.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestClient_OpenJobs(t *testing.T) {
	f, ts := newFake(t, "/orgs/acme")
	for i := int64(1); i <= 120; i++ {
		f.addJob(i, "queued", "corral")
	}
	f.addJob(500, "in_progress", "corral")
	f.addJob(501, "completed", "corral")
	f.addJob(502, "waiting", "corral")
	jobs, err := newClient(t, target(ts.URL, corral.ScopeOrg, "acme"), Options{}).OpenJobs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 121 {
		t.Fatalf("%d open jobs, want 121", len(jobs))
	}
	if n := f.count("GET jobs"); n != 3 {
		t.Errorf("pages read = %d, want 3 (limit 50)", n)
	}
	last := jobs[len(jobs)-1]
	if last.ForgeJobID != 500 || last.Action != corral.ActionInProgress || last.Repo != "o/r" || last.Labels[0] != "corral" {
		t.Errorf("last = %+v", last)
	}
	if jobs[0].At.IsZero() || jobs[0].Action != corral.ActionQueued {
		t.Errorf("first = %+v", jobs[0])
	}
}

func TestClient_Job(t *testing.T) {
	f, ts := newFake(t, "/repos/o/r")
	f.addJob(7, "completed", "corral")
	c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
	j, err := c.Job(ctxT(t), 7, "")
	if err != nil || j.Action != corral.ActionCompleted || j.Repo != "o/r" {
		t.Fatalf("job = %+v, err = %v", j, err)
	}
	if _, err := c.Job(ctxT(t), 8, "o/r"); !errors.Is(err, corral.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	org := newClient(t, target(ts.URL, corral.ScopeOrg, "o"), Options{})
	if _, err := org.Job(ctxT(t), 7, ""); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("org job without repo: err = %v", err)
	}
}

func TestClient_Runners(t *testing.T) {
	f, ts := newFake(t, "/repos/o/r")
	for i := int64(1); i <= 60; i++ {
		name := fmt.Sprint("corral-t1-", i)
		if i%2 == 0 {
			name = fmt.Sprint("other-", i)
		}
		f.addRunner(i, name, i == 3)
	}
	rs, err := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{}).Runners(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 30 {
		t.Fatalf("%d runners, want the 30 with the prefix", len(rs))
	}
	if rs[1].ID != 3 || !rs[1].Busy || !rs[1].Online || rs[1].Labels[0] != "corral" {
		t.Errorf("runner = %+v", rs[1])
	}
}

func TestClient_RemoveRunner(t *testing.T) {
	f, ts := newFake(t, "/repos/o/r")
	f.addRunner(1, "corral-t1-idle", false)
	f.addRunner(2, "corral-t1-busy", true)
	f.addRunner(3, "corral-t1-byname", false)
	c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
	ctx := ctxT(t)
	if err := c.RemoveRunner(ctx, corral.Runner{ID: 1, Name: "corral-t1-idle"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{ID: 2}); !errors.Is(err, corral.ErrBusy) {
		t.Fatalf("busy: err = %v", err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{Name: "corral-t1-busy"}); !errors.Is(err, corral.ErrBusy) {
		t.Fatalf("busy by name: err = %v", err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{ID: 99}); err != nil {
		t.Fatalf("gone: err = %v", err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{Name: "corral-t1-byname"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{Name: "corral-t1-never"}); err != nil {
		t.Fatalf("unknown name: err = %v", err)
	}
	if got := f.runnerNames(); len(got) != 1 || got[0] != "corral-t1-busy" {
		t.Fatalf("runners left = %v", got)
	}
}

// PollJobs is one call while at most 50 jobs are open, reads every page
// when more are, returns queued and running jobs only, and sends the ETag of a
// single-page answer back so that an unchanged listing is a 304.
func TestClient_PollJobs(t *testing.T) {
	f, ts := newFake(t, "/repos/o/r")
	c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
	f.addJob(1, "queued", "corral")
	f.addJob(2, "in_progress", "corral")
	f.addJob(3, "waiting", "corral")
	jobs, unchanged, err := c.PollJobs(ctxT(t))
	if err != nil || unchanged || len(jobs) != 2 || jobs[0].ForgeJobID != 1 || jobs[0].Action != corral.ActionQueued ||
		jobs[1].ForgeJobID != 2 || jobs[1].Action != corral.ActionInProgress {
		t.Fatalf("jobs %+v, unchanged %v, err %v; want job 1 queued, job 2 in progress", jobs, unchanged, err)
	}
	if n := f.count("GET jobs"); n != 1 {
		t.Fatalf("%d listing calls, want 1", n)
	}
	// Without an ETag (Gitea 1.27.3), every poll is a full answer.
	if _, unchanged, _ := c.PollJobs(ctxT(t)); unchanged {
		t.Fatal("unchanged without any ETag")
	}
	f.mu.Lock()
	f.etag = true
	f.mu.Unlock()
	for i, want := range []bool{false, true, true} {
		if _, unchanged, err := c.PollJobs(ctxT(t)); err != nil || unchanged != want {
			t.Fatalf("poll %d with ETags: unchanged %v, err %v; want %v", i, unchanged, err, want)
		}
	}
	if n := f.count("GET jobs 304"); n != 2 {
		t.Fatalf("%d answers 304, want 2", n)
	}
	f.addJob(4, "queued", "corral")
	if jobs, unchanged, err := c.PollJobs(ctxT(t)); err != nil || unchanged || len(jobs) != 3 {
		t.Fatalf("after a new job: %d jobs, unchanged %v, err %v; want 3 jobs", len(jobs), unchanged, err)
	}
	for i := int64(10); i < 130; i++ {
		f.addJob(i, "queued", "corral")
	}
	before := f.count("GET jobs")
	jobs, _, err = c.PollJobs(ctxT(t))
	if err != nil || len(jobs) != 123 {
		t.Fatalf("%d jobs, err %v; want 123 over three pages", len(jobs), err)
	}
	if n := f.count("GET jobs") - before; n != 3 {
		t.Errorf("%d listing calls for 123 open jobs, want 3 (limit 50)", n)
	}
	// A multi-page answer is not validated: the next poll is full again.
	if _, unchanged, _ := c.PollJobs(ctxT(t)); unchanged {
		t.Error("a multi-page listing answered unchanged")
	}
}
