package process

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

func TestRunShim(t *testing.T) {
	t.Run("bad_arguments", func(t *testing.T) {
		for name, args := range map[string][]string{
			"empty":        nil,
			"no_command":   {"--dir", "/tmp"},
			"no_dir":       {"--", "/bin/true"},
			"bad_deadline": {"--deadline", "tomorrow", "--dir", "/tmp", "--", "/bin/true"},
			"bad_grace":    {"--grace", "0s", "--dir", "/tmp", "--", "/bin/true"},
		} {
			t.Run(name, func(t *testing.T) {
				if err := RunShim(t.Context(), args); !errors.Is(err, corral.ErrBadInput) {
					t.Errorf("RunShim(%q) = %v, want ErrBadInput", args, err)
				}
			})
		}
	})
	t.Run("exit_code_of_the_runner", func(t *testing.T) {
		code, _, _ := runShim(t, nil, []string{providertest.RunnerArg},
			providertest.EnvRunFor+"=10ms", providertest.EnvExitCode+"=3")
		if code != 3 {
			t.Errorf("shim exit code %d, want 3", code)
		}
	})
	t.Run("deadline_kills_after_grace", func(t *testing.T) {
		// The grandchild role ignores SIGTERM, so only SIGKILL ends it. An
		// attempt counts only if it was ready before the deadline.
		// A loaded machine (CI runs packages side by side) can take over a
		// second to start a race-built runner: give later attempts longer.
		for _, lead := range []time.Duration{time.Second, 3 * time.Second, 8 * time.Second} {
			deadline := time.Now().Add(lead)
			code, out, took := runShim(t,
				[]string{"--deadline", deadline.Format(time.RFC3339Nano), "--grace", "300ms"},
				[]string{providertest.GrandchildArg, providertest.Unique("m-")})
			ready, stop := strings.Index(out, "grandchild: ready"), strings.Index(out, "stopping the runner")
			if ready < 0 || stop < ready {
				t.Logf("runner was not ready before the deadline; again:\n%s", out)
				continue
			}
			if code != 128+9 {
				t.Errorf("shim exit code %d, want 137 (SIGKILL)", code)
			}
			if took < lead+200*time.Millisecond || !strings.Contains(out, "grace over") {
				t.Errorf("shim took %v, output:\n%s\nwant deadline then grace", took, out)
			}
			return
		}
		t.Fatal("the runner never got ready before its deadline")
	})
	t.Run("runner_exit_kills_leftovers", func(t *testing.T) {
		marker := providertest.Unique("m-")
		code, out, _ := runShim(t, nil, []string{providertest.RunnerArg},
			providertest.EnvRunFor+"=300ms", providertest.EnvGrandchild+"="+marker)
		if code != 0 || !strings.Contains(out, "grandchild="+marker) {
			t.Fatalf("shim exit code %d, output:\n%s", code, out)
		}
		pids, err := providertest.HostProcesses(marker)
		if err != nil || len(pids) > 0 {
			t.Errorf("grandchild survived the shim: %v %v", pids, err)
		}
	})
}

// runShim runs the test binary as the shim, without namespaces, around the
// test binary as the runner, and returns its exit code and output.
func runShim(t *testing.T, flags, runner []string, env ...string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	exe := testExe(t)
	args := append([]string{shimArg}, flags...)
	args = append(args, "--dir", t.TempDir(), "--", exe)
	args = append(args, runner...)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if strings.Contains(string(out), "DATA RACE") {
		t.Errorf("race in the shim:\n%s", out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run shim: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out), took
}
