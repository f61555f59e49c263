// Package dockere2e runs `corral serve` as a process against the simulated
// forge with a pool on the docker provider: every runner is a container on
// a private Docker daemon (internal/testutil/dockertest), built FROM
// scratch out of busybox-static and the static corral binary, whose
// `sim-runner` command plays the forge's runner. The tests check DESIGN.md's
// invariants from the outside: no lost job, no job served twice, no
// container and no registration left, across a SIGKILL of corral and the
// loss of one of two Docker engines.
//
// Without dockerd (or not as root) the tests skip; with CI=true they fail.
package dockere2e

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// Paths in the runner image. The sim forge's bootstrap command is the bare
// name `sim-runner`, which the provider's entry script looks up in PATH:
// /bin/sim-runner is a two-line wrapper that execs `/corral sim-runner`.
const (
	imageCorral  = "/corral"
	imageWrapper = "/bin/sim-runner"
	wrapper      = "#!/bin/sh\nexec /corral sim-runner \"$@\"\n"
)

// controllerID is the controller id of every corral these tests start; the
// containers carry it in the io.corral.controller label.
const controllerID = "dockere2e"

var bin struct {
	dir     string
	corral  string // static corral binary, used both as `serve` and in the image
	wrapper string
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "corral-dockere2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin.dir = dir
	bin.corral = filepath.Join(dir, "corral")
	build := exec.Command("go", "build", "-trimpath", "-o", bin.corral, "../../cmd/corral")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build corral:", err)
		return 1
	}
	bin.wrapper = filepath.Join(dir, "sim-runner")
	if err := os.WriteFile(bin.wrapper, []byte(wrapper), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return dockertest.Main(m)
}

// runnerImage builds (or finds) the runner image on the engine at host.
func runnerImage(t testing.TB, host string) string {
	t.Helper()
	return dockertest.ImageOn(t, host, "corral-sim-runner", map[string]string{
		imageCorral:  bin.corral,
		imageWrapper: bin.wrapper,
	})
}

// forge is the simulated forge, served on 127.0.0.1 by the test process so
// that it outlives every corral process the test kills. Containers use the
// host's network, so the runners reach it on 127.0.0.1 too.
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
	return &forge{Server: s, URL: ts.URL, secret: corral.Secret("dockere2e-secret-" + t.Name())}
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

// endpoint is one Docker engine in the config.
type endpoint struct {
	Name, Host string
	Max        int
}

// setup holds what a corral config needs.
type setup struct {
	Listen, DataDir, ForgeURL, Image string
	PoolMax, MinIdle                 int
	Endpoints                        []endpoint
}

var configTmpl = template.Must(template.New("c").Parse(`listen: {{.Listen}}
data_dir: {{.DataDir}}
store: sqlite
controller_id: ` + controllerID + `
reconcile_interval: 1s
log: {level: info, format: text}
targets:
  - id: e2e
    kind: sim
    scope: org
    path: e2e
    url: {{.ForgeURL}}
    webhook_secret: env:E2E_WEBHOOK_SECRET
    runner_prefix: corral-d
pools:
  - id: docker
    labels: [corral]
    provider: docker
    image: {{.Image}}
    flavor: 1cpu1gb1gb
    max_instances: {{.PoolMax}}
    min_idle: {{.MinIdle}}
    boot_timeout: 30s
    max_job_runtime: 2m
    idle_timeout: 5s
    max_lifetime: 10m
providers:
  docker:
    network: host
    endpoints:
{{- range .Endpoints}}
      - {name: {{.Name}}, host: "{{.Host}}", max_instances: {{.Max}}}
{{- end}}
`))

func writeConfig(t testing.TB, s setup) string {
	t.Helper()
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

func startCorral(t testing.TB, cfg string, f *forge, listen string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "corral-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.corral, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), "E2E_WEBHOOK_SECRET="+f.secret.Reveal())
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

// kill sends SIGKILL to this corral (by its pid) and waits for it.
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
	lines := strings.Split(string(b), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
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
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("corral did not answer %s within 20s", url)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// engine is a test-side client of one Docker engine.
type engine struct {
	name string
	c    *client.Client
}

func newEngine(t testing.TB, name, host string) *engine {
	t.Helper()
	c, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &engine{name: name, c: c}
}

// containers lists the names of corral's containers on the engine, running
// or exited, by state ("running", "exited", ...).
func (e *engine) containers(t testing.TB) (map[string]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.c.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "io.corral.controller="+controllerID),
	})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range res.Items {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out[name] = string(c.State)
	}
	return out, nil
}

// orphan starts a running container labelled as corral's that no store
// knows: what a Create interrupted between the engine and the store leaves.
func (e *engine) orphan(t testing.TB, image, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
		Config: &container.Config{Image: image, Cmd: []string{"/bin/sleep", "600"}, Labels: map[string]string{
			"io.corral.controller": controllerID, "io.corral.pool": "docker", "io.corral.instance": name}},
		HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
}

// count is the number of corral's containers on the engine; -1 when the
// engine does not answer.
func (e *engine) count(t testing.TB) int {
	t.Helper()
	cs, err := e.containers(t)
	if err != nil {
		return -1
	}
	return len(cs)
}

// checkClean asserts the end state: no registration at the forge (but
// those of the runner names that lost returns, asked at each poll: the
// runners of a lost engine), no container of corral's on any engine, every
// job completed exactly once, with success unless allowed to fail.
func checkClean(t *testing.T, f *forge, engines []*engine, jobs int, mayFail func(sim.JobInfo) bool, lost func() map[string]string) {
	t.Helper()
	if lost == nil {
		lost = func() map[string]string { return nil }
	}
	var left []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		left = left[:0]
		lost := lost()
		for _, r := range f.Runners("e2e") {
			if _, ok := lost[r.Name]; !ok {
				left = append(left, "registration "+r.Name)
			}
		}
		for _, e := range engines {
			cs, err := e.containers(t)
			if err != nil {
				left = append(left, fmt.Sprintf("engine %s: %v", e.name, err))
			}
			for name, st := range cs {
				left = append(left, fmt.Sprintf("container %s on %s (%s)", name, e.name, st))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s still left: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := f.Stats()
	if st.JobsCompleted != jobs {
		t.Errorf("forge completed %d jobs, want %d", st.JobsCompleted, jobs)
	}
	for id, n := range st.Completions {
		if n != 1 {
			t.Errorf("job %d completed %d times, want exactly once", id, n)
		}
	}
	for _, j := range f.Jobs() {
		if j.Conclusion != "success" && (mayFail == nil || !mayFail(j)) {
			t.Errorf("job %d concluded %q on runner %q, want success", j.ID, j.Conclusion, j.RunnerName)
		}
	}
}

// liveInstances asks corral's API for the instances it holds live (not
// confirmed deleted): runner name -> state.
func liveInstances(t testing.TB, listen string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + listen + "/api/v1/instances")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Instances []struct{ Name, State string } `json:"instances"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/instances: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, in := range out.Instances {
		m[in.Name] = in.State
	}
	return m
}

func simJob(i int, d time.Duration) sim.JobSpec {
	return sim.JobSpec{Name: fmt.Sprint("job-", i), Labels: []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, Duration: d}
}
