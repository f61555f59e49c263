package github

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func TestClient_MintRunner(t *testing.T) {
	spec := corral.RunnerSpec{Name: "corral-abc", Labels: []string{"self-hosted", "linux", "run-42"}}

	t.Run("happy path is one call", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", jitOK(77))
		tg := e.target(corral.ScopeRepo, "o/r")
		tg.Settings[SettingRunnerGroupID] = "3"
		c := e.client(t, tg)
		if _, err := c.MintRunner(ctxT(t), spec); err != nil { // first use probes
			t.Fatal(err)
		}
		before := e.f.total()
		b, err := c.MintRunner(ctxT(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		if n := e.f.total() - before; n != 1 {
			t.Fatalf("mint made %d calls, want 1", n)
		}
		if b.RunnerID != 77 || !slices.Equal(b.Command, []string{"run.sh"}) || b.Env[EnvJITConfig].Reveal() != "SEKRITjitconfig==" || len(b.Env) != 1 {
			t.Fatalf("bootstrap = %+v", b)
		}
		h := e.f.last("POST /repos/o/r/actions/runners/generate-jitconfig")
		var body struct {
			Name       string   `json:"name"`
			Group      int64    `json:"runner_group_id"`
			Labels     []string `json:"labels"`
			WorkFolder string   `json:"work_folder"`
		}
		if err := json.Unmarshal([]byte(h.Body), &body); err != nil {
			t.Fatal(err)
		}
		if body.Name != spec.Name || body.Group != 3 || !slices.Equal(body.Labels, spec.Labels) || body.WorkFolder != "_work" {
			t.Fatalf("request body = %+v", body)
		}
		if h.Auth != "Bearer "+testPAT || h.APIVersion != APIVersion {
			t.Fatalf("headers: auth %q version %q", h.Auth[:10], h.APIVersion)
		}
	})

	t.Run("org and enterprise scopes", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("POST /orgs/o/actions/runners/generate-jitconfig", jitOK(1))
		e.f.on("POST /enterprises/e/actions/runners/generate-jitconfig", jitOK(2))
		for _, tc := range []struct {
			scope corral.Scope
			path  string
			id    int64
		}{{corral.ScopeOrg, "o", 1}, {corral.ScopeEnterprise, "e", 2}} {
			b, err := e.client(t, e.target(tc.scope, tc.path)).MintRunner(ctxT(t), spec)
			if err != nil || b.RunnerID != tc.id {
				t.Fatalf("%s: %+v %v", tc.scope, b, err)
			}
		}
	})

	t.Run("409 with an idle leftover removes it and mints again", func(t *testing.T) {
		e := newEnv(t)
		n := 0
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
			n++
			if n == 1 {
				writeJSON(w, 409, map[string]any{"message": "Already exists - A runner with the name corral-abc already exists."})
				return
			}
			jitOK(9)(w, r)
		})
		e.f.on("GET /repos/o/r/actions/runners", func(w http.ResponseWriter, r *http.Request) {
			rs := []any{}
			if r.URL.Query().Get("name") == "corral-abc" {
				rs = append(rs, runnerJSON(5, "corral-abc", false))
			}
			writeJSON(w, 200, map[string]any{"total_count": len(rs), "runners": rs})
		})
		e.f.on("DELETE /repos/o/r/actions/runners/5", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
		b, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), spec)
		if err != nil || b.RunnerID != 9 {
			t.Fatalf("mint = %+v, %v", b, err)
		}
		if e.f.count("DELETE /repos/o/r/actions/runners/5") != 1 {
			t.Fatal("the leftover runner was not removed")
		}
	})

	t.Run("409 with a busy leftover is a conflict", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 409, map[string]any{"message": "Already exists"})
		})
		e.f.on("GET /repos/o/r/actions/runners", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"total_count": 1, "runners": []any{runnerJSON(5, "corral-abc", true)}})
		})
		_, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), spec)
		if !errors.Is(err, corral.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict", err)
		}
		if e.f.count("DELETE /repos/o/r/actions/runners/5") != 0 {
			t.Fatal("a busy runner was removed")
		}
	})

	t.Run("GHES before 3.10 uses a registration token", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("GET /meta", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-GitHub-Enterprise-Version", "3.9.4")
			writeJSON(w, 200, map[string]any{"installed_version": "3.9.4"})
		})
		e.f.on("POST /orgs/o/actions/runners/registration-token", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 201, map[string]any{"token": "REGTOKENsecret", "expires_at": "2026-11-25T11:00:00Z"})
		})
		tg := e.target(corral.ScopeOrg, "o")
		tg.URL = e.f.srv.URL + "/api/v3"
		tg.Settings[SettingRunnerGroup] = "linux-pool"
		e.f.mu.Lock()
		e.f.prefix = "/api/v3"
		e.f.mu.Unlock()
		c := e.client(t, tg)
		b, err := c.MintRunner(ctxT(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		if e.f.count("POST /orgs/o/actions/runners/generate-jitconfig") != 0 {
			t.Fatal("JIT was tried on GHES 3.9")
		}
		if !slices.Equal(b.Command, []string{FallbackScriptName}) || b.RunnerID != 0 {
			t.Fatalf("bootstrap = %+v", b)
		}
		want := map[string]string{EnvToken: "REGTOKENsecret", EnvURL: e.f.srv.URL + "/o", EnvName: "corral-abc",
			EnvLabels: "self-hosted,linux,run-42", EnvRunnerGroup: "linux-pool", EnvWork: "_work"}
		for k, v := range want {
			if b.Env[k].Reveal() != v {
				t.Fatalf("env %s = %q, want %q", k, b.Env[k].Reveal(), v)
			}
		}
		for _, a := range b.Command {
			mustNotContain(t, a, "REGTOKENsecret")
		}
		if !strings.Contains(FallbackScript, "--ephemeral") || !strings.Contains(FallbackScript, "unset "+EnvToken) {
			t.Fatal("fallback script lost --ephemeral or the token unset")
		}
	})

	t.Run("404 on generate-jitconfig falls back and remembers", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("POST /repos/o/r/actions/runners/registration-token", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 201, map[string]any{"token": "REGTOKENsecret", "expires_at": "2026-11-25T11:00:00Z"})
		})
		c := e.client(t, e.target(corral.ScopeRepo, "o/r"))
		for range 2 {
			b, err := c.MintRunner(ctxT(t), spec)
			if err != nil || b.Command[0] != FallbackScriptName {
				t.Fatalf("mint = %+v, %v", b, err)
			}
		}
		if n := e.f.count("POST /repos/o/r/actions/runners/generate-jitconfig"); n != 1 {
			t.Fatalf("JIT tried %d times, want 1", n)
		}
	})

	t.Run("404 everywhere is not found", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), spec)
		if !errors.Is(err, corral.ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("no labels is bad input without a call", func(t *testing.T) {
		e := newEnv(t)
		_, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), corral.RunnerSpec{Name: "x"})
		if !errors.Is(err, corral.ErrBadInput) || e.f.total() != 0 {
			t.Fatalf("err = %v, calls %d", err, e.f.total())
		}
	})
}

func TestClient_Runners(t *testing.T) {
	e := newEnv(t)
	e.f.on("GET /orgs/o/actions/runners", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			writeJSON(w, 200, map[string]any{"total_count": 3, "runners": []any{runnerJSON(3, "corral-b", true)}})
			return
		}
		w.Header().Set("Link", `<`+e.f.srv.URL+`/orgs/o/actions/runners?per_page=100&page=2>; rel="next"`)
		writeJSON(w, 200, map[string]any{"total_count": 3, "runners": []any{runnerJSON(1, "corral-a", false), runnerJSON(2, "other", false)}})
	})
	rs, err := e.client(t, e.target(corral.ScopeOrg, "o")).Runners(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "corral-a" || rs[1].Name != "corral-b" || !rs[1].Busy || !rs[0].Online || rs[0].Labels[0] != "self-hosted" {
		t.Fatalf("runners = %+v", rs)
	}
}

func TestClient_RemoveRunner(t *testing.T) {
	e := newEnv(t)
	e.f.on("DELETE /repos/o/r/actions/runners/1", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	e.f.on("DELETE /repos/o/r/actions/runners/2", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 422, map[string]any{"message": `Bad request - Runner "corral-b" is still running a job"`})
	})
	e.f.on("GET /repos/o/r/actions/runners", func(w http.ResponseWriter, r *http.Request) {
		rs := []any{}
		if r.URL.Query().Get("name") == "corral-a" {
			rs = append(rs, runnerJSON(1, "corral-a", false))
		}
		writeJSON(w, 200, map[string]any{"total_count": len(rs), "runners": rs})
	})
	c := e.client(t, e.target(corral.ScopeRepo, "o/r"))
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		r    corral.Runner
		want error
	}{
		{"removed", corral.Runner{ID: 1}, nil},
		{"busy", corral.Runner{ID: 2}, corral.ErrBusy},
		{"already gone", corral.Runner{ID: 3}, nil},
		{"by name", corral.Runner{Name: "corral-a"}, nil},
		{"by name, gone", corral.Runner{Name: "corral-zz"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.RemoveRunner(ctx, tc.r)
			if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if n := e.f.count("DELETE /repos/o/r/actions/runners/1"); n != 2 {
		t.Fatalf("runner 1 deleted %d times, want 2 (by id, by name)", n)
	}
}
