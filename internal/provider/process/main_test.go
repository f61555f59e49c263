package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// shimArg makes the test binary play the shim; providertest.RunnerArg and
// GrandchildArg make it play the test runner and its grandchild. So the
// tests need no other binary.
const shimArg = "corral-test-shim"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case shimArg:
			err := RunShim(context.Background(), os.Args[2:])
			var ee *ExitError
			switch {
			case errors.As(err, &ee):
				os.Exit(ee.ExitCode())
			case err != nil:
				fmt.Fprintln(os.Stderr, "corral-test-shim:", err)
				os.Exit(2)
			}
			os.Exit(0)
		case providertest.RunnerArg:
			// syscall.Exit skips the race detector's one-second sleep
			// at exit, which would slow every -race test down; the
			// runner is a fixture, not code under test.
			syscall.Exit(providertest.RunTestRunner())
		case providertest.HostileArg:
			syscall.Exit(providertest.RunHostile())
		case providertest.GrandchildArg:
			syscall.Exit(providertest.RunGrandchild())
		case burnArg:
			syscall.Exit(runBurn())
		}
	}
	os.Exit(m.Run())
}

// testExe is the test binary, which is also the shim and the runner image.
func testExe(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// syncBuffer collects log output of providers that outlive their test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs the providertest suite against the process provider.
type harness struct {
	dir    string
	ns     string
	exe    string
	logs   *syncBuffer
	clock  corral.Clock
	hide   []string // Config.Hide
	diskMB int      // Config.DiskMB
}

func newHarness(t testing.TB, ns string) *harness {
	return &harness{dir: t.TempDir(), ns: ns, exe: testExe(t), logs: &syncBuffer{}}
}

func (h *harness) provider(t testing.TB) *Provider {
	t.Helper()
	p, err := New(Config{
		Dir:        h.dir,
		Shim:       []string{h.exe, shimArg},
		Namespaces: h.ns,
		Hide:       h.hide,
		DiskMB:     h.diskMB,
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:      h.clock,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func (h *harness) New(t *testing.T) corral.Provider { return h.provider(t) }
func (h *harness) Image(*testing.T) string          { return h.exe }
func (h *harness) Command() []string                { return []string{providertest.RunnerArg} }

func (h *harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	b, err := os.ReadFile(filepath.Join(h.dir, inst.ProviderID, logFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read runner log: %v", err)
	}
	return string(b)
}

// Leftovers: the instance directory and any process that carries the
// instance's environment marker.
func (h *harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	var left []string
	for _, id := range []string{inst.ProviderID, inst.InstanceID} {
		if _, err := os.Lstat(filepath.Join(h.dir, id)); err == nil {
			left = append(left, "directory "+id)
		}
	}
	pids, err := allPids()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if s, err := readStat(pid); err == nil && !s.dead() && hasEnv(pid, "CORRAL_INSTANCE_ID="+inst.InstanceID) {
			left = append(left, fmt.Sprintf("process %d", pid))
		}
	}
	return left
}

func (h *harness) Processes(t *testing.T, marker string) int {
	pids, err := providertest.HostProcesses(marker)
	if err != nil {
		t.Fatal(err)
	}
	return len(pids)
}

func TestProvider_Suite(t *testing.T) {
	for _, ns := range []string{NamespacesAuto, NamespacesOff} {
		t.Run("namespaces_"+ns, func(t *testing.T) {
			h := newHarness(t, ns)
			providertest.Run(t, h)
			for _, secret := range []string{"env-secret-value", "file-secret-value"} {
				if strings.Contains(h.logs.String(), secret) {
					t.Errorf("provider log holds a bootstrap secret:\n%s", h.logs.String())
				}
			}
		})
	}
}
