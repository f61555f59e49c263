package e2etest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// tokens maps a corral's listen address to the admin token Start minted
// for it, so that a test's API calls need only the URL.
var tokens sync.Map

// MintToken runs `corral token create` against s's config (and so its
// store) and returns the secret. args are create's flags, e.g. -admin.
func MintToken(t testing.TB, s Serve, args ...string) string {
	t.Helper()
	cmd := exec.Command(s.Bin, append([]string{"token", "create", "-config", s.Config}, args...)...)
	cmd.Env = append(os.Environ(), s.Env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("corral token create %v: %v\n%s", args, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// AdminToken returns the admin token Start minted for the corral listening
// on listen ("" if none was).
func AdminToken(listen string) string {
	v, _ := tokens.Load(listen)
	s, _ := v.(string)
	return s
}

// Authorize adds the admin token of the corral that req's URL names.
func Authorize(req *http.Request) *http.Request {
	if tok := AdminToken(req.URL.Host); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// APIGet is http.Get with the admin token of the corral that rawURL names.
func APIGet(rawURL string) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("GET", u.String(), nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(Authorize(req))
}

// GetJSON gets url with the admin token of the corral it names, wants 200
// and decodes the answer into v.
func GetJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := APIGet(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
