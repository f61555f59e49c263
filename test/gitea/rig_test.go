package gitea

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/provider/process"
)

// rig is one corral serving one repository target of the shared Gitea,
// with two process pools: "small" (label corral-a) and "big" (label
// corral-b, up to 4cpu8gb).
type rig struct {
	g                            *giteaServer
	id, repo, secret             string
	listen, dataDir, image, conf string
}

var rigs atomic.Int32

func newRig(t testing.TB) *rig {
	t.Helper()
	g := needGitea(t)
	n := rigs.Add(1)
	r := &rig{g: g, id: fmt.Sprintf("gt%d", n), secret: fmt.Sprintf("hook-secret-%d-%d", n, time.Now().UnixNano())}
	var err error
	if r.repo, err = g.createRepo(fmt.Sprintf("e2e-%d", n)); err != nil {
		t.Fatal(err)
	}
	if r.listen, err = freePort(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r.dataDir, r.image = filepath.Join(dir, "data"), filepath.Join(dir, "image")
	// After corral is gone (cleanups run last first): end, by pid, any
	// shim or runner of this rig that a failed test left behind.
	t.Cleanup(func() {
		for _, l := range r.leftovers() {
			pid, _, _ := strings.Cut(l, ":")
			if n, err := strconv.Atoi(pid); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
		// Then the tmpfs mounts and cgroups of instances left behind.
		_ = process.RemoveLeftovers(filepath.Join(r.dataDir, "instances"))
	})
	// The runner image for the process provider: gitea-runner and sh
	// (BootstrapScript runs as image/sh and finds gitea-runner beside it).
	if err := os.MkdirAll(r.image, 0o755); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string]string{"sh": sh, "gitea-runner": runnerBin} {
		if err := os.Symlink(to, filepath.Join(r.image, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.addHook(r.repo, "http://"+r.listen+"/webhooks/"+r.id, r.secret); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: %[1]s
data_dir: %[2]s
reconcile_interval: 2s
log: {level: info}
targets:
  - id: %[3]s
    kind: gitea
    scope: repo
    path: %[4]s
    url: %[5]s
    webhook_secret: env:E2E_HOOK_SECRET
    token: env:E2E_GITEA_TOKEN
    runner_prefix: corral-%[3]s
pools:
  - id: small
    labels: [corral-a]
    provider: process
    image: %[6]s
    max_instances: 6
    boot_timeout: 60s
    max_job_runtime: 5m
    idle_timeout: 10s
    max_lifetime: 10m
  - id: big
    labels: [corral-b]
    provider: process
    image: %[6]s
    flavor: 2cpu4gb10gb
    max_flavor: 4cpu8gb50gb
    max_instances: 6
    boot_timeout: 60s
    max_job_runtime: 5m
    idle_timeout: 10s
    max_lifetime: 10m
`, r.listen, r.dataDir, r.id, r.repo, g.URL, r.image)
	r.conf = filepath.Join(dir, "corral.yaml")
	if err := os.WriteFile(r.conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// workflow is a workflow file that runs on a push of itself only; each job
// is runs-on labels.
func workflow(name string, jobs [][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\non:\n  push:\n    paths: ['.gitea/workflows/%s.yml']\njobs:\n", name, name)
	for i, ls := range jobs {
		q := make([]string, len(ls))
		for k, l := range ls {
			q[k] = fmt.Sprintf("%q", l)
		}
		fmt.Fprintf(&b, "  j%02d:\n    runs-on: [%s]\n    steps:\n      - run: echo job %d on $CORRAL_INSTANCE_NAME\n", i, strings.Join(q, ", "), i)
	}
	return b.String()
}

func (r *rig) push(t testing.TB, name string, jobs [][]string) {
	t.Helper()
	if err := r.g.pushWorkflow(r.repo, name+".yml", workflow(name, jobs)); err != nil {
		t.Fatal(err)
	}
}

// proc is one running `corral serve`.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (r *rig) start(t testing.TB) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "corral-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(corralBin, "serve", "-config", r.conf)
	cmd.Env = append(os.Environ(), "E2E_HOOK_SECRET="+r.secret, "E2E_GITEA_TOKEN="+r.g.token)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logf.Name()}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		keepLog(p.log)
		if t.Failed() {
			dumpLog(t, p.log)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.done:
			dumpLog(t, p.log)
			t.Fatal("corral exited during start-up")
		default:
		}
		resp, err := http.Get("http://" + r.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("corral did not answer /healthz within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
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

// stop ends corral with SIGTERM, by its pid.
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

// keepLog copies a corral log into $CORRAL_GITEA_KEEP_LOGS, when set.
func keepLog(path string) {
	if dir := os.Getenv("CORRAL_GITEA_KEEP_LOGS"); dir != "" {
		if b, err := os.ReadFile(path); err == nil {
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
		}
	}
}

func dumpLog(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	t.Logf("last lines of %s:\n%s", path, lastLines(string(b), 60))
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

// giteaJobs lists the repository's jobs at Gitea, failing the test on error.
func (r *rig) giteaJobs(t testing.TB) []job {
	t.Helper()
	js, err := r.g.jobs(r.repo)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// corralJob is a job as corral's API shows it.
type corralJob struct {
	ID         int64    `json:"id"`
	ForgeJobID int64    `json:"forge_job_id"`
	State      string   `json:"state"`
	Reason     string   `json:"reason"`
	Labels     []string `json:"labels"`
	Runner     string   `json:"runner"`
	Timeline   []struct {
		At     time.Time `json:"at"`
		Kind   string    `json:"kind"`
		Detail string    `json:"detail"`
	} `json:"timeline"`
}

func (r *rig) api(t testing.TB, path string, out any) {
	t.Helper()
	resp, err := http.Get("http://" + r.listen + "/api/v1" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) corralJobs(t testing.TB) []corralJob {
	var out struct {
		Jobs []corralJob `json:"jobs"`
	}
	r.api(t, "/jobs", &out)
	return out.Jobs
}

// leftovers lists live processes whose command line names this rig's data
// or image directory: shims, scripts and runners. Zombies are dead.
func (r *rig) leftovers() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || (!bytes.Contains(cmdline, []byte(r.dataDir)) && !bytes.Contains(cmdline, []byte(r.image))) {
			continue
		}
		if procState(pid) == "Z" {
			continue
		}
		out = append(out, pid+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

func procState(pid string) string {
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

// checkClean waits until Gitea lists no runner of the repository and no
// process of the rig is alive.
func (r *rig) checkClean(t testing.TB) {
	t.Helper()
	var names, procs []string
	waitFor(t, 60*time.Second, "no runner registration and no runner process left", func() bool {
		var err error
		names, err = r.g.runners(r.repo)
		procs = r.leftovers()
		return err == nil && len(names) == 0 && len(procs) == 0
	})
}
