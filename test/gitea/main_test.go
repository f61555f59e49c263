// Package gitea runs corral end to end against a real Gitea and the real
// gitea-runner, built from the Go module proxy by scripts/gitea/build.sh and
// cached by version. Without the binaries the tests skip, except under
// CI=true, where they fail.
//
//	scripts/gitea/build.sh                     # once: ~7-16 min cold on 2 cores, then cached
//	go test ./test/gitea/                      # builds corral, finds (or builds) Gitea
//	go test -run x -bench . -benchtime=10x ./test/gitea/   # latency benchmark
//
// TestMain runs build.sh itself, but a cold build does not fit in go test's
// default 10-minute timeout: run build.sh first (CI does) or pass -timeout.
//
// TestGitea_Containers also needs dockerd (run as root) and busybox-static:
// it runs the runners in containers on a private daemon (dockertest) and
// skips without them, except under CI=true.
//
// CORRAL_GITEA_OVERLAY names a `go build -overlay` file used to build corral
// (to try an unmerged wiring). CORRAL_GITEA_KEEP_LOGS names a directory that
// receives every corral log.
package gitea

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

var (
	corralBin  string
	giteaBin   string
	runnerBin  string
	skipReason string // set when the Gitea binaries are missing
	shared     *giteaServer
	startTimes []string // the harness's own timings, for the report
)

func TestMain(m *testing.M) {
	kubetest.InitIfIsolated() // TestGitea_Kubernetes's isolated run starts here
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "corral-gitea-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	if corralBin = os.Getenv(envPrebuiltCorral); corralBin == "" {
		if corralBin, err = e2etest.Build(dir, e2etest.BuildOptions{Overlay: os.Getenv("CORRAL_GITEA_OVERLAY")}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if v := os.Getenv("CORRAL_GITEA_KEEP_LOGS"); v != "" && os.Getenv(e2etest.EnvKeepLogs) == "" {
		_ = os.Setenv(e2etest.EnvKeepLogs, v) // the harness keeps the logs
	}
	startTimes = append(startTimes, fmt.Sprintf("corral build %v", time.Since(t0).Round(time.Millisecond)))
	t1 := time.Now()
	if err := findGitea(); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "gitea binaries:", err)
			return 1
		}
		skipReason = err.Error()
	}
	startTimes = append(startTimes, fmt.Sprintf("gitea binaries (build.sh) %v", time.Since(t1).Round(time.Millisecond)))
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	return code
}

// findGitea runs the build recipe, which returns at once when the cache
// holds both binaries. It is bounded so that a hung build fails the run.
func findGitea() error {
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf("git is not on PATH (Gitea needs it): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "../../scripts/gitea/build.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/gitea/build.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	cache := lines[len(lines)-1]
	giteaBin, runnerBin = filepath.Join(cache, "gitea"), filepath.Join(cache, "gitea-runner")
	for _, b := range []string{giteaBin, runnerBin} {
		if fi, err := os.Stat(b); err != nil || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is missing after build.sh", b)
		}
	}
	return nil
}

// needGitea skips (or, under CI=true, fails) a test without the binaries,
// and returns the Gitea shared by the package's tests, started on first use.
func needGitea(t testing.TB) *giteaServer {
	t.Helper()
	if skipReason != "" {
		t.Skip("no Gitea binaries: " + skipReason)
	}
	if shared == nil {
		t0 := time.Now()
		g, err := startGitea()
		if err != nil {
			t.Fatalf("start Gitea: %v", err)
		}
		shared = g
		startTimes = append(startTimes, fmt.Sprintf("gitea start+admin+token %v", time.Since(t0).Round(time.Millisecond)))
		t.Logf("harness: %s", strings.Join(startTimes, ", "))
	}
	return shared
}
