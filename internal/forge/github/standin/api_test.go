package standin

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestServer_Scopes(t *testing.T) {
	s, base := newStandin(t, Options{GHESVersion: "3.17"})
	_ = s
	for _, prefix := range []string{"", "/api/v3"} {
		for _, sc := range []string{"/repos/acme/app", "/orgs/acme", "/enterprises/big"} {
			t.Run(prefix+sc, func(t *testing.T) {
				u := base + prefix + sc + "/actions/runners"
				name := "r-" + strings.ReplaceAll(prefix+sc, "/", "-")
				a := do(t, "POST", u+"/generate-jitconfig", token(adminPAT), jitBody(name, "self-hosted", "gpu"))
				want(t, a, http.StatusCreated)
				if got := a.header.Get("X-GitHub-Enterprise-Version"); (prefix != "") != (got == "3.17") {
					t.Errorf("X-GitHub-Enterprise-Version %q under %q", got, prefix)
				}
				var jit struct {
					Runner struct {
						ID     int64  `json:"id"`
						Name   string `json:"name"`
						OS     string `json:"os"`
						Status string `json:"status"`
						Busy   bool   `json:"busy"`
						Labels []struct {
							ID   int64  `json:"id"`
							Name string `json:"name"`
							Type string `json:"type"`
						} `json:"labels"`
					} `json:"runner"`
					Config string `json:"encoded_jit_config"`
				}
				a.json(t, &jit)
				if jit.Runner.Name != name || jit.Runner.Status != "offline" || jit.Runner.Busy || jit.Config == "" ||
					len(jit.Runner.Labels) != 2 || jit.Runner.Labels[0].Type != "read-only" || jit.Runner.Labels[1].Type != "custom" {
					t.Fatalf("JIT answer %s", a.body)
				}
				if _, _, err := decodeJIT(jit.Config); err != nil {
					t.Fatal(err)
				}
				want(t, do(t, "POST", u+"/generate-jitconfig", token(adminPAT), jitBody(name, "x")), http.StatusConflict)
				want(t, do(t, "POST", u+"/generate-jitconfig", token(adminPAT), map[string]any{"name": "n2", "labels": []string{"x"}}), http.StatusUnprocessableEntity)
				want(t, do(t, "POST", u+"/generate-jitconfig", token(adminPAT), map[string]any{"runner_group_id": 1, "labels": []string{"x"}}), http.StatusUnprocessableEntity)
				want(t, do(t, "POST", u+"/generate-jitconfig", token(adminPAT), jitBody("n3")), http.StatusUnprocessableEntity)
				many := make([]string, 101)
				for i := range many {
					many[i] = fmt.Sprint("l", i)
				}
				want(t, do(t, "POST", u+"/generate-jitconfig", token(adminPAT), jitBody("n4", many...)), http.StatusUnprocessableEntity)

				a = do(t, "GET", u+"?name="+name, token(adminPAT), nil)
				want(t, a, http.StatusOK)
				var list struct {
					Total   int `json:"total_count"`
					Runners []struct {
						ID int64 `json:"id"`
					} `json:"runners"`
				}
				a.json(t, &list)
				if list.Total != 1 || list.Runners[0].ID != jit.Runner.ID {
					t.Fatalf("list by name: %s", a.body)
				}
				id := strconv.FormatInt(jit.Runner.ID, 10)
				want(t, do(t, "GET", u+"/"+id, token(adminPAT), nil), http.StatusOK)
				a = do(t, "GET", u+"/"+id+"/labels", token(adminPAT), nil)
				want(t, a, http.StatusOK)
				mustContain(t, string(a.body), `"total_count":2`)
				a = do(t, "GET", u+"/downloads", token(adminPAT), nil)
				want(t, a, http.StatusOK)
				mustContain(t, string(a.body), `"sha256_checksum"`)
				mustContain(t, string(a.body), CurrentRunnerVersion)
				for _, kind := range []string{"registration-token", "remove-token"} {
					a = do(t, "POST", u+"/"+kind, token(adminPAT), nil)
					want(t, a, http.StatusCreated)
					var tok struct {
						Token   string    `json:"token"`
						Expires time.Time `json:"expires_at"`
					}
					a.json(t, &tok)
					if tok.Token == "" || time.Until(tok.Expires) < 59*time.Minute || time.Until(tok.Expires) > 61*time.Minute {
						t.Fatalf("%s: %s", kind, a.body)
					}
				}
				want(t, do(t, "DELETE", u+"/"+id, token(adminPAT), nil), http.StatusNoContent)
				a = do(t, "GET", u+"/"+id, token(adminPAT), nil)
				want(t, a, http.StatusNotFound)
				var e struct{ Message, Documentation_URL string }
				a.json(t, &e)
				if e.Message != "Not Found" || e.Documentation_URL == "" {
					t.Fatalf("error body %s", a.body)
				}
			})
		}
	}
	t.Run("runner groups", func(t *testing.T) {
		for _, sc := range []string{"/orgs/acme", "/enterprises/big"} {
			a := do(t, "GET", base+sc+"/actions/runner-groups", token(adminPAT), nil)
			want(t, a, http.StatusOK)
			mustContain(t, string(a.body), `"default":true`)
		}
	})
	t.Run("unknown scope", func(t *testing.T) {
		want(t, do(t, "GET", base+"/repos/acme/nope/actions/runners", token(adminPAT), nil), http.StatusNotFound)
		want(t, do(t, "GET", base+"/nowhere", token(adminPAT), nil), http.StatusNotFound)
	})
}

func TestServer_GHES(t *testing.T) {
	t.Run("3.9 has no JIT", func(t *testing.T) {
		_, base := newStandin(t, Options{GHESVersion: "3.9"})
		a := do(t, "POST", base+"/api/v3/repos/acme/app/actions/runners/generate-jitconfig", token(adminPAT), jitBody("a", "x"))
		want(t, a, http.StatusNotFound)
		if a.header.Get("X-GitHub-Enterprise-Version") != "3.9" {
			t.Fatalf("headers %v", a.header)
		}
		want(t, do(t, "POST", base+"/api/v3/repos/acme/app/actions/runners/registration-token", token(adminPAT), nil), http.StatusCreated)
		a = do(t, "GET", base+"/api/v3/meta", "", nil)
		want(t, a, http.StatusOK)
		mustContain(t, string(a.body), `"installed_version":"3.9.0"`)
	})
	t.Run("3.17 has JIT", func(t *testing.T) {
		_, base := newStandin(t, Options{GHESVersion: "3.17"})
		want(t, do(t, "POST", base+"/api/v3/orgs/acme/actions/runners/generate-jitconfig", token(adminPAT), jitBody("a", "x")), http.StatusCreated)
	})
}

var linkRe = regexp.MustCompile(`<([^>]+)>; rel="(\w+)"`)

func links(h http.Header) map[string]string {
	out := map[string]string{}
	for _, m := range linkRe.FindAllStringSubmatch(h.Get("Link"), -1) {
		out[m[2]] = m[1]
	}
	return out
}

func TestServer_Pagination(t *testing.T) {
	_, base := newStandin(t, Options{})
	u := base + "/orgs/acme/actions/runners"
	for i := range 5 {
		want(t, do(t, "POST", u+"/generate-jitconfig", token(adminPAT), jitBody(fmt.Sprint("r", i), "x")), http.StatusCreated)
	}
	a := do(t, "GET", u+"?per_page=2", token(adminPAT), nil)
	want(t, a, http.StatusOK)
	l := links(a.header)
	if !strings.Contains(l["next"], "page=2") || !strings.Contains(l["last"], "page=3") || l["prev"] != "" {
		t.Fatalf("Link %q", a.header.Get("Link"))
	}
	seen := 0
	for next := u + "?per_page=2"; next != ""; {
		a := do(t, "GET", next, token(adminPAT), nil)
		var page struct {
			Total   int              `json:"total_count"`
			Runners []map[string]any `json:"runners"`
		}
		a.json(t, &page)
		if page.Total != 5 {
			t.Fatalf("total_count %d", page.Total)
		}
		seen += len(page.Runners)
		next = links(a.header)["next"]
	}
	if seen != 5 {
		t.Fatalf("followed Link over %d runners, want 5", seen)
	}
	a = do(t, "GET", u+"?per_page=2&page=3", token(adminPAT), nil)
	if l := links(a.header); l["prev"] == "" || l["first"] == "" || l["next"] != "" {
		t.Fatalf("last page Link %q", a.header.Get("Link"))
	}
	a = do(t, "GET", u+"?per_page=500", token(adminPAT), nil)
	if a.header.Get("Link") != "" {
		t.Fatalf("per_page is capped at 100; one page expected, Link %q", a.header.Get("Link"))
	}
}

func TestServer_ETag(t *testing.T) {
	s, base := newStandin(t, Options{})
	s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
	u := base + "/repos/acme/app/actions/runs?status=queued"
	a := do(t, "GET", u, token(adminPAT), nil)
	want(t, a, http.StatusOK)
	mustContain(t, string(a.body), `"total_count":1`)
	etag := a.header.Get("ETag")
	rem := a.header.Get("X-RateLimit-Remaining")
	if etag == "" || rem == "" {
		t.Fatalf("headers %v", a.header)
	}
	b := do(t, "GET", u, token(adminPAT), nil, "If-None-Match", etag)
	want(t, b, http.StatusNotModified)
	if b.header.Get("X-RateLimit-Remaining") != rem {
		t.Fatalf("a 304 was counted: remaining %s then %s", rem, b.header.Get("X-RateLimit-Remaining"))
	}
	if st := s.Stats(); st.NotModified["GET runs"] != 1 || st.Calls["GET runs"] != 2 {
		t.Fatalf("stats: %d of %d GET runs answered 304, want 1 of 2", st.NotModified["GET runs"], st.Calls["GET runs"])
	}
	s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
	c := do(t, "GET", u, token(adminPAT), nil, "If-None-Match", etag)
	want(t, c, http.StatusOK)
	mustContain(t, string(c.body), `"total_count":2`)
	want(t, do(t, "GET", base+"/repos/acme/app/actions/runs?status=in_progress", token(adminPAT), nil), http.StatusOK)
	want(t, do(t, "GET", base+"/repos/acme/app/actions/runs?status=bogus", token(adminPAT), nil), http.StatusUnprocessableEntity)
}

func rateHeaders(t *testing.T, a answer) (limit, remaining, used int, reset time.Time) {
	t.Helper()
	n := func(k string) int {
		v, err := strconv.Atoi(a.header.Get(k))
		if err != nil {
			t.Fatalf("%s: %q", k, a.header.Get(k))
		}
		return v
	}
	if a.header.Get("X-RateLimit-Resource") != "core" {
		t.Fatalf("X-RateLimit-Resource %q", a.header.Get("X-RateLimit-Resource"))
	}
	return n("X-RateLimit-Limit"), n("X-RateLimit-Remaining"), n("X-RateLimit-Used"), time.Unix(int64(n("X-RateLimit-Reset")), 0)
}

func TestServer_RateLimit(t *testing.T) {
	t.Run("primary", func(t *testing.T) {
		s, base := newStandin(t, Options{RateLimit: 3})
		u := base + "/repos/acme/app/actions/runners"
		for i := range 3 {
			a := do(t, "GET", u, token(adminPAT), nil)
			want(t, a, http.StatusOK)
			limit, rem, used, reset := rateHeaders(t, a)
			if limit != 3 || rem != 2-i || used != i+1 || time.Until(reset) < 59*time.Minute {
				t.Fatalf("call %d: limit %d remaining %d used %d reset %v", i, limit, rem, used, reset)
			}
		}
		a := do(t, "GET", base+"/rate_limit", token(adminPAT), nil)
		want(t, a, http.StatusOK)
		mustContain(t, string(a.body), `"remaining":0`)
		if s.Stats().RateLimitViolations != 0 {
			t.Fatal("GET /rate_limit is free and no violation")
		}
		a = do(t, "GET", u, token(adminPAT), nil)
		want(t, a, http.StatusForbidden)
		mustContain(t, string(a.body), "API rate limit exceeded")
		if st := s.Stats(); st.RateLimitViolations != 1 || st.CallsByCredential[PATCredential(adminPAT)] != 5 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("secondary", func(t *testing.T) {
		s, base := newStandin(t, Options{})
		s.SetFaults(Faults{SecondaryBurst: 2})
		u := base + "/orgs/acme/actions/runners"
		a := do(t, "GET", u, token(adminPAT), nil)
		want(t, a, http.StatusForbidden)
		mustContain(t, string(a.body), "secondary rate limit")
		if a.header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q", a.header.Get("Retry-After"))
		}
		time.Sleep(inFlightGrace + 50*time.Millisecond) // past what could have been in flight
		want(t, do(t, "GET", u, token(adminPAT), nil), http.StatusTooManyRequests)
		if n := s.Stats().RateLimitViolations; n != 1 {
			t.Fatalf("a call within Retry-After is a violation; got %d", n)
		}
		time.Sleep(time.Second + 50*time.Millisecond) // honouring Retry-After, as corral must
		want(t, do(t, "GET", u, token(adminPAT), nil), http.StatusOK)
		if n := s.Stats().RateLimitViolations; n != 1 {
			t.Fatalf("violations %d after waiting", n)
		}
	})
	t.Run("exhausted", func(t *testing.T) {
		s, base := newStandin(t, Options{})
		s.SetFaults(Faults{PrimaryExhaust: true, PrimaryResetIn: 500 * time.Millisecond})
		u := base + "/repos/acme/app/actions/runners"
		a := do(t, "GET", u, token(adminPAT), nil)
		want(t, a, http.StatusForbidden)
		_, rem, _, reset := rateHeaders(t, a)
		if rem != 0 {
			t.Fatalf("remaining %d", rem)
		}
		waitFor(t, 3*time.Second, "X-RateLimit-Reset", func() bool { return !time.Now().Before(reset) })
		want(t, do(t, "GET", u, token(adminPAT), nil), http.StatusOK)
		if n := s.Stats().RateLimitViolations; n != 0 {
			t.Fatalf("violations %d", n)
		}
	})
	t.Run("server errors", func(t *testing.T) {
		s, base := newStandin(t, Options{})
		s.SetFaults(Faults{ServerErrorRate: 1})
		a := do(t, "GET", base+"/repos/acme/app/actions/runners", token(adminPAT), nil)
		if a.status < 500 {
			t.Fatalf("status %d", a.status)
		}
	})
}

func TestServer_TokenAuth(t *testing.T) {
	s, base := newStandin(t, Options{})
	s.AddPAT("ghp_repo_only", "repo")
	s.AddPAT("github_pat_fine")
	cases := []struct {
		name, auth, path string
		status           int
	}{
		{"no credential", "", "/repos/acme/app/actions/runners", 401},
		{"unknown token", "token nope", "/repos/acme/app/actions/runners", 401},
		{"bearer PAT", "Bearer " + adminPAT, "/repos/acme/app/actions/runners", 200},
		{"classic repo scope on repo", token("ghp_repo_only"), "/repos/acme/app/actions/runners", 200},
		{"classic repo scope on org", token("ghp_repo_only"), "/orgs/acme/actions/runners", 403},
		{"classic repo scope on enterprise", token("ghp_repo_only"), "/enterprises/big/actions/runners", 403},
		{"fine-grained on org", token("github_pat_fine"), "/orgs/acme/actions/runners", 200},
		{"fine-grained on enterprise", token("github_pat_fine"), "/enterprises/big/actions/runners", 403},
		{"PAT on app endpoint", token(adminPAT), "/app", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want(t, do(t, "GET", base+c.path, c.auth, nil), c.status)
		})
	}
}
