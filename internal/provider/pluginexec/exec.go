// Package pluginexec runs the executables of out-of-process providers
// (corral's own plugins, garm's external providers) once per command, the
// same careful way for every protocol: its own process group, only
// standard input, output and error open (every other descriptor of
// corral's is marked close-on-exec first), the environment the caller
// gives and nothing else, a hard timeout that kills the whole group, a cap
// on what it may print, and the tail of its standard error kept for
// errors. The protocol (what goes in, what comes out) is the caller's.
package pluginexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
)

const (
	// StderrTail is how much of the executable's standard error an error
	// message carries.
	StderrTail = 2048
	// waitDelay is how long Run waits, after the executable exited or was
	// killed, for its output pipes to close (a leftover child may hold
	// them).
	waitDelay = time.Second
	// DefaultPath is PATH when corral's own is empty.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Cmd is one invocation.
type Cmd struct {
	Path  string
	Args  []string
	Env   []string // the whole environment
	Stdin []byte
	// Timeout bounds the invocation; at it the process group is killed.
	Timeout time.Duration
	// MaxOutput caps standard output; an executable that prints more is
	// killed.
	MaxOutput int
}

// Result is what a finished invocation left.
type Result struct {
	Stdout []byte
	Stderr string // its tail
	// Exit is set when the executable exited non-zero or was killed by a
	// signal of its own (not by Run).
	Exit *exec.ExitError
}

// ExitCode is the exit status, 0 when it exited 0, -1 when a signal ended
// it.
func (r Result) ExitCode() int {
	if r.Exit == nil {
		return 0
	}
	return r.Exit.ExitCode()
}

// Died describes how a non-zero exit happened: "killed by <signal>" or
// "exit status <n>"; empty after exit 0.
func (r Result) Died() string {
	if r.Exit == nil {
		return ""
	}
	if ws, ok := r.Exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("exit status %d", r.Exit.ExitCode())
}

// Environ is a minimal environment: PATH (corral's, or DefaultPath) and
// the pairs given. Nothing else of corral's environment (its secrets)
// passes.
func Environ(pairs ...string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = DefaultPath
	}
	return append([]string{"PATH=" + path}, pairs...)
}

// Run runs c. A non-zero exit is no error (Result.Exit says it); the
// error, wrapping corral.ErrUnavailable, is for an executable that could
// not start, did not answer within the timeout, printed more than
// MaxOutput or whose run failed otherwise. Result.Stderr is set in every
// case where it ran.
func Run(ctx context.Context, c Cmd) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()

	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(c.Stdin)
	out := &capBuffer{n: c.MaxOutput, overC: make(chan struct{})}
	errTail := NewTailBuffer(StderrTail)
	cmd.Stdout, cmd.Stderr = out, errTail
	// Its own process group, so that a timeout kills its children too.
	// Pdeathsig: an executable still running when corral dies (SIGKILL)
	// dies with it rather than hang on forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay

	CloseInheritable()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("%w: start: %w", corral.ErrUnavailable, err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	timedOut := false
	select {
	case werr = <-done:
	case <-out.overC:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		werr = <-done
	case <-ctx.Done():
		timedOut = true
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		werr = <-done
	}
	// Whatever it left in its group dies with the invocation: instances
	// must run in their own session or group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)

	out.mu.Lock()
	over, stdout := out.over, bytes.Clone(out.b.Bytes())
	out.mu.Unlock()
	res := Result{Stdout: stdout, Stderr: errTail.String()}
	switch {
	case timedOut && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("%w: no answer within %v: killed with its process group", corral.ErrUnavailable, c.Timeout)
	case timedOut:
		return res, fmt.Errorf("%w: cancelled: killed with its process group: %w", corral.ErrUnavailable, ctx.Err())
	case over:
		return res, fmt.Errorf("%w: answer larger than max_output_bytes %d", corral.ErrUnavailable, c.MaxOutput)
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) && !errors.Is(werr, exec.ErrWaitDelay) {
		return res, fmt.Errorf("%w: %w", corral.ErrUnavailable, werr)
	}
	res.Exit = ee
	return res, nil
}

// TailBuffer keeps the last n bytes written (an executable's standard
// error); safe for concurrent writes.
type TailBuffer struct {
	mu sync.Mutex
	n  int
	b  []byte
}

// NewTailBuffer returns a TailBuffer that keeps the last n bytes.
func NewTailBuffer(n int) *TailBuffer { return &TailBuffer{n: n} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.n {
		t.b = append(t.b[:0], t.b[len(t.b)-t.n:]...)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(t.b), "?"))
}

// capBuffer keeps at most n bytes and notes that more came.
type capBuffer struct {
	mu     sync.Mutex
	n      int
	b      bytes.Buffer
	over   bool
	overC  chan struct{} // closed once over
	onceOv sync.Once
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.n - c.b.Len(); len(p) > room {
		c.over = true
		if room > 0 {
			c.b.Write(p[:room])
		}
		c.onceOv.Do(func() { close(c.overC) })
		return 0, errOutputCap
	}
	return c.b.Write(p)
}

// errOutputCap ends an executable that writes more than its cap.
var errOutputCap = errors.New("output over the cap")

// CloseInheritable marks every descriptor of corral above standard error
// close-on-exec, so that none leaks into an executable even if some code
// opened it without O_CLOEXEC (Go's fork passes on every such descriptor).
func CloseInheritable() {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
