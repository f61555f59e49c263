package gitea

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/gitea/forgejostandin"
)

// envSimRunner makes this test binary the simulated forgejo-runner.
const envSimRunner = "CORRAL_TEST_FORGEJO_SIM_RUNNER"

func TestMain(m *testing.M) {
	if os.Getenv(envSimRunner) == "1" {
		if err := forgejostandin.RunOneJob(context.Background(), os.Args[1:], os.Stdout); err != nil {
			os.Stderr.WriteString("sim runner: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runOneJobBootstrap runs b as the process provider would (argv[0] is
// image/sh), with image/forgejo-runner the simulated runner (this test
// binary); it returns the output.
func runOneJobBootstrap(t *testing.T, b corral.Bootstrap, override map[string]string) (string, error) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	image, work := t.TempDir(), t.TempDir()
	if err := os.Symlink(sh, filepath.Join(image, "sh")); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n" + envSimRunner + "=1 exec '" + exe + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(image, ForgejoRunner), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(image, b.Command[0]), b.Command[1:]...)
	cmd.Dir = work
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range b.Env {
		if o, ok := override[k]; ok {
			v = corral.Secret(o)
		}
		cmd.Env = append(cmd.Env, k+"="+v.Reveal())
	}
	out, err := cmd.CombinedOutput()
	if fi, serr := os.Stat(filepath.Join(work, TokenFile)); serr == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	return string(out), err
}

func oneJobClient(t *testing.T, fj *forgejostandin.Server) *Client {
	t.Helper()
	tg := corral.Target{ID: "fj", Kind: corral.KindForgejo, Scope: corral.ScopeRepo, Path: "o/r", URL: fj.URL,
		Token: corral.Secret(fj.Token()), RunnerPrefix: "corral-fj", Mode: corral.ModeOneJob}
	c, err := NewClient(tg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOneJob_RunnerRunsItsJob(t *testing.T) {
	fj, err := forgejostandin.Start(forgejostandin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fj.Close()
	a := fj.Queue("build", []string{"debian"}, 50*time.Millisecond)
	b := fj.Queue("gpu-test", []string{"gpu", "large"}, 50*time.Millisecond)
	c := oneJobClient(t, fj)
	ctx := ctxT(t)

	jobs, _, err := c.PollJobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].Action != corral.ActionQueued || jobs[1].ForgeJobID != b {
		t.Fatalf("PollJobs = %+v, %v; want jobs %d and %d queued", jobs, err, a, b)
	}
	// Job b's runner first: each gets the handle of its own job.
	for _, j := range []struct {
		id     int64
		labels []string
	}{{b, []string{"gpu", "large"}}, {a, []string{"debian"}}} {
		boot, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-fj-" + string(rune('0'+j.id%10)), Labels: j.labels, InstanceID: "i", ForgeJobID: j.id})
		if err != nil {
			t.Fatalf("MintRunner(job %d): %v", j.id, err)
		}
		if boot.RunnerID == 0 || strings.Contains(strings.Join(boot.Command, " "), boot.Env[EnvToken].Reveal()) {
			t.Fatalf("bootstrap: runner id %d, or the token is on the command line", boot.RunnerID)
		}
		if out, err := runOneJobBootstrap(t, boot, nil); err != nil {
			t.Fatalf("runner of job %d: %v\n%s", j.id, err, out)
		}
	}
	for _, j := range fj.Jobs() {
		if j.Status != "success" || j.RunnerHandle != j.Handle || j.RanBy == "" {
			t.Errorf("job %d: status %s, ran by %q with handle %q (its own %q)", j.ID, j.Status, j.RanBy, j.RunnerHandle, j.Handle)
		}
	}
	if v := fj.Violations(); len(v) > 0 {
		t.Errorf("violations: %q", v)
	}
	if rs := fj.Runners(); len(rs) != 0 {
		t.Errorf("registrations left: %+v (ephemeral runners are removed after their job)", rs)
	}
	if calls := fj.Calls(); calls["POST runners"] != 2 {
		t.Errorf("calls %v: want one runner creation per job", calls)
	}
}

// The stand-in catches a runner that asks for a job it was not made for:
// the other job's handle, or none.
func TestOneJob_StandinCatchesWrongHandle(t *testing.T) {
	fj, err := forgejostandin.Start(forgejostandin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fj.Close()
	a := fj.Queue("a", []string{"x"}, 10*time.Millisecond)
	b := fj.Queue("b", []string{"x"}, 10*time.Millisecond)
	c := oneJobClient(t, fj)
	ctx := ctxT(t)
	ba, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-fj-a", Labels: []string{"x"}, ForgeJobID: a})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-fj-b", Labels: []string{"x"}, ForgeJobID: b})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runOneJobBootstrap(t, ba, nil); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// b's runner started with a's handle: refused, and a violation.
	if out, err := runOneJobBootstrap(t, bb, map[string]string{EnvHandle: ba.Env[EnvHandle].Reveal()}); err == nil {
		t.Fatalf("a runner with another job's handle ran:\n%s", out)
	}
	v := fj.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "corral-fj-b asked for job") {
		t.Fatalf("violations %q, want one for corral-fj-b", v)
	}
	if j := fj.Jobs()[1]; j.Status != "waiting" {
		t.Errorf("job b is %s, want still waiting", j.Status)
	}
}

func TestOneJob_Refusals(t *testing.T) {
	fj, err := forgejostandin.Start(forgejostandin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fj.Close()
	c := oneJobClient(t, fj)
	ctx := ctxT(t)
	if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-fj-w", Labels: []string{"x"}}); !errors.Is(err, corral.ErrBadInput) {
		t.Errorf("warm runner: err %v, want ErrBadInput", err)
	}
	if _, err := c.MintRunner(ctx, corral.RunnerSpec{Name: "corral-fj-n", Labels: []string{"x"}, ForgeJobID: 999}); !errors.Is(err, corral.ErrNotFound) {
		t.Errorf("job not waiting: err %v, want ErrNotFound", err)
	}
	fj.SetFailing(true)
	if _, _, err := c.PollJobs(ctx); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("5xx: err %v, want ErrUnavailable", err)
	}
	if rs := fj.Runners(); len(rs) != 0 {
		t.Errorf("runners created by refused mints: %+v", rs)
	}
}
