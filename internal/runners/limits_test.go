package runners

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestCache_Download(t *testing.T) {
	t.Run("over the size limit refused", func(t *testing.T) {
		s := newReleaseServer(t)
		big := runnerArchive(t, "2.331.0")
		s.addGitHub(t, "2.331.0", t0, big, "")
		c, _, dir := newCache(t, s.source(), func(c *Config) { c.MaxDownload = int64(len(big) - 1) })
		if err := c.Refresh(ctxT(t)); !errors.Is(err, corral.ErrTooLarge) {
			t.Fatalf("Refresh = %v, want ErrTooLarge", err)
		}
		if got := versionsOnDisk(t, dir); len(got) != 0 {
			t.Fatalf("kept %v", got)
		}
	})
	t.Run("stalled download times out", func(t *testing.T) {
		release := make(chan struct{})
		stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(stall.Close)
		t.Cleanup(func() { close(release) })
		src := staticSource{{Kind: KindGitHub, Version: "2.331.0", OS: "linux", Arch: "x64", URL: stall.URL + "/a.tar.gz",
			Name: "a.tar.gz", SHA256: sha([]byte("x")), Published: t0}}
		c, _, _ := newCache(t, src, func(c *Config) { c.DownloadTimeout = 200 * time.Millisecond })
		start := time.Now()
		err := c.Refresh(ctxT(t))
		if !errors.Is(err, corral.ErrUnavailable) || time.Since(start) > 10*time.Second {
			t.Fatalf("Refresh = %v after %s, want ErrUnavailable within the timeout", err, time.Since(start))
		}
	})
	t.Run("errors name no credentials", func(t *testing.T) {
		src := staticSource{{Kind: KindGitHub, Version: "2.331.0", OS: "linux", Arch: "x64",
			URL: "http://user:pw@127.0.0.1:1/a.tar.gz?sig=secret-sig", Name: "a.tar.gz", SHA256: sha([]byte("x")), Published: t0}}
		c, _, _ := newCache(t, src, nil)
		err := c.Refresh(ctxT(t))
		if err == nil || strings.Contains(err.Error(), "secret-sig") || strings.Contains(err.Error(), "pw@") {
			t.Fatalf("Refresh = %v, want an error without the URL's credentials", err)
		}
	})
}

// staticSource lists fixed releases.
type staticSource []Release

func (s staticSource) Releases(_ context.Context) ([]Release, error) { return s, nil }

func TestConfig_Validate(t *testing.T) {
	err := Config{Sources: map[Kind]Source{"jenkins": nil}, Platforms: []Platform{{"Linux", "x64"}}, Keep: -1}.Validate()
	for _, want := range []string{"Dir is required", `unknown kind "jenkins"`, "nil source", `platform "Linux-x64"`, "negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to mention %q", err, want)
		}
	}
}

func TestCache_Grant_NeedsBaseURL(t *testing.T) {
	c, _, _ := newCache(t, staticSource{}, func(c *Config) { c.BaseURL = "" })
	if _, err := c.Grant("i", KindGitHub, linuxX64); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("Grant = %v, want ErrBadInput", err)
	}
}
