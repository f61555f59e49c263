package shoes

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

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case providertest.RunnerArg:
			syscall.Exit(providertest.RunTestRunner())
		case providertest.GrandchildArg:
			syscall.Exit(providertest.RunGrandchild())
		case notPluginArg:
			fmt.Println("hello, I am not a plugin")
			fmt.Fprintln(os.Stderr, "not-a-plugin: started without a handshake")
			time.Sleep(time.Minute)
			syscall.Exit(0)
		}
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// notPluginArg makes the test binary play a program that is no plugin.
const notPluginArg = "corral-test-not-a-plugin"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// testPlugin builds cmd/corral-shoes-process with go build, once per test
// binary: a shoes plugin served through go-plugin as myshoes' are.
func testPlugin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "corral-shoes-build-")
		if buildErr != nil {
			return
		}
		// Readable by the runners' unprivileged uids (the shim).
		_ = os.Chmod(buildDir, 0o755)
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "corral-shoes-process"), "github.com/corral-ci/corral/cmd/corral-shoes-process")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "corral-shoes-process")
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

// harness runs the providertest suite through corral's shoes provider
// against the test plugin: instances in dir, corral's records in state.
type harness struct {
	bin, dir, state, exe, ns string
	fault                    string
	logs                     *syncBuffer
}

func newHarness(t testing.TB, ns string) *harness {
	root := t.TempDir()
	return &harness{bin: testPlugin(t), dir: filepath.Join(root, "machines"), state: filepath.Join(root, "state"),
		exe: testExe(t), ns: ns, logs: &syncBuffer{}}
}

func (h *harness) settings() Settings {
	env := map[string]string{"CORRAL_SHOES_DIR": h.dir, "CORRAL_SHOES_NAMESPACES": h.ns, "CORRAL_SHOES_KEEP": h.exe}
	if h.fault != "" {
		env["CORRAL_SHOES_FAULT"] = h.fault
	}
	return Settings{Path: h.bin, Env: env, StateDir: h.state}
}

func (h *harness) provider(t testing.TB, s Settings) *Provider {
	t.Helper()
	p, err := New("shoes-test", s, slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (h *harness) New(t *testing.T) corral.Provider { return h.provider(t, h.settings()) }
func (h *harness) Image(*testing.T) string          { return h.exe }
func (h *harness) Command() []string                { return []string{providertest.RunnerArg} }

// Output is the machine's log: what the setup script and the runner
// printed (the cloud id is the machine's directory).
func (h *harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	b, err := os.ReadFile(filepath.Join(h.dir, inst.ProviderID, "runner.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Errorf("read runner log: %v", err)
	}
	return string(b)
}

// Leftovers: the machine's directory, corral's record and any live
// process with the instance's id in its environment.
func (h *harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	var left []string
	for _, id := range []string{inst.ProviderID, inst.InstanceID} {
		if _, err := os.Lstat(filepath.Join(h.dir, id)); err == nil {
			left = append(left, "machine directory "+id)
		}
	}
	if _, err := os.Lstat(filepath.Join(h.state, inst.InstanceID+".json")); err == nil {
		left = append(left, "record "+inst.InstanceID)
	}
	if pid := providertest.FindProc(func(pid int) bool {
		return providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+inst.InstanceID)
	}); pid != 0 {
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

// SkipReason: what the shoes protocol cannot do.
func (h *harness) SkipReason(test string) string {
	switch test {
	case "runner_exit_is_not_running":
		return "the shoes protocol has no List or Get: corral cannot see a runner exit; the forge's job events end the instance"
	case "deadline_kills_without_corral":
		return "the shoes protocol cannot report that the deadline stopped the runner (no List); TestSetupScript_Deadline shows the script enforces it"
	case "bad_image_fails_cleanly":
		return "the shoes protocol carries no image: the plugin's own config picks the machine image"
	}
	return ""
}

// TestProvider_Conformance builds the test plugin and runs the
// providertest suite through the shoes provider, with namespaces (as
// root: isolated runners) and without.
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
		})
	}
}
