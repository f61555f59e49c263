package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// A probe directory left by a prober killed between its mount and its
// cleanup (a garm provider process killed with corral) is unmounted and
// removed by the next probe; the probe of a live process is left alone.
func TestProbeTmpfs_RemovesStaleProbes(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, probePrefix+strconv.Itoa(dead.Process.Pid))
	live := filepath.Join(dir, probePrefix+strconv.Itoa(os.Getppid()))
	other := filepath.Join(dir, "instance-1")
	for _, d := range []string{stale, live, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mounted := false
	if os.Geteuid() == 0 {
		if err := unix.Mount("tmpfs", stale, "tmpfs", 0, "size=16k"); err == nil {
			mounted = true
			t.Cleanup(func() { _ = unix.Unmount(stale, unix.MNT_DETACH) })
		}
	}
	_ = probeTmpfs(dir) // its own result depends on the machine
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the dead prober's directory (mounted: %v) is still there: %v", mounted, err)
	}
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(d), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, probePrefix+strconv.Itoa(os.Getpid()))); !os.IsNotExist(err) {
		t.Errorf("the probe left its own directory: %v", err)
	}
	t.Logf("stale probe was mounted: %v", mounted)
}
