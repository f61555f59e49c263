package qemu

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// haltFixture starts a stand-in for a QEMU that does not exit (a sleep)
// and runs watchHalt on a console file the test writes to. It returns the
// console path and a channel closed when the stand-in exits.
func haltFixture(t *testing.T) (string, chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	ticks, err := startTicks(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	st := state{InstanceID: "inst-halt", Pid: cmd.Process.Pid, StartTicks: ticks, QMP: filepath.Join(dir, "no-qmp.sock")}
	console := filepath.Join(dir, consoleFile)
	if err := os.WriteFile(console, []byte("corral-guest: runner starting\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Provider{log: slog.New(slog.NewTextHandler(io.Discard, nil)), deleting: map[string]bool{}}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	go p.watchHalt(st, console, exited)
	return console, exited
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// A guest whose kernel said it restarts, split over two writes, while its
// QEMU keeps running: the provider ends QEMU itself.
func TestWatchHalt_EndsQEMUOfHaltedGuest(t *testing.T) {
	console, exited := haltFixture(t)
	time.Sleep(2 * haltPoll)
	appendFile(t, console, "corral-guest: runner exited 0\n[    2.157679] reboot: Restar")
	time.Sleep(2 * haltPoll)
	appendFile(t, console, "ting system\n")
	select {
	case <-exited:
	case <-time.After(haltGrace + quitGrace + stopTimeout + 5*time.Second):
		t.Fatal("QEMU stand-in still runs after the guest halted")
	}
}

// Without those words the provider leaves a running QEMU alone.
func TestWatchHalt_LeavesRunningGuest(t *testing.T) {
	console, exited := haltFixture(t)
	appendFile(t, console, "corral-test-runner: still working; reboot: is not a marker alone\n")
	select {
	case <-exited:
		t.Fatal("QEMU stand-in ended although the guest did not halt")
	case <-time.After(haltGrace + 4*haltPoll):
	}
}
