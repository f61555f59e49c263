package runners

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestCache_Grant(t *testing.T) {
	s := newReleaseServer(t)
	archive := runnerArchive(t, "2.331.0")
	s.addGitHub(t, "2.331.0", t0, archive, "")
	c, clk, _ := newCache(t, s.source(), nil)
	if err := c.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/runners", c.Handler()))
	t.Cleanup(srv.Close)
	c.cfg.BaseURL = srv.URL + "/runners/"

	get := func(t *testing.T, url, token string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	grant := func(t *testing.T) Download {
		t.Helper()
		d, err := c.Grant("inst-1", KindGitHub, linuxX64)
		if err != nil {
			t.Fatal(err)
		}
		if d.Release.Version != "2.331.0" || bytes.Contains([]byte(d.URL), []byte(d.Token.Reveal())) {
			t.Fatalf("grant %+v: wrong version or token in the URL", d)
		}
		return d
	}

	t.Run("download once", func(t *testing.T) {
		d := grant(t)
		code, body := get(t, d.URL, d.Token.Reveal())
		if code != http.StatusOK || !bytes.Equal(body, archive) {
			t.Fatalf("download: %d, %d bytes; want 200 and the archive", code, len(body))
		}
		if code, _ := get(t, d.URL, d.Token.Reveal()); code != http.StatusUnauthorized {
			t.Fatalf("reused token: %d, want 401", code)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		d := grant(t)
		other := grant(t)
		for _, tok := range []string{"", "nope", other.Token.Reveal()} {
			if code, _ := get(t, d.URL, tok); code != http.StatusUnauthorized {
				t.Fatalf("token %q: %d, want 401", tok, code)
			}
		}
		// The grant survives wrong guesses.
		if code, _ := get(t, d.URL, d.Token.Reveal()); code != http.StatusOK {
			t.Fatalf("right token after wrong ones: %d", code)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		d := grant(t)
		clk.Advance(DefaultGrantTTL + time.Second)
		if code, _ := get(t, d.URL, d.Token.Reveal()); code != http.StatusUnauthorized {
			t.Fatalf("expired: %d, want 401", code)
		}
	})
	t.Run("unknown grant", func(t *testing.T) {
		if code, _ := get(t, srv.URL+"/runners/0000/actions-runner.tar.gz", "x"); code != http.StatusUnauthorized {
			t.Fatalf("unknown grant: %d, want 401", code)
		}
	})
}
