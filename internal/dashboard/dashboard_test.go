package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/dashboard"
)

func TestHandler_Headers(t *testing.T) {
	ts := httptest.NewServer(http.StripPrefix("/ui", dashboard.Handler()))
	t.Cleanup(ts.Close)
	for path, ctype := range map[string]string{"/ui/": "text/html", "/ui/app.js": "text/javascript", "/ui/app.css": "text/css"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("GET %s = %d %q (%d bytes), want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ctype)
		}
		for k, want := range map[string]string{"Content-Security-Policy": dashboard.CSP, "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
	if !strings.Contains(dashboard.CSP, "default-src 'self'") || !strings.Contains(dashboard.CSP, "frame-ancestors 'none'") ||
		strings.Contains(dashboard.CSP, "unsafe") {
		t.Errorf("CSP %q is not strict", dashboard.CSP)
	}
}

// Every asset comes from corral itself: no other origin is named, and the
// page has no inline script or style the CSP would block.
func TestHandler_SelfContained(t *testing.T) {
	ts := httptest.NewServer(http.StripPrefix("/ui", dashboard.Handler()))
	t.Cleanup(ts.Close)
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/app.css"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range url.FindAllString(string(body), -1) {
			if m != "http://www.w3.org" { // the SVG namespace, a name, never fetched
				t.Errorf("%s names another origin: %s", path, m)
			}
		}
		if path == "/ui/" {
			html := string(body)
			if regexp.MustCompile(`<script>|<script [^>]*>[^<]+</script>|<style|\sstyle=|\son[a-z]+=`).MatchString(html) {
				t.Errorf("index.html has inline script, style or handlers the CSP forbids")
			}
		}
	}
}
