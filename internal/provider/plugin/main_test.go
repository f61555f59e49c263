package plugin

import (
	"bytes"
	"context"
	"encoding/json"
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

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case providertest.RunnerArg:
			syscall.Exit(providertest.RunTestRunner())
		case providertest.HostileArg:
			syscall.Exit(providertest.RunHostile())
		case providertest.GrandchildArg:
			syscall.Exit(providertest.RunGrandchild())
		case faultArg:
			syscall.Exit(runFault(os.Args[2:]))
		case corralArg:
			syscall.Exit(runCorral(os.Args[2]))
		case faultChildArg:
			time.Sleep(30 * time.Second)
			syscall.Exit(0)
		}
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// examplePlugin builds cmd/corral-plugin-process with go build, once per
// test binary.
func examplePlugin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "corral-plugin-build-")
		if buildErr != nil {
			return
		}
		// Readable by the runners' unprivileged uids (the shim is this
		// binary, kept visible in the instance's namespace).
		_ = os.Chmod(buildDir, 0o755)
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "corral-plugin-process"), "github.com/corral-ci/corral/cmd/corral-plugin-process")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "corral-plugin-process")
}

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

// harness runs the providertest suite through corral's plugin provider
// against the example plugin.
type harness struct {
	bin, cfg, dir, exe string
	logs               *syncBuffer
}

func newHarness(t testing.TB, namespaces string) *harness {
	bin := examplePlugin(t)
	root := t.TempDir()
	h := &harness{bin: bin, dir: filepath.Join(root, "instances"), cfg: filepath.Join(root, "plugin.json"), exe: testExe(t), logs: &syncBuffer{}}
	b, _ := json.Marshal(map[string]any{"dir": h.dir, "namespaces": namespaces})
	if err := os.WriteFile(h.cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) provider(t testing.TB) *Provider {
	t.Helper()
	p, err := New("example", Settings{Path: h.bin, ConfigFile: h.cfg},
		slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func (h *harness) New(t *testing.T) corral.Provider { return h.provider(t) }
func (h *harness) Image(*testing.T) string          { return h.exe }
func (h *harness) Command() []string                { return []string{providertest.RunnerArg} }

func (h *harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	b, err := os.ReadFile(filepath.Join(h.dir, inst.ProviderID, "runner.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Errorf("read runner log: %v", err)
	}
	return string(b)
}

// Leftovers: the instance directory and any live process that carries the
// instance's id in its environment.
func (h *harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	var left []string
	for _, id := range []string{inst.ProviderID, inst.InstanceID} {
		if _, err := os.Lstat(filepath.Join(h.dir, id)); err == nil {
			left = append(left, "directory "+id)
		}
	}
	for _, pid := range envProcesses(t, "CORRAL_INSTANCE_ID="+inst.InstanceID) {
		left = append(left, fmt.Sprintf("process %d", pid))
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

// envProcesses lists live (not zombie) processes with the variable in
// their environment.
func envProcesses(t testing.TB, kv string) []int {
	t.Helper()
	names, err := filepath.Glob("/proc/[0-9]*/environ")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		found := false
		for v := range bytes.SplitSeq(b, []byte{0}) {
			if string(v) == kv {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		dir := filepath.Dir(n)
		st, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && (st[i+2] == 'Z' || st[i+2] == 'X') {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(dir), "%d", &pid)
		out = append(out, pid)
	}
	return out
}

// TestProvider_Conformance builds the example plugin and runs the
// providertest suite through corral's plugin provider, with namespaces
// (as root: isolated runners) and without.
func TestProvider_Conformance(t *testing.T) {
	for _, ns := range []string{"auto", "off"} {
		t.Run("namespaces_"+ns, func(t *testing.T) {
			h := newHarness(t, ns)
			providertest.Run(t, h)
			for _, secret := range []string{"env-secret-value", "file-secret-value"} {
				if strings.Contains(h.logs.String(), secret) {
					t.Errorf("provider log holds a bootstrap secret:\n%s", h.logs.String())
				}
			}
			p := h.provider(t)
			if err := p.Health(context.Background()); err != nil && !strings.Contains(err.Error(), "isolation degraded") {
				t.Errorf("Health: %v", err)
			}
			if d := p.Describe(); !strings.Contains(d, "corral-plugin-process") {
				t.Errorf("Describe after the handshake = %q, want the plugin's name", d)
			}
		})
	}
}
