package standin

import (
	"net/http"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestServer_APIVersion(t *testing.T) {
	s, base := newStandin(t, Options{})
	u := base + "/repos/acme/app/actions/runners"
	for _, v := range []string{"2022-11-28", "2026-03-10"} {
		a := do(t, "GET", u, token(adminPAT), nil, "X-GitHub-Api-Version", v)
		want(t, a, http.StatusOK)
		if got := a.header.Get("X-GitHub-Api-Version-Selected"); got != v {
			t.Errorf("version %s: selected %q", v, got)
		}
	}
	// Without the header: the default version.
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", token(adminPAT))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-GitHub-Api-Version-Selected") != "2022-11-28" {
		t.Fatalf("no version: %d, selected %q", resp.StatusCode, resp.Header.Get("X-GitHub-Api-Version-Selected"))
	}
	for _, v := range []string{"2021-01-01", "latest", "2022-11-29"} {
		a := do(t, "GET", u, token(adminPAT), nil, "X-GitHub-Api-Version", v)
		want(t, a, http.StatusBadRequest)
		mustContain(t, string(a.body), `"message":"Unsupported 'X-GitHub-Api-Version': `)
		mustContain(t, string(a.body), `"documentation_url":"https://docs.github.com/rest/about-the-rest-api/api-versions"`)
	}
	got := s.APIVersions()
	if got["2021-01-01"] != 1 || got[""] != 1 || got["2022-11-28"] < 1 {
		t.Fatalf("versions counted: %v", got)
	}
	// GHES knows only 2022-11-28.
	_, ghes := newStandin(t, Options{GHESVersion: "3.17"})
	want(t, do(t, "GET", ghes+"/api/v3/repos/acme/app/actions/runners", token(adminPAT), nil, "X-GitHub-Api-Version", "2026-03-10"), http.StatusBadRequest)
	want(t, do(t, "GET", ghes+"/api/v3/repos/acme/app/actions/runners", token(adminPAT), nil), http.StatusOK)
}

func TestServer_SecondaryWithoutRetryAfter(t *testing.T) {
	clk := corral.NewFakeClock(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC))
	s, base := newStandin(t, Options{Now: clk.Now})
	s.SetFaults(Faults{SecondaryBurst: 1, SecondaryNoRetryAfter: true})
	u := base + "/orgs/acme/actions/runners"
	a := do(t, "GET", u, token(adminPAT), nil)
	want(t, a, http.StatusForbidden)
	mustContain(t, string(a.body), "secondary rate limit")
	mustContain(t, string(a.body), "#about-secondary-rate-limits")
	if ra, ok := a.header["Retry-After"]; ok {
		t.Fatalf("Retry-After %q sent", ra)
	}
	if a.header.Get("X-RateLimit-Remaining") == "0" {
		t.Fatal("remaining 0: that is a primary limit")
	}
	clk.Advance(59 * time.Second) // less than GitHub's one minute
	want(t, do(t, "GET", u, token(adminPAT), nil), http.StatusOK)
	if n := s.Stats().RateLimitViolations; n != 1 {
		t.Fatalf("a call within the minute is a violation; got %d", n)
	}
	clk.Advance(time.Second)
	want(t, do(t, "GET", u, token(adminPAT), nil), http.StatusOK)
	if n := s.Stats().RateLimitViolations; n != 1 {
		t.Fatalf("violations %d after the minute", n)
	}
}
