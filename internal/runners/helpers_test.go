package runners

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// tarEntry is one entry of a generated archive.
type tarEntry struct {
	name, body, link string
	typ              byte // 0: regular file
	mode             int64
}

// tgz builds a tar.gz of entries.
func tgz(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, ModTime: time.Unix(0, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// runnerArchive is a fake actions runner release: a run.sh saying its
// version, in a bin directory with a relative link, like the real one.
func runnerArchive(t testing.TB, version string) []byte {
	return tgz(t,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "./run.sh", body: "#!/bin/sh\necho runner " + version + "\n", mode: 0o755},
		tarEntry{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "./bin/Runner.Listener", body: "listener " + version, mode: 0o755},
		tarEntry{name: "./lib/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "./lib/tool.js", body: "tool"},
		tarEntry{name: "./bin/tool", typ: tar.TypeSymlink, link: "../lib/tool.js"},
	)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// releaseServer is a local stand-in for GitHub's releases API and its
// download host: releases are added while it runs.
type releaseServer struct {
	*httptest.Server
	mu       sync.Mutex
	releases []apiRelease
	files    map[string][]byte
	hits     map[string]int
}

func newReleaseServer(t testing.TB) *releaseServer {
	t.Helper()
	s := &releaseServer{files: map[string][]byte{}, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hits[r.URL.Path]++
		if r.URL.Path == "/api/repos/actions/runner/releases" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s.releases)
			return
		}
		if b, ok := s.files[strings.TrimPrefix(r.URL.Path, "/dl/")]; ok {
			_, _ = w.Write(b)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// addGitHub publishes actions runner version v for linux-x64 with its
// archive; digest is the SHA-256 the listing claims ("" = the right one).
func (s *releaseServer) addGitHub(t testing.TB, v string, published time.Time, archive []byte, digest string) {
	t.Helper()
	if digest == "" {
		digest = sha(archive)
	}
	name := "actions-runner-linux-x64-" + v + ".tar.gz"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = archive
	s.releases = append([]apiRelease{{TagName: "v" + v, PublishedAt: published,
		Body:   "- " + name + " <!-- BEGIN SHA linux-x64 -->" + digest + "<!-- END SHA linux-x64 -->",
		Assets: []apiAsset{{Name: name, URL: s.URL + "/dl/" + name}}}}, s.releases...)
}

func (s *releaseServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *releaseServer) source() *ReleasesAPI {
	return &ReleasesAPI{Kind: KindGitHub, API: s.URL + "/api", Repo: "actions/runner",
		Asset: "actions-runner-{os}-{arch}-{version}.tar.gz", Platforms: []Platform{linuxX64}}
}

var linuxX64 = Platform{"linux", "x64"}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// newCache returns a cache of the actions runner from s in a temporary
// directory, on a fake clock at t0.
func newCache(t testing.TB, src Source, mod func(*Config)) (*Cache, *corral.FakeClock, string) {
	t.Helper()
	dir := t.TempDir()
	clk := corral.NewFakeClock(t0)
	cfg := Config{Dir: dir, Sources: map[Kind]Source{KindGitHub: src}, Platforms: []Platform{linuxX64},
		Clock: clk, BaseURL: "http://127.0.0.1/runners/"}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk, dir
}
