// Package dockere2e runs `corral serve` as a process against the stand-in
// GitHub (the real GitHub adapter) with a pool on the docker provider:
// every runner is a container on a private Docker daemon
// (internal/testutil/dockertest), built FROM scratch out of busybox-static
// and the static corral binary, whose `github-sim-runner` command is the
// stand-in's simulated actions runner. The tests check DESIGN.md's
// invariants from the outside: no lost job, no job served twice, no
// container and no registration left, across a SIGKILL of corral and the
// loss of one of two Docker engines. The harness is
// internal/testutil/e2etest.
//
// Without dockerd (or not as root) the tests skip; with CI=true they fail.
package dockere2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// Paths in the runner image. The GitHub adapter's bootstrap command is
// the bare name `run.sh`, which the provider's entry script looks up in
// PATH: /bin/run.sh is a two-line wrapper that execs
// `/corral github-sim-runner`.
const (
	imageCorral  = "/corral"
	imageWrapper = "/bin/run.sh"
)

// controllerID is the controller id of every corral these tests start; the
// containers carry it in the io.corral.controller label.
const controllerID = "dockere2e"

var bin struct {
	corral  string // static corral binary, used both as `serve` and in the image
	wrapper string
}

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&bin.corral, e2etest.BuildOptions{Static: true}, func() int {
		bin.wrapper = filepath.Join(filepath.Dir(bin.corral), "run.sh")
		if err := os.WriteFile(bin.wrapper, []byte(e2etest.RunnerScript(imageCorral, "")), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return dockertest.Main(m)
	}))
}

// runnerImage builds (or finds) the runner image on the engine at host.
func runnerImage(t testing.TB, host string) string {
	t.Helper()
	return dockertest.ImageOn(t, host, "corral-gh-sim-runner", map[string]string{
		imageCorral:  bin.corral,
		imageWrapper: bin.wrapper,
	})
}

// rig is the stand-in GitHub and one corral config: a docker pool over
// the endpoints. Containers use the host's network, so the runners reach
// the stand-in on 127.0.0.1 too.
type rig struct {
	*e2etest.GitHub
	listen string
	cfg    e2etest.Config
}

// setup is what a test varies.
type setup struct {
	Image            string
	PoolMax, MinIdle int
	Endpoints        []e2etest.Endpoint
	// Bench: room for slow starts (a boot timeout and a job runtime that
	// the benchmark's largest level cannot reach) and quieter logs.
	Bench bool
}

func newRig(t testing.TB, opt standin.Options, s setup) *rig {
	t.Helper()
	r := &rig{GitHub: e2etest.NewGitHub(t, opt), listen: e2etest.FreePort(t)}
	r.Hook(r.listen, "e2e")
	pool := e2etest.Pool{ID: "docker", Labels: []string{"corral"}, Provider: "docker", Image: s.Image, Flavor: "1cpu1gb1gb",
		MaxInstances: s.PoolMax, MinIdle: s.MinIdle}
	r.cfg = e2etest.Config{Listen: r.listen, DataDir: filepath.Join(t.TempDir(), "data"), ControllerID: controllerID,
		Targets: []e2etest.Target{r.Target("e2e", "corral-d")}, Pools: []e2etest.Pool{pool},
		Docker: &e2etest.Docker{Network: "host", Endpoints: s.Endpoints}}
	if s.Bench {
		r.cfg.LogLevel = "warn"
		r.cfg.Pools[0].BootTimeout, r.cfg.Pools[0].MaxJobRuntime = "3m", "5m"
	}
	return r
}

func (r *rig) start(t testing.TB) *e2etest.Proc {
	t.Helper()
	return e2etest.Start(t, e2etest.Serve{Bin: bin.corral, Config: e2etest.WriteConfig(t, r.cfg), Listen: r.listen, Env: r.Env()})
}

func (r *rig) queue(i int, d time.Duration) int64 {
	return r.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, d)
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	e2etest.WaitFor(t, within, what, cond)
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
func checkClean(t *testing.T, f *rig, engines []*engine, jobs int, mayFail func(standin.JobInfo) bool, lost func() map[string]string) {
	t.Helper()
	if lost == nil {
		lost = func() map[string]string { return nil }
	}
	var left []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		left = left[:0]
		lost := lost()
		for _, r := range f.Runners() {
			if _, ok := lost[r.Name]; r.Registered && !ok {
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
	f.CheckJobs(t, jobs, mayFail)
}

// liveInstances asks corral's API for the instances it holds live (not
// confirmed deleted): runner name -> state.
func liveInstances(t testing.TB, listen string) map[string]string {
	t.Helper()
	resp, err := e2etest.APIGet("http://" + listen + "/api/v1/instances")
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
