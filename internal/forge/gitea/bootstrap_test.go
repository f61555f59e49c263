package gitea

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// fakeRunner stands in for gitea-runner: it logs its arguments and whether
// it sees the token in its environment.
const fakeRunner = `#!/bin/sh
echo "argv: $*" >> "$LOG"
echo "token-env: ${CORRAL_RUNNER_TOKEN:-none}" >> "$LOG"
case "$*" in *register*) [ -n "${FAIL_REGISTER:-}" ] && exit 1 ;; esac
exit 0
`

// runBootstrap runs the script as the process provider would: argv[0] is
// image/sh, the working directory holds the bootstrap files.
func runBootstrap(t *testing.T, b corral.Bootstrap, extra ...string) (string, error) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	image, work := t.TempDir(), t.TempDir()
	if err := os.Symlink(sh, filepath.Join(image, "sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(image, GiteaRunner), []byte(fakeRunner), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range b.Files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content.Reveal()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(work, "log")
	cmd := exec.Command(filepath.Join(image, b.Command[0]), b.Command[1:]...)
	cmd.Dir = work
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LOG=" + log}, extra...)
	for k, v := range b.Env {
		cmd.Env = append(cmd.Env, k+"="+v.Reveal())
	}
	out, err := cmd.CombinedOutput()
	got, _ := os.ReadFile(log)
	return string(got) + string(out), err
}

func TestBootstrapScript(t *testing.T) {
	f, ts := newFake(t, "/repos/o/r")
	b, err := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{}).MintRunner(ctxT(t),
		corral.RunnerSpec{Name: "corral-t1-x", Labels: []string{"self-hosted", "corral"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("register then daemon", func(t *testing.T) {
		out, err := runBootstrap(t, b)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{
			"argv: -c config.yaml register --no-interactive --ephemeral --instance " + ts.URL + " --token " + f.token +
				" --name corral-t1-x --labels self-hosted:host,corral:host",
			"token-env: none",
			"argv: -c config.yaml daemon",
			"token-env: none",
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Fatalf("runner calls:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
		}
	})
	t.Run("registration refused", func(t *testing.T) {
		out, err := runBootstrap(t, b, "FAIL_REGISTER=1")
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 78 {
			t.Fatalf("err = %v, want exit status 78: %s", err, out)
		}
		if strings.Contains(out, "daemon") {
			t.Fatal("daemon started after a failed registration")
		}
	})
}

func TestClient_forgejo(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/repos/o/r/actions/runners/jobs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Total-Count", "3")
		_, _ = w.Write([]byte(`[{"id":4,"name":"a","runs_on":["docker"],"status":"waiting"},
			{"id":5,"name":"b","runs_on":["docker"],"status":"running","task_id":9},
			{"id":6,"name":"c","runs_on":["docker"],"status":"blocked"}]`))
	})
	mux.HandleFunc("GET /api/v1/repos/o/r/actions/runners", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"id":1,"uuid":"u","name":"corral-t1-a","status":"idle","labels":["docker"],"ephemeral":true},
			{"id":2,"name":"corral-t1-b","status":"active","labels":["docker"]}]`))
	})
	ts := newServer(t, mux)
	tg := target(ts, corral.ScopeRepo, "o/r")
	tg.Kind = corral.KindForgejo
	c := newClient(t, tg, Options{})
	jobs, err := c.OpenJobs(ctxT(t))
	if err != nil || len(jobs) != 2 || jobs[0].Action != corral.ActionQueued || jobs[1].Action != corral.ActionInProgress || jobs[0].Repo != "o/r" {
		t.Fatalf("jobs = %+v, err = %v", jobs, err)
	}
	if j, err := c.Job(ctxT(t), 5, "o/r"); err != nil || j.ForgeJobID != 5 {
		t.Fatalf("job = %+v, err = %v", j, err)
	}
	if _, err := c.Job(ctxT(t), 6, "o/r"); err == nil {
		t.Fatal("a blocked job is not open")
	}
	rs, err := c.Runners(ctxT(t))
	if err != nil || len(rs) != 2 || !rs[0].Online || rs[0].Busy || !rs[1].Busy || rs[0].Labels[0] != "docker" {
		t.Fatalf("runners = %+v, err = %v", rs, err)
	}
}

func TestClient_DiagnoseRunner(t *testing.T) {
	f, ts := newFake(t, "/repos/o/r")
	c := newClient(t, target(ts.URL, corral.ScopeRepo, "o/r"), Options{})
	mint := func() {
		if _, err := c.MintRunner(ctxT(t), corral.RunnerSpec{Name: "n", Labels: []string{"x"}}); err != nil {
			t.Fatal(err)
		}
	}
	mint()
	if err := c.DiagnoseRunner("level=info msg=\"Runner registered successfully.\""); err != nil {
		t.Fatalf("healthy output: %v", err)
	}
	mint()
	if n := f.count("POST registration-token"); n != 1 {
		t.Fatalf("calls = %d", n)
	}
	out := `level=error msg="poller: cannot register new runner" error="unauthenticated: runner registration token has been invalidated, please use the latest one"` +
		"\ncorral bootstrap: runner registration failed\n"
	if err := c.DiagnoseRunner(out); !errors.Is(err, ErrTokenRefused) {
		t.Fatalf("err = %v, want ErrTokenRefused", err)
	}
	mint()
	if n := f.count("POST registration-token"); n != 2 {
		t.Fatalf("calls after a refused token = %d, want 2", n)
	}
}
