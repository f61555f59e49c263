package gitea

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	giteaforge "github.com/corral-ci/corral/internal/forge/gitea"
)

// runBootstrap runs a bootstrap as the process provider does (image/sh,
// the files in the working directory), in the background.
func runBootstrap(t *testing.T, r *rig, b corral.Bootstrap) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	work := t.TempDir()
	for name, content := range b.Files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content.Reveal()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(r.image, b.Command[0]), b.Command[1:]...)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}
	for k, v := range b.Env {
		cmd.Env = append(cmd.Env, k+"="+v.Reveal())
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd, &out
}

// TestGitea_Client runs the adapter's calls against the real Gitea: the
// registration token, the job listing and lookup, the runner listing and
// removal (by name), and the diagnosis of a refused token.
func TestGitea_Client(t *testing.T) {
	r := newRig(t)
	tg := corral.Target{ID: r.id, Kind: corral.KindGitea, Scope: corral.ScopeRepo, Path: r.repo, URL: r.g.URL + "/api/v1",
		Token: corral.Secret(r.g.token), RunnerPrefix: "corral-" + r.id}
	c, err := giteaforge.NewClient(tg, giteaforge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r.push(t, "waits", [][]string{{"self-hosted", "nobody-serves-this"}})
	var open []corral.JobEvent
	waitFor(t, 30*time.Second, "the job in OpenJobs", func() bool {
		open, err = c.OpenJobs(ctx)
		return err == nil && len(open) == 1
	})
	j := open[0]
	if j.Action != corral.ActionQueued || j.Repo != r.repo || strings.Join(j.Labels, ",") != "self-hosted,nobody-serves-this" || j.At.IsZero() {
		t.Errorf("open job = %+v", j)
	}
	one, err := c.Job(ctx, j.ForgeJobID, j.Repo)
	if err != nil || one.ForgeJobID != j.ForgeJobID || one.Action != corral.ActionQueued {
		t.Fatalf("Job = %+v, %v", one, err)
	}
	if _, err := c.Job(ctx, j.ForgeJobID+1000, j.Repo); !errors.Is(err, corral.ErrNotFound) {
		t.Errorf("unknown job: err = %v, want ErrNotFound", err)
	}

	// An idle runner (its labels match no job) registers, is listed and is
	// removed by name.
	name := fmt.Sprintf("corral-%s-idle", r.id)
	b, err := c.MintRunner(ctx, corral.RunnerSpec{Name: name, Labels: []string{"self-hosted", "idle-only"}})
	if err != nil {
		t.Fatal(err)
	}
	cmd, out := runBootstrap(t, r, b)
	var rs []corral.Runner
	waitFor(t, 30*time.Second, "the runner listed", func() bool {
		rs, err = c.Runners(ctx)
		return err == nil && len(rs) == 1
	})
	if rs[0].Name != name || rs[0].ID == 0 || strings.Join(rs[0].Labels, ",") != "self-hosted,idle-only" {
		t.Errorf("runner = %+v", rs[0])
	}
	waitFor(t, 30*time.Second, "the runner removed (not busy)", func() bool {
		return c.RemoveRunner(ctx, corral.Runner{Name: name}) == nil
	})
	if rs, err := c.Runners(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("runners after removal: %v, %v", rs, err)
	}
	if err := c.RemoveRunner(ctx, corral.Runner{ID: rs[0].ID, Name: name}); err != nil {
		t.Errorf("removing a removed runner: %v", err)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	// A runner presenting a token Gitea does not know exits with 78, and
	// its output tells why.
	b.Env[giteaforge.EnvToken] = corral.Secret(strings.Repeat("x", 40))
	b.Env[giteaforge.EnvName] = corral.Secret(name + "-refused")
	cmd, out = runBootstrap(t, r, b)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 78 {
			t.Fatalf("exit = %v, want status 78: %s", err, out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the refused runner did not exit: %s", out)
	}
	if err := c.DiagnoseRunner(out.String()); !errors.Is(err, giteaforge.ErrTokenRefused) {
		t.Fatalf("DiagnoseRunner = %v, want ErrTokenRefused; output:\n%s", err, out)
	}
}
