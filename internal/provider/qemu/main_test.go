package qemu

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// The tests boot real VMs: the guest from scripts/vm/build-guest.sh (cached
// by versions under ~/.cache/corral), providertest's runner built
// statically and handed in as the runner. Without QEMU they skip, except
// under CI=true, where they fail.

var fixture struct {
	once   sync.Once
	guest  string
	runner string
	tmp    string
	err    error
}

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == RelayArg {
		syscall.Exit(RunRelay(os.Args[2]))
	}
	code := m.Run()
	if fixture.tmp != "" {
		_ = os.RemoveAll(fixture.tmp)
	}
	os.Exit(code)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..", "..")
}

// buildGuest runs scripts/vm/build-guest.sh for arch and returns the guest
// directory (the script's last line).
func buildGuest(t testing.TB, arch string) string {
	t.Helper()
	cmd := exec.Command("sh", filepath.Join(repoRoot(t), "scripts", "vm", "build-guest.sh"), arch)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("build-guest.sh %s: %v\n%s", arch, err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1]
}

// staticBuild builds pkg with CGO_ENABLED=0 for goarch into dir/name.
func staticBuild(dir, name, pkg, goarch string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// setup returns the x64 guest and the static test runner.
func setup(t testing.TB) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)")
		}
		t.Skip("qemu-system-x86_64 is missing")
	}
	fixture.once.Do(func() {
		fixture.guest = buildGuest(t, "amd64")
		if fixture.tmp, fixture.err = os.MkdirTemp("", "corral-qemu-test-"); fixture.err != nil {
			return
		}
		fixture.runner, fixture.err = staticBuild(fixture.tmp, "corral-test-runner",
			"github.com/corral-ci/corral/internal/provider/docker/internal/testrunner", "amd64")
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	return fixture.guest, fixture.runner
}

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

// harness runs providertest against the qemu provider on one directory.
type harness struct {
	cfg   Config
	guest string
	logs  *syncBuffer

	mu   sync.Mutex
	qemu map[string]state // grandchild marker → the VM that printed it
}

func newHarness(t testing.TB) *harness {
	guest, runner := setup(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &harness{
		cfg:   Config{Dir: t.TempDir(), Runner: runner, Relay: []string{exe, RelayArg}},
		guest: guest, logs: &syncBuffer{}, qemu: map[string]state{},
	}
}

func (h *harness) provider(t testing.TB) *Provider {
	t.Helper()
	cfg := h.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func (h *harness) New(t *testing.T) corral.Provider { return h.provider(t) }
func (h *harness) Image(*testing.T) string          { return h.guest }
func (h *harness) Command() []string                { return []string{providertest.RunnerArg} }

func (h *harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	b, _ := os.ReadFile(filepath.Join(h.cfg.Dir, inst.ProviderID, consoleFile))
	out := string(b)
	// Remember the VM of a grandchild (Processes counts it while that VM
	// lives: its processes live nowhere else).
	for line := range strings.SplitSeq(out, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "grandchild="); ok {
			if st, err := readState(filepath.Join(h.cfg.Dir, inst.ProviderID)); err == nil {
				h.mu.Lock()
				h.qemu[m] = st
				h.mu.Unlock()
			}
		}
	}
	return out
}

// Leftovers: the instance directory (overlay, scratch disk, sockets,
// console), and a QEMU process named after the instance.
func (h *harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	var left []string
	dir := filepath.Join(h.cfg.Dir, inst.ProviderID)
	if _, err := os.Lstat(dir); err == nil {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			left = append(left, filepath.Join(dir, e.Name()))
		}
		left = append(left, dir)
	}
	pids, err := providertest.HostProcesses("corral-" + inst.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		left = append(left, fmt.Sprintf("QEMU process %d", pid))
	}
	return left
}

// Processes counts a guest's processes as the host can: 1 while the VM of
// the instance whose runner printed the marker still runs (looked up
// through Output, which the suite calls first), plus host processes with
// the marker on their command line (there must be none).
func (h *harness) Processes(t *testing.T, marker string) int {
	for _, e := range mustReadDir(h.cfg.Dir) {
		h.Output(t, corral.ProviderInstance{ProviderID: e})
	}
	n := 0
	h.mu.Lock()
	if st, ok := h.qemu[marker]; ok && alive(st) {
		n++
	}
	h.mu.Unlock()
	pids, err := providertest.HostProcesses(marker)
	if err != nil {
		t.Fatal(err)
	}
	return n + len(pids)
}

func mustReadDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() && idPattern.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestProvider_Suite(t *testing.T) {
	h := newHarness(t)
	providertest.Run(t, h)
	for _, secret := range []string{"env-secret-value", "file-secret-value"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("provider log holds a bootstrap secret:\n%s", h.logs.String())
		}
	}
	t.Logf("provider log:\n%s", h.logs.String())
}

// Wait: VMs boot under emulation here, on a machine shared with other
// tests.
func (h *harness) Wait() time.Duration { return vmWait }
