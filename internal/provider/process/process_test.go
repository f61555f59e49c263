package process

import (
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
	"github.com/corral-ci/corral/internal/provider/providertest"
)

func TestNew(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		if _, err := New(Config{Dir: "/var/lib/corral", Shim: []string{"/bin/corral", "shim"}}); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
	t.Run("reports_every_error", func(t *testing.T) {
		_, err := New(Config{Dir: "relative", Namespaces: "maybe", Grace: -1})
		if !errors.Is(err, corral.ErrBadInput) {
			t.Fatalf("New: %v, want ErrBadInput", err)
		}
		for _, want := range []string{"absolute", "shim", "maybe", "grace"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
}

func TestProvider_Create(t *testing.T) {
	h := newHarness(t, NamespacesAuto)
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")

	t.Run("duplicate_id_conflicts", func(t *testing.T) {
		spec := providertest.Spec(t, h, ctl, nil)
		providertest.Create(t, p, spec)
		_, err := p.Create(t.Context(), spec)
		if !errors.Is(err, corral.ErrConflict) {
			t.Fatalf("second Create: %v, want ErrConflict", err)
		}
	})
	t.Run("bad_input_leaves_nothing", func(t *testing.T) {
		cases := map[string]func(*corral.InstanceSpec){
			"id_with_slash":      func(s *corral.InstanceSpec) { s.InstanceID = "../escape" },
			"file_outside_work":  func(s *corral.InstanceSpec) { s.Bootstrap.Files["../../x"] = "x" },
			"relative_image":     func(s *corral.InstanceSpec) { s.Image = "runner" },
			"env_name":           func(s *corral.InstanceSpec) { s.Bootstrap.Env = map[string]corral.Secret{"A=B": "x"} },
			"nul_in_env":         func(s *corral.InstanceSpec) { s.Bootstrap.Env = map[string]corral.Secret{"A": "x\x00y"} },
			"no_controller":      func(s *corral.InstanceSpec) { s.ControllerID = "" },
			"image_not_runnable": func(s *corral.InstanceSpec) { s.Image = writeFile(t, "plain", 0o644) },
		}
		for name, mutate := range cases {
			t.Run(name, func(t *testing.T) {
				spec := providertest.Spec(t, h, ctl, nil)
				mutate(&spec)
				_, err := p.Create(t.Context(), spec)
				if !errors.Is(err, corral.ErrBadInput) {
					t.Fatalf("Create: %v, want ErrBadInput", err)
				}
				if entries, _ := os.ReadDir(h.dir); len(entries) > 0 {
					t.Errorf("failed Create left %d entries in %s", len(entries), h.dir)
				}
			})
		}
	})
	t.Run("directory_image", func(t *testing.T) {
		img := t.TempDir()
		if err := os.Mkdir(filepath.Join(img, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(h.exe, filepath.Join(img, "bin", "runner")); err != nil {
			t.Fatal(err)
		}
		spec := providertest.Spec(t, h, ctl, map[string]corral.Secret{providertest.EnvEcho: "from-dir-image"})
		spec.Image = img
		spec.Bootstrap.Command = []string{"bin/runner", providertest.RunnerArg}
		inst := providertest.Create(t, p, spec)
		providertest.Eventually(t, "the runner from the directory image", func() bool {
			return strings.Contains(h.Output(t, inst), "echo=from-dir-image")
		})
	})
	t.Run("environment_is_minimal", func(t *testing.T) {
		t.Setenv("CORRAL_TEST_LEAK", "from-corral")
		spec := providertest.Spec(t, h, ctl, nil)
		env, err := p.environ(spec)
		if err != nil {
			t.Fatal(err)
		}
		work := filepath.Join(h.dir, spec.InstanceID, workDir)
		got := strings.Join(env, "\n")
		for _, want := range []string{"HOME=" + work, "TMPDIR=" + work + "/tmp", "LANG=C.UTF-8", "CORRAL_INSTANCE_ID=" + spec.InstanceID} {
			if !strings.Contains(got, want) {
				t.Errorf("environment lacks %s:\n%s", want, got)
			}
		}
		if strings.Contains(got, "CORRAL_TEST_LEAK") {
			t.Errorf("corral's own environment leaked into the runner's:\n%s", got)
		}
	})
	t.Run("namespaces", func(t *testing.T) {
		before := countProcMounts(t)
		inst := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
		st, err := readState(filepath.Join(h.dir, inst.ProviderID))
		if err != nil {
			t.Fatal(err)
		}
		if !st.Namespaced {
			t.Skip("the kernel refused new namespaces here")
		}
		// The shim is PID 1 of the namespace, so the runner has a small pid
		// there, unlike its pid on the host; the proc that the shim mounts
		// in the namespace does not show on the host.
		var pid int
		providertest.Eventually(t, "the runner to report its pid", func() bool {
			_, after, ok := strings.Cut(h.Output(t, inst), "corral-test-runner: pid=")
			_, err := fmt.Sscanf(after, "%d", &pid)
			return ok && err == nil
		})
		if pid >= 64 || pid == st.Pid || hasEnv(pid, "CORRAL_INSTANCE_ID="+inst.InstanceID) {
			t.Errorf("runner reports pid %d, which is not a pid of a fresh namespace", pid)
		}
		if after := countProcMounts(t); after != before {
			t.Errorf("host has %d proc mounts after the create, %d before", after, before)
		}
	})
}

func writeFile(t *testing.T, name string, mode os.FileMode) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func countProcMounts(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), " - proc ")
}

// startSleeper starts an unrelated process in its own session, with an
// instance marker in its environment that names another instance.
func startSleeper(t *testing.T) (*exec.Cmd, procStat) {
	cmd := exec.Command("sleep", "60")
	cmd.Env = []string{"CORRAL_INSTANCE_ID=someone-else"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, s
}

func TestProvider_Delete(t *testing.T) {
	t.Run("reused_pid_is_never_signalled", func(t *testing.T) {
		h := newHarness(t, NamespacesOff)
		p := h.provider(t)
		cmd, s := startSleeper(t)
		id, ctl := providertest.Unique("inst-"), providertest.Unique("ctl-")
		dir := filepath.Join(h.dir, id)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		st := state{Version: stateVersion, InstanceID: id, ControllerID: ctl, Pid: s.Pid, StartTicks: s.Start - 1, CreatedAt: time.Now()}
		if err := writeState(dir, st); err != nil {
			t.Fatal(err)
		}
		got, ok := providertest.Find(t, p, ctl, id)
		if !ok || got.Running {
			t.Fatalf("List gives %+v (found %v), want it listed as not running", got, ok)
		}
		if err := p.Delete(t.Context(), got); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if !alive(s.Pid, s.Start) {
			t.Fatalf("Delete killed pid %d, which another process reuses", s.Pid)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Delete left %s: %v", dir, err)
		}
		if cmd.ProcessState != nil {
			t.Fatalf("sleeper exited: %v", cmd.ProcessState)
		}
	})
	t.Run("crashed_create_is_killed_by_marker", func(t *testing.T) {
		h := newHarness(t, NamespacesAuto)
		p := h.provider(t)
		ctl := providertest.Unique("ctl-")
		inst := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
		dir := filepath.Join(h.dir, inst.ProviderID)
		// As if corral died before recording the shim: no state at all.
		if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(t.Context(), inst); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if left := h.Leftovers(t, inst); len(left) > 0 {
			t.Errorf("Delete left %v", left)
		}
	})
}

func TestProvider_List(t *testing.T) {
	t.Run("orphans_and_unreadable_state", func(t *testing.T) {
		clock := corral.NewFakeClock(time.Now())
		h := newHarness(t, NamespacesOff)
		h.clock = clock
		p := h.provider(t)
		ctl := providertest.Unique("ctl-")
		mk := func(id string, st *state, raw string) {
			dir := filepath.Join(h.dir, id)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			switch {
			case st != nil:
				if err := writeState(dir, *st); err != nil {
					t.Fatal(err)
				}
			case raw != "":
				if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(raw), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		mk("no-state", nil, "")
		mk("garbage", nil, "{not json")
		mk("not-started", &state{Version: stateVersion, InstanceID: "not-started", ControllerID: ctl, CreatedAt: clock.Now()}, "")
		mk("other-ctl", &state{Version: stateVersion, InstanceID: "other-ctl", ControllerID: "other", CreatedAt: clock.Now()}, "")

		ids := func() []string {
			list, err := p.List(t.Context(), ctl)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, pi := range list {
				if pi.Running {
					t.Errorf("%s listed as running", pi.InstanceID)
				}
				out = append(out, pi.InstanceID)
			}
			return out
		}
		if got := ids(); len(got) != 0 {
			t.Errorf("young directories listed: %v", got)
		}
		clock.Advance(2 * orphanAge)
		if got := strings.Join(ids(), ","); got != "no-state,not-started" {
			t.Errorf("after a while List = %s, want no-state,not-started", got)
		}
		if !strings.Contains(h.logs.String(), "unreadable state") {
			t.Errorf("unreadable state was not logged:\n%s", h.logs.String())
		}
		for _, id := range []string{"no-state", "not-started", "garbage"} {
			if err := p.Delete(t.Context(), corral.ProviderInstance{ProviderID: id}); err != nil {
				t.Errorf("Delete(%s): %v", id, err)
			}
		}
	})
	t.Run("pid_not_recorded_but_running", func(t *testing.T) {
		// corral died after starting the shim and before recording its
		// pid: the runner is at work and must be listed as running, or
		// corral would start it again and delete the busy one.
		h := newHarness(t, NamespacesOff)
		p := h.provider(t)
		ctl := providertest.Unique("ctl-")
		inst := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
		dir := filepath.Join(h.dir, inst.InstanceID)
		st, err := readState(dir)
		if err != nil {
			t.Fatal(err)
		}
		st.Pid, st.StartTicks = 0, 0
		if err := writeState(dir, st); err != nil {
			t.Fatal(err)
		}
		list, err := p.List(t.Context(), ctl)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || !list[0].Running {
			t.Fatalf("List = %+v, want the instance running", list)
		}
		if err := p.Delete(t.Context(), inst); err != nil {
			t.Fatal(err)
		}
	})
}

func TestParseStat(t *testing.T) {
	line := "4242 (a) b) (c) S 1 4242 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10"
	s, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{Pid: 4242, State: 'S', PPid: 1, PGrp: 4242, Sid: 4240, Start: 987654}
	if s != want {
		t.Errorf("parseStat = %+v, want %+v", s, want)
	}
	if _, err := parseStat(1, []byte("1 (x) S 1")); err == nil {
		t.Errorf("short stat parsed")
	}
}
