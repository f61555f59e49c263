package process

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
)

// DefaultGrace is how long the shim waits between SIGTERM and SIGKILL when
// the deadline passes or its context ends.
const DefaultGrace = 10 * time.Second

// ExitError is returned by RunShim when the runner did not exit 0. The
// `corral shim` command exits with Code.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return "runner exited with code " + strconv.Itoa(e.Code) }

// ExitCode returns the code the shim process should exit with.
func (e *ExitError) ExitCode() int { return e.Code }

type shimArgs struct {
	deadline time.Time // zero: none
	grace    time.Duration
	dir      string
	argv     []string
	iso      isolateArgs
	// newNS: the provider started the shim in new namespaces (it need not
	// ask its parent, which may be gone: a plugin exits after a create).
	newNS bool
}

func parseShimArgs(args []string) (shimArgs, error) {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	deadline := fs.String("deadline", "", "RFC 3339 time at which the runner is stopped")
	grace := fs.Duration("grace", DefaultGrace, "time between SIGTERM and SIGKILL")
	dir := fs.String("dir", "", "working directory of the runner")
	var iso isolateArgs
	fs.IntVar(&iso.uid, "uid", 0, "run the runner as this uid")
	fs.IntVar(&iso.gid, "gid", 0, "run the runner as this gid")
	fs.StringVar(&iso.private, "private", "", "instance directory with the private tmp, var-tmp and shm")
	fs.StringVar(&iso.hostname, "hostname", "", "host name in the instance's UTS namespace")
	fs.Var(&iso.masks, "mask", "path covered by an empty read-only tmpfs (repeatable)")
	fs.Var(&iso.keepRO, "keep-ro", "path visible read-only under the masks (repeatable)")
	fs.Var(&iso.keepRW, "keep-rw", "path visible writable under the masks (repeatable)")
	fs.Var(&iso.cgroups, "cgroup", "cgroup directory to join (repeatable)")
	newNS := fs.Bool("namespaced", false, "the shim was started in new mount and PID namespaces")
	if err := fs.Parse(args); err != nil {
		return shimArgs{}, fmt.Errorf("%w: shim: %w", corral.ErrBadInput, err)
	}
	a := shimArgs{grace: *grace, dir: *dir, argv: fs.Args(), iso: iso, newNS: *newNS}
	if iso.uid < 0 || iso.gid < 0 || (iso.uid == 0) != (iso.gid == 0) {
		return shimArgs{}, fmt.Errorf("%w: shim: --uid and --gid go together and are positive", corral.ErrBadInput)
	}
	if *deadline != "" {
		t, err := time.Parse(time.RFC3339Nano, *deadline)
		if err != nil {
			return shimArgs{}, fmt.Errorf("%w: shim: --deadline: %w", corral.ErrBadInput, err)
		}
		a.deadline = t
	}
	if a.dir == "" {
		return shimArgs{}, fmt.Errorf("%w: shim: --dir is required", corral.ErrBadInput)
	}
	if len(a.argv) == 0 {
		return shimArgs{}, fmt.Errorf("%w: shim: no runner command after --", corral.ErrBadInput)
	}
	if a.grace <= 0 {
		return shimArgs{}, fmt.Errorf("%w: shim: --grace must be positive", corral.ErrBadInput)
	}
	return a, nil
}

// RunShim is the body of the hidden `corral shim` subcommand:
//
//	corral shim [--deadline RFC3339] [--grace D] [--cgroup DIR]... [isolation flags] --dir WORK -- RUNNER ARGS...
//	corral shim --probe
//
// The isolation flags (--uid, --gid, --private, --hostname, --mask,
// --keep-ro, --keep-rw; see isolate) apply only in new namespaces, where
// the shim is PID 1: elsewhere they are refused. --probe exits at once (the
// provider's test that the kernel gives namespaces).
//
// It starts the runner in its own process group with WORK as its working
// directory, forwards SIGTERM and SIGINT to that group, stops it at the
// deadline or when ctx ends (SIGTERM, then SIGKILL after the grace), reaps
// orphans (as PID 1 of a namespace, or as a child subreaper), kills what the
// runner left behind once it exits, and returns nil or an *ExitError with
// the runner's exit code (128+signal when it was killed).
func RunShim(ctx context.Context, args []string) error {
	if len(args) == 1 && args[0] == "--probe" {
		return nil // the provider checks that the shim starts in new namespaces
	}
	a, err := parseShimArgs(args)
	if err != nil {
		return err
	}
	// no_new_privs and the capability bounding set belong to a thread:
	// the runner is forked from this one, which isolate prepares.
	runtime.LockOSThread()
	if sid, err := unix.Getsid(0); err == nil && sid != os.Getpid() {
		// The provider starts the shim as a session leader; make sure
		// of it, since cleanup finds leftovers by session.
		_, _ = unix.Setsid()
	}
	if err := joinCgroups(a.iso.cgroups); err != nil {
		return err
	}
	namespaced := os.Getpid() == 1 && (a.newNS || newMountNamespace())
	switch {
	case namespaced && a.iso.isolated():
		if err := isolate(a.iso); err != nil {
			return fmt.Errorf("shim: isolate the runner: %w", err)
		}
	case a.iso.isolated():
		return fmt.Errorf("%w: shim: isolation asked for outside new namespaces", corral.ErrBadInput)
	case namespaced:
		setupMounts()
	default:
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			shimLog("cannot become child subreaper: %v", err)
		}
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	defer signal.Stop(sigs)

	path := a.argv[0]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(path); err != nil {
			return fmt.Errorf("%w: shim: %w", corral.ErrNotFound, err)
		}
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if a.iso.uid > 0 {
		sys.Credential = &syscall.Credential{Uid: uint32(a.iso.uid), Gid: uint32(a.iso.gid), Groups: []uint32{}}
	}
	pid, err := syscall.ForkExec(path, a.argv, &syscall.ProcAttr{
		Dir:   a.dir,
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		return fmt.Errorf("shim: start runner %q: %w", a.argv[0], err)
	}

	var deadlineC <-chan time.Time
	if !a.deadline.IsZero() {
		t := time.NewTimer(time.Until(a.deadline))
		defer t.Stop()
		deadlineC = t.C
	}
	tick := time.NewTicker(time.Second) // reaps even if a SIGCHLD was missed
	defer tick.Stop()
	var graceC <-chan time.Time
	done := ctx.Done()
	stop := func(why string) {
		if graceC != nil {
			return
		}
		shimLog("%s: stopping the runner", why)
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		graceC = time.After(a.grace)
	}
	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGCHLD {
				_ = syscall.Kill(-pid, s.(syscall.Signal))
				continue
			}
		case <-tick.C:
		case <-deadlineC:
			stop("deadline " + a.deadline.Format(time.RFC3339))
			continue
		case <-done:
			done = nil
			stop("shim cancelled")
			continue
		case <-graceC:
			shimLog("grace over: killing the runner")
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			continue
		}
		if code, exited := reap(pid); exited {
			cleanup(pid, namespaced)
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		}
	}
}

// reap collects every exited child. It reports the runner's exit code once
// the runner is among them.
func reap(runner int) (code int, exited bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			if errors.Is(err, syscall.ECHILD) && !exited {
				return 1, true // cannot happen: the runner is our child
			}
			return code, exited
		}
		if pid != runner {
			continue
		}
		exited = true
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		default:
			code = 1
		}
	}
}

// cleanup kills what the runner left behind. In a PID namespace the kernel
// does it when the shim, its PID 1, exits; otherwise the shim kills the
// runner's group and every other member of its own session.
func cleanup(runner int, namespaced bool) {
	_ = syscall.Kill(-runner, syscall.SIGKILL)
	if namespaced {
		return
	}
	self := os.Getpid()
	for range 50 {
		pids, err := allPids()
		if err != nil {
			return
		}
		left := 0
		for _, pid := range pids {
			if pid == self {
				continue
			}
			s, err := readStat(pid)
			if err != nil || s.dead() || s.Sid != self {
				continue
			}
			left++
			_ = signalExact(pid, s.Start, syscall.SIGKILL)
		}
		reap(0)
		if left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newMountNamespace reports whether the shim runs in another mount
// namespace than its parent. In a new PID namespace the host's /proc is
// still mounted, so /proc/self/stat gives the parent's host pid.
func newMountNamespace() bool {
	b, err := os.ReadFile(procRoot + "/self/stat")
	if err != nil {
		return false
	}
	s, err := parseStat(0, b)
	if err != nil || s.PPid <= 0 {
		return false
	}
	own, err1 := os.Readlink(procRoot + "/self/ns/mnt")
	parent, err2 := os.Readlink(procRoot + "/" + strconv.Itoa(s.PPid) + "/ns/mnt")
	return err1 == nil && err2 == nil && own != parent
}

// setupMounts makes the namespace's mounts private, so nothing propagates
// to the host, and mounts a proc that shows only the namespace's processes.
func setupMounts() {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		shimLog("cannot make mounts private, keeping the host's /proc: %v", err)
		return
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		shimLog("cannot mount proc: %v", err)
	}
}

// shimLog writes to the shim's stderr, which is the instance's runner.log.
func shimLog(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "corral-shim: "+format+"\n", args...)
}
