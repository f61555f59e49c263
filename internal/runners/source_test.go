package runners

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestReleasesAPI_Releases(t *testing.T) {
	bin := []byte("forgejo runner binary")
	var srvURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/repos/forgejo/runner/releases":
			_ = json.NewEncoder(w).Encode([]apiRelease{
				{TagName: "v12.9.0-rc1", Prerelease: true, Assets: []apiAsset{{Name: "forgejo-runner-12.9.0-rc1-linux-amd64", URL: srvURL + "/x"}}},
				{TagName: "v12.8.0", PublishedAt: t0, Assets: []apiAsset{
					{Name: "forgejo-runner-12.8.0-linux-amd64", URL: srvURL + "/dl/bin"},
					{Name: "forgejo-runner-12.8.0-linux-amd64.sha256", URL: srvURL + "/dl/bin.sha256"},
					{Name: "forgejo-runner-12.8.0-linux-arm64", URL: srvURL + "/dl/arm"}, // no checksum: skipped
				}},
				{TagName: "v12.7.0", Assets: []apiAsset{{Name: "forgejo-runner-12.7.0-linux-amd64", URL: srvURL + "/dl/old",
					Digest: "sha256:" + sha([]byte("old"))}}},
			})
		case "/dl/bin":
			_, _ = w.Write(bin)
		case "/dl/bin.sha256":
			_, _ = w.Write([]byte(sha(bin) + "  forgejo-runner-12.8.0-linux-amd64\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	srvURL = srv.URL
	src, err := DefaultReleasesAPI(KindForgejo)
	if err != nil {
		t.Fatal(err)
	}
	src.API = srv.URL + "/api/v1"
	rels, err := src.Releases(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 2 || rels[0].Version != "12.8.0" || rels[0].SHA256URL == "" || rels[1].SHA256 != sha([]byte("old")) {
		t.Fatalf("releases %+v", rels)
	}
	dir := t.TempDir()
	c, err := New(Config{Dir: dir, Sources: map[Kind]Source{KindForgejo: src}, Platforms: []Platform{linuxX64}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	rel, path, err := c.Current(KindForgejo, "linux", "x64")
	if err != nil || rel.Version != "12.8.0" {
		t.Fatalf("Current = %v, %v", rel.Version, err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "forgejo-runner")); err != nil || string(b) != string(bin) {
		t.Fatalf("binary %q, %v", b, err)
	}
}

func TestReleasesAPI_Errors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-GitHub-Request-Id", "req-1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	src := &ReleasesAPI{Kind: KindGitHub, API: srv.URL, Repo: "actions/runner", Asset: "a", Token: "secret-token"}
	_, err := src.Releases(ctxT(t))
	var ce *corral.CallError
	if !errors.Is(err, corral.ErrRateLimited) || !errors.As(err, &ce) || ce.RequestID != "req-1" {
		t.Fatalf("err = %v, want a rate-limited CallError with the request id", err)
	}
}

func TestMirror_Releases(t *testing.T) {
	arch := runnerArchive(t, "2.331.0")
	gitea := []byte("gitea runner binary")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mirror/index.json":
			_ = json.NewEncoder(w).Encode(MirrorIndex{Releases: []Release{
				{Kind: KindGitHub, Version: "v2.331.0", OS: "linux", Arch: "x64", URL: "github/actions-runner-linux-x64-2.331.0.tar.gz",
					SHA256: sha(arch), Published: t0},
				{Kind: KindGitea, Version: "1.0.8", OS: "linux", Arch: "x64", URL: "gitea/gitea-runner-1.0.8-linux-amd64", SHA256: sha(gitea)},
				{Kind: KindGitea, Version: "1.0.9", OS: "linux", Arch: "x64", URL: "gitea/unverified"}, // no sha256: skipped
			}})
		case "/mirror/github/actions-runner-linux-x64-2.331.0.tar.gz":
			_, _ = w.Write(arch)
		case "/mirror/gitea/gitea-runner-1.0.8-linux-amd64":
			_, _ = w.Write(gitea)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	idx := srv.URL + "/mirror/index.json"
	c, err := New(Config{Dir: t.TempDir(), Platforms: []Platform{linuxX64}, Clock: corral.NewFakeClock(t0.Add(time.Hour)),
		Sources: map[Kind]Source{KindGitHub: &Mirror{IndexURL: idx, Kind: KindGitHub}, KindGitea: &Mirror{IndexURL: idx, Kind: KindGitea}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	rel, path, err := c.Current(KindGitHub, "linux", "x64")
	if err != nil || rel.Version != "2.331.0" || rel.Name != "actions-runner-linux-x64-2.331.0.tar.gz" {
		t.Fatalf("github: %+v, %v", rel, err)
	}
	if _, err := os.Stat(filepath.Join(path, "run.sh")); err != nil {
		t.Fatal(err)
	}
	rel, path, err = c.Current(KindGitea, "linux", "x64")
	if err != nil || rel.Version != "1.0.8" {
		t.Fatalf("gitea: %+v, %v", rel, err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "gitea-runner")); err != nil || string(b) != string(gitea) {
		t.Fatalf("gitea binary %q, %v", b, err)
	}
}
