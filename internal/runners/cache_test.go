package runners

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// versionsOnDisk lists the version directories of the actions runner.
func versionsOnDisk(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "github"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestCache_Refresh(t *testing.T) {
	t.Run("latest chosen", func(t *testing.T) {
		s := newReleaseServer(t)
		for _, v := range []string{"2.329.5", "2.331.0", "2.330.0"} {
			s.addGitHub(t, v, t0.Add(-24*time.Hour), runnerArchive(t, v), "")
		}
		c, _, dir := newCache(t, s.source(), nil)
		if err := c.Refresh(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		rel, path, err := c.Current(KindGitHub, "linux", "x64")
		if err != nil {
			t.Fatal(err)
		}
		if rel.Version != "2.331.0" || path != filepath.Join(dir, "github", "2.331.0", "linux-x64") {
			t.Fatalf("Current = %s at %s, want 2.331.0", rel.Version, path)
		}
		b, err := os.ReadFile(filepath.Join(path, "run.sh"))
		if err != nil || string(b) != "#!/bin/sh\necho runner 2.331.0\n" {
			t.Fatalf("run.sh = %q, %v", b, err)
		}
		if fi, err := os.Stat(filepath.Join(path, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("run.sh mode %v, %v", fi.Mode(), err)
		}
		if target, err := os.Readlink(filepath.Join(path, "bin", "tool")); err != nil || target != "../lib/tool.js" {
			t.Fatalf("bin/tool -> %q, %v", target, err)
		}
		if got := versionsOnDisk(t, dir); !slices.Equal(got, []string{"2.331.0"}) {
			t.Fatalf("versions on disk %v, want only the newest downloaded", got)
		}
		if n := s.hitsOf("/dl/actions-runner-linux-x64-2.330.0.tar.gz"); n != 0 {
			t.Fatalf("an older release was downloaded %d times", n)
		}
		// A second refresh downloads nothing.
		if err := c.Refresh(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if n := s.hitsOf("/dl/actions-runner-linux-x64-2.331.0.tar.gz"); n != 1 {
			t.Fatalf("newest downloaded %d times, want 1", n)
		}
	})
	t.Run("sha mismatch refused and nothing kept", func(t *testing.T) {
		s := newReleaseServer(t)
		s.addGitHub(t, "2.331.0", t0, runnerArchive(t, "2.331.0"), sha([]byte("something else")))
		c, _, dir := newCache(t, s.source(), nil)
		err := c.Refresh(ctxT(t))
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("Refresh = %v, want ErrChecksum", err)
		}
		if _, _, err := c.Current(KindGitHub, "linux", "x64"); !errors.Is(err, corral.ErrNotFound) {
			t.Fatalf("Current = %v, want ErrNotFound", err)
		}
		if got := versionsOnDisk(t, dir); len(got) != 0 {
			t.Fatalf("kept %v after a checksum mismatch", got)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(ents) != 0 {
			t.Fatalf("download leftovers: %v", ents)
		}
	})
	t.Run("path escape refused and nothing kept", func(t *testing.T) {
		s := newReleaseServer(t)
		evil := tgz(t, tarEntry{name: "run.sh", body: "x", mode: 0o755}, tarEntry{name: "../../escaped", body: "pwned"})
		s.addGitHub(t, "2.331.0", t0, evil, "")
		c, _, dir := newCache(t, s.source(), nil)
		if err := c.Refresh(ctxT(t)); !errors.Is(err, ErrUnsafeArchive) {
			t.Fatalf("Refresh = %v, want ErrUnsafeArchive", err)
		}
		if got := versionsOnDisk(t, dir); len(got) != 0 {
			t.Fatalf("kept %v", got)
		}
		for _, p := range []string{filepath.Join(dir, "escaped"), filepath.Join(filepath.Dir(dir), "escaped"), filepath.Join(dir, ".tmp", "escaped")} {
			if _, err := os.Lstat(p); err == nil {
				t.Fatalf("%s written", p)
			}
		}
	})
	t.Run("pruned to keep", func(t *testing.T) {
		s := newReleaseServer(t)
		c, _, dir := newCache(t, s.source(), func(c *Config) { c.Keep = 2 })
		for i, v := range []string{"2.330.0", "2.331.0", "2.332.0", "2.333.0"} {
			s.addGitHub(t, v, t0.Add(time.Duration(i)*time.Hour), runnerArchive(t, v), "")
			if err := c.Refresh(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
		if got := versionsOnDisk(t, dir); !slices.Equal(got, []string{"2.332.0", "2.333.0"}) {
			t.Fatalf("versions on disk %v, want the newest 2", got)
		}
		// A new Cache on the same directory finds what is there.
		c2, _, _ := newCache(t, s.source(), func(c *Config) { c.Dir = dir })
		if rel, _, err := c2.Current(KindGitHub, "linux", "x64"); err != nil || rel.Version != "2.333.0" {
			t.Fatalf("after reload Current = %v, %v", rel.Version, err)
		}
	})
	t.Run("incomplete version removed at load", func(t *testing.T) {
		s := newReleaseServer(t)
		c, _, dir := newCache(t, s.source(), nil)
		half := filepath.Join(dir, "github", "2.340.0", "linux-x64")
		if err := os.MkdirAll(half, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Current(KindGitHub, "linux", "x64"); !errors.Is(err, corral.ErrNotFound) {
			t.Fatalf("Current = %v, want ErrNotFound", err)
		}
		if _, err := os.Lstat(half); err == nil {
			t.Fatal("incomplete version kept")
		}
	})
}

func TestCache_Current(t *testing.T) {
	t.Run("deprecated version never handed out", func(t *testing.T) {
		s := newReleaseServer(t)
		s.addGitHub(t, "2.330.0", t0, runnerArchive(t, "2.330.0"), "")
		c, clk, _ := newCache(t, s.source(), nil)
		if err := c.Refresh(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		// A newer release appears but cannot be downloaded.
		s.addGitHub(t, "2.331.0", t0.Add(5*24*time.Hour), runnerArchive(t, "2.331.0"), sha([]byte("corrupt")))
		clk.Set(t0.Add(20 * 24 * time.Hour))
		if err := c.Refresh(ctxT(t)); !errors.Is(err, ErrChecksum) {
			t.Fatalf("Refresh = %v, want ErrChecksum", err)
		}
		if rel, _, err := c.Current(KindGitHub, "linux", "x64"); err != nil || rel.Version != "2.330.0" {
			t.Fatalf("within 30 days: Current = %v, %v; want 2.330.0", rel.Version, err)
		}
		clk.Set(t0.Add(31 * 24 * time.Hour))
		_, _, err := c.Current(KindGitHub, "linux", "x64")
		if !errors.Is(err, ErrDeprecated) || !errors.Is(err, corral.ErrNotFound) {
			t.Fatalf("after 30 days with a newer release: Current = %v, want ErrDeprecated and ErrNotFound", err)
		}
		if _, err := c.Grant("i-1", KindGitHub, linuxX64); !errors.Is(err, ErrDeprecated) {
			t.Fatalf("Grant of a deprecated version = %v", err)
		}
	})
	t.Run("below the minimum never downloaded", func(t *testing.T) {
		s := newReleaseServer(t)
		s.addGitHub(t, "2.328.0", t0, runnerArchive(t, "2.328.0"), "")
		c, _, dir := newCache(t, s.source(), nil)
		if err := c.Refresh(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Current(KindGitHub, "linux", "x64"); !errors.Is(err, corral.ErrNotFound) {
			t.Fatalf("Current = %v, want ErrNotFound", err)
		}
		if got := versionsOnDisk(t, dir); len(got) != 0 {
			t.Fatalf("downloaded %v", got)
		}
	})
	t.Run("older acceptable chosen when newest is deprecated by policy", func(t *testing.T) {
		s := newReleaseServer(t)
		s.addGitHub(t, "2.330.0", t0, runnerArchive(t, "2.330.0"), "")
		s.addGitHub(t, "2.331.0", t0, runnerArchive(t, "2.331.0"), "")
		refuse := func(_ time.Time, r Release, _ []Release) error {
			if r.Version == "2.331.0" {
				return ErrDeprecated
			}
			return nil
		}
		c, _, _ := newCache(t, s.source(), func(c *Config) { c.Policies = map[Kind]Policy{KindGitHub: refuse} })
		if err := c.Refresh(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if rel, _, err := c.Current(KindGitHub, "linux", "x64"); err != nil || rel.Version != "2.330.0" {
			t.Fatalf("Current = %v, %v", rel.Version, err)
		}
	})
}

func TestCache_Run(t *testing.T) {
	t.Run("refresh picks up a new release", func(t *testing.T) {
		s := newReleaseServer(t)
		s.addGitHub(t, "2.330.0", t0, runnerArchive(t, "2.330.0"), "")
		tick := make(chan time.Time)
		c, _, _ := newCache(t, s.source(), func(c *Config) {
			c.After = func(d time.Duration) <-chan time.Time {
				if d != DefaultInterval {
					t.Errorf("Run waits %s, want %s", d, DefaultInterval)
				}
				return tick
			}
		})
		ctx, cancel := context.WithCancel(ctxT(t))
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		waitVersion(t, c, "2.330.0")
		s.addGitHub(t, "2.331.0", t0, runnerArchive(t, "2.331.0"), "")
		tick <- t0
		waitVersion(t, c, "2.331.0")
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("retry sooner after a failure", func(t *testing.T) {
		s := newReleaseServer(t)
		s.addGitHub(t, "2.331.0", t0, runnerArchive(t, "2.331.0"), sha([]byte("corrupt")))
		waits := make(chan time.Duration, 1)
		c, _, _ := newCache(t, s.source(), func(c *Config) {
			c.After = func(d time.Duration) <-chan time.Time { waits <- d; return make(chan time.Time) }
		})
		ctx, cancel := context.WithCancel(ctxT(t))
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		if d := <-waits; d != DefaultRetryInterval {
			t.Fatalf("after a failed refresh Run waits %s, want %s", d, DefaultRetryInterval)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func waitVersion(t *testing.T, c *Cache, v string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rel, _, err := c.Current(KindGitHub, "linux", "x64")
		if err == nil && rel.Version == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Current = %q, %v; want %s", rel.Version, err, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
