package standin

import (
	"net/http"
	"testing"
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
