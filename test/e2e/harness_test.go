// Package e2e runs corral as real processes against the simulated forge,
// with real runner processes, and checks DESIGN.md's invariants from the
// outside: no lost job, no leak, limits at every instant.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

var corralBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "corral-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	corralBin = filepath.Join(dir, "corral")
	build := exec.Command("go", "build", "-o", corralBin, "../../cmd/corral")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build corral:", err)
		return 1
	}
	return pgtest.Main(m)
}

// forge is the simulated forge, served on 127.0.0.1 by the test process so
// that it outlives every corral process the test kills.
type forge struct {
	*sim.Server
	URL    string
	secret corral.Secret
}

func newForge(t testing.TB, opt sim.Options) *forge {
	t.Helper()
	s := sim.NewServer(opt)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &forge{Server: s, URL: ts.URL, secret: corral.Secret("e2e-secret-" + t.Name())}
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// setup holds what a corral config needs.
type setup struct {
	Listen, DataDir, Store, ForgeURL, ControllerID string
	PoolMax, MinIdle                               int
	Reconcile                                      string
}

var configTmpl = template.Must(template.New("c").Parse(`listen: {{.Listen}}
data_dir: {{.DataDir}}
store: {{.Store}}
controller_id: {{.ControllerID}}
reconcile_interval: {{.Reconcile}}
log: {level: info, format: text}
targets:
  - id: e2e
    kind: sim
    scope: org
    path: e2e
    url: {{.ForgeURL}}
    webhook_secret: env:E2E_WEBHOOK_SECRET
    runner_prefix: corral-e2e
pools:
  - id: linux
    labels: [corral]
    provider: process
    flavor: 2cpu4gb10gb
    max_flavor: 8cpu16gb50gb
    max_instances: {{.PoolMax}}
    min_idle: {{.MinIdle}}
    boot_timeout: 30s
    max_job_runtime: 2m
    idle_timeout: 5s
    max_lifetime: 10m
`))

func writeConfig(t testing.TB, s setup) string {
	t.Helper()
	if s.DataDir != "" {
		// Instances that corral left when it stopped (it adopts them at
		// its next start) are tmpfs mounts: unmount them before the test's
		// directories are removed.
		t.Cleanup(func() { unmountUnder(s.DataDir) })
	}
	if s.Reconcile == "" {
		s.Reconcile = "1s"
	}
	if s.Store == "" {
		s.Store = "sqlite"
	}
	if s.ControllerID == "" {
		s.ControllerID = "e2e"
	}
	var b bytes.Buffer
	if err := configTmpl.Execute(&b, s); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// proc is one running `corral serve`.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startCorral(t testing.TB, cfg string, f *forge, listen string, extra ...string) *proc {
	t.Helper()
	return startCorralEnv(t, cfg, listen, []string{"E2E_WEBHOOK_SECRET=" + f.secret.Reveal()}, extra...)
}

// startCorralEnv starts `corral serve` with extra environment variables.
func startCorralEnv(t testing.TB, cfg, listen string, env []string, extra ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "corral-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "-config", cfg}, extra...)
	cmd := exec.Command(corralBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logf.Name()}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			dumpLog(t, p.log)
		}
	})
	waitHTTP(t, "http://"+listen+"/healthz", p)
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Error("corral did not stop within 20s of SIGTERM")
		p.kill()
	}
}

func dumpLog(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if dir := os.Getenv("CORRAL_E2E_KEEP_LOGS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("last lines of %s:\n%s", path, strings.Join(lines, "\n"))
}

func waitHTTP(t testing.TB, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			dumpLog(t, p.log)
			t.Fatal("corral exited during start-up")
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("corral did not answer %s within 20s", url)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runnerProcesses lists live processes whose command line mentions dir:
// every runner and shim of this test's data directory. Zombies are dead.
func runnerProcesses(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		if state(pid) == "Z" {
			continue
		}
		out = append(out, pid+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

func state(pid string) string {
	f, err := os.Open("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	i := strings.LastIndexByte(line, ')')
	if i < 0 || i+2 >= len(line) {
		return ""
	}
	return line[i+2 : i+3]
}

func pgDSN(t *testing.T) string {
	t.Helper()
	return pgtest.DSN(t)
}

var _ = context.Background

func newSimOptions(seed int64) sim.Options { return sim.Options{Seed: seed} }

func simJob(i int, d time.Duration) sim.JobSpec {
	return sim.JobSpec{Name: fmt.Sprint("job-", i), Labels: []string{"corral", fmt.Sprint("run-", i)}, Duration: d}
}

// unmountUnder removes what instances of the process provider that a
// stopped corral left under the data directory dir hold on the host (tmpfs
// mounts, cgroups), so that the test's directories can go.
func unmountUnder(dir string) {
	_ = process.RemoveLeftovers(filepath.Join(dir, "instances"))
}
