package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// fakeSSHArg makes the test binary play ssh for ssh:// endpoints: it
// bridges its stdin and stdout to the unix socket named by the next
// argument, as `ssh host docker system dial-stdio` would to the remote
// engine.
const fakeSSHArg = "corral-fake-ssh"

// runnerPath is where the test runner lives in the test image.
const runnerPath = "/usr/local/bin/corral-test-runner"

var runner struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == fakeSSHArg {
		// syscall.Exit skips the race detector's exit delay.
		syscall.Exit(fakeSSH(os.Args[2], os.Args[3:]))
	}
	code := dockertest.Main(m)
	if runner.dir != "" {
		_ = os.RemoveAll(runner.dir)
	}
	os.Exit(code)
}

func fakeSSH(socket string, args []string) int {
	if n := len(args); n < 3 || strings.Join(args[n-3:], " ") != "docker system dial-stdio" {
		fmt.Fprintf(os.Stderr, "fake ssh: unexpected arguments %q\n", args)
		return 2
	}
	c, err := net.Dial("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake ssh:", err)
		return 255
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(os.Stdout, c)
		close(done)
	}()
	_, _ = io.Copy(c, os.Stdin)
	_ = c.(*net.UnixConn).CloseWrite()
	<-done
	return 0
}

// runnerBinary builds the test runner once per test process, statically
// (CGO_ENABLED=0), so that it runs in an image FROM scratch.
func runnerBinary(t testing.TB) string {
	t.Helper()
	runner.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if runner.dir, runner.err = os.MkdirTemp("", "corral-docker-runner-"); runner.err != nil {
			return
		}
		runner.bin = filepath.Join(runner.dir, "corral-test-runner")
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", runner.bin, "./internal/testrunner")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			runner.err = fmt.Errorf("build test runner: %v\n%s", err, out)
		}
	})
	if runner.err != nil {
		t.Fatal(runner.err)
	}
	return runner.bin
}

// runnerImage returns the test image on the engine at host.
func runnerImage(t testing.TB, host string) string {
	t.Helper()
	return dockertest.ImageOn(t, host, "corral-test-runner", map[string]string{runnerPath: runnerBinary(t)})
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

// harness runs the providertest suite against the Docker provider on one
// engine.
type harness struct {
	host string
	cfg  Config // without endpoints and logger
	logs *syncBuffer
	cli  *client.Client
}

func newHarness(t testing.TB, host string) *harness {
	t.Helper()
	c, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &harness{host: host, logs: &syncBuffer{}, cli: c}
}

func (h *harness) provider(t testing.TB) *Provider {
	t.Helper()
	cfg := h.cfg
	cfg.Endpoints = []Endpoint{{Name: "local", Host: h.host}}
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func (h *harness) New(t *testing.T) corral.Provider { return h.provider(t) }
func (h *harness) Image(t *testing.T) string        { return runnerImage(t, h.host) }
func (h *harness) Command() []string                { return []string{runnerPath, providertest.RunnerArg} }

func (h *harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	return containerOutput(t, h.cli, inst)
}

func containerOutput(t testing.TB, c *client.Client, inst corral.ProviderInstance) string {
	t.Helper()
	_, id, _ := splitID(inst.ProviderID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Errorf("container logs: %v", err)
		return ""
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Errorf("container logs: %v", err)
	}
	return out.String()
}

// Leftovers: any container labelled with the instance, the container's
// directory in the engine's data root, and volumes labelled with it.
func (h *harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var left []string
	cs, err := h.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelInstance+"="+inst.InstanceID)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Items {
		left = append(left, "container "+c.ID)
	}
	if _, id, ok := splitID(inst.ProviderID); ok {
		if _, err := h.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err == nil {
			left = append(left, "container "+id)
		}
		if root := h.dataRoot(t); root != "" {
			if _, err := os.Lstat(filepath.Join(root, "containers", id)); err == nil {
				left = append(left, "directory "+filepath.Join(root, "containers", id))
			}
		}
	}
	vs, err := h.cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("dangling", "true")})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Items {
		left = append(left, "volume "+v.Name)
	}
	return left
}

// dataRoot is the engine's data root when it is on this host's disk.
func (h *harness) dataRoot(t testing.TB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := h.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(info.Info.DockerRootDir); err != nil {
		return ""
	}
	return info.Info.DockerRootDir
}

func (h *harness) Processes(t *testing.T, marker string) int {
	pids, err := providertest.HostProcesses(marker)
	if err != nil {
		t.Fatal(err)
	}
	return len(pids)
}

func TestProvider_Suite(t *testing.T) {
	for _, ro := range []bool{false, true} {
		t.Run(fmt.Sprintf("read_only_root_%v", ro), func(t *testing.T) {
			h := newHarness(t, dockertest.Socket(t))
			h.cfg.ReadOnlyRoot = ro
			providertest.Run(t, h)
			for _, secret := range []string{"env-secret-value", "file-secret-value"} {
				if strings.Contains(h.logs.String(), secret) {
					t.Errorf("provider log holds a bootstrap secret:\n%s", h.logs.String())
				}
			}
		})
	}
}
