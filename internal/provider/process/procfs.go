package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procRoot is where the host's procfs is mounted.
const procRoot = "/proc"

// procStat is the part of /proc/<pid>/stat that identifies a process.
type procStat struct {
	Pid   int
	State byte // R, S, D, Z, X, ...
	PPid  int
	PGrp  int
	Sid   int
	// Start is field 22, the start time in clock ticks since boot. Together
	// with the pid it names a process for good: a reused pid has a later
	// start time.
	Start uint64
}

// dead reports whether the process has exited (zombie or dying).
func (s procStat) dead() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, b)
}

// parseStat parses the content of /proc/<pid>/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, fmt.Errorf("proc stat of %d: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("proc stat of %d: %d fields", pid, len(f)+2)
	}
	s := procStat{Pid: pid, State: f[0][0]}
	var err error
	ints := []*int{&s.PPid, &s.PGrp, &s.Sid}
	for k, p := range ints {
		if *p, err = strconv.Atoi(f[1+k]); err != nil {
			return procStat{}, fmt.Errorf("proc stat of %d: field %d: %w", pid, 4+k, err)
		}
	}
	if s.Start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("proc stat of %d: start time: %w", pid, err)
	}
	return s, nil
}

// alive reports whether pid is a live (not zombie) process started at start.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	s, err := readStat(pid)
	return err == nil && !s.dead() && s.Start == start
}

// allPids lists the pids in /proc.
func allPids() ([]int, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// hasEnv reports whether the initial environment of pid holds the exact
// entry kv ("KEY=value"). Unreadable environments count as no.
func hasEnv(pid int, kv string) bool {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for e := range bytes.SplitSeq(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// signalExact sends sig to pid only if it is still the process that started
// at start. It opens a pidfd first and checks the start time afterwards, so
// the pid cannot be reused between the check and the signal. It returns nil
// when the process is already gone or is another process.
func signalExact(pid int, start uint64, sig syscall.Signal) error {
	if pid <= 1 || pid == os.Getpid() {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		// No pidfd (old kernel, seccomp): check and kill, with the small
		// window that this leaves.
		if s, serr := readStat(pid); serr != nil || s.Start != start {
			return nil
		}
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		return nil
	}
	defer unix.Close(fd)
	if s, err := readStat(pid); err != nil || s.Start != start {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}
