package plugin

import (
	"bytes"
	"context"
	"encoding/json"
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
	pp "github.com/corral-ci/corral/pkg/providerplugin"
)

const (
	// StderrTail is how much of the plugin's standard error an error
	// message carries.
	StderrTail = 2048
	// waitDelay is how long corral waits, after the plugin exited or was
	// killed, for its output pipes to close (a leftover child may hold
	// them).
	waitDelay   = time.Second
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// PluginError is a failed invocation: which plugin, which command, what
// went wrong, and the end of what the plugin wrote to standard error.
type PluginError struct {
	Provider string // the provider instance's name
	Path     string
	Command  string
	Err      error
	Stderr   string // its tail
}

func (e *PluginError) Error() string {
	s := fmt.Sprintf("plugin %s (%s) %s: %v", e.Provider, e.Path, e.Command, e.Err)
	if e.Stderr != "" {
		s += "; stderr: " + strconv.Quote(e.Stderr)
	}
	return s
}

func (e *PluginError) Unwrap() error { return e.Err }

// ids are the ids an invocation carries in its environment.
type ids struct {
	controller, instance, pool string
}

// TailBuffer keeps the last N bytes written (a plugin's standard error);
// the shoes provider type uses it too.
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

// errOutputCap ends a plugin that writes more than max_output_bytes.
var errOutputCap = errors.New("output over the cap")

// run invokes the plugin for one command and returns its standard output
// when it exited 0, and the tail of its standard error. Every failure is a
// *PluginError.
func (p *Provider) run(ctx context.Context, command string, req pp.Request, id ids) ([]byte, string, error) {
	fail := func(stderr string, err error) ([]byte, string, error) {
		return nil, stderr, &PluginError{Provider: p.name, Path: p.s.Path, Command: command, Err: err, Stderr: stderr}
	}
	req.Protocol, req.Command = pp.ProtocolVersion, command
	in, err := json.Marshal(req)
	if err != nil {
		return fail("", fmt.Errorf("%w: encode request: %w", corral.ErrBadInput, err))
	}
	timeout := p.s.timeout(command)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.Command(p.s.Path, p.s.Args...)
	cmd.Env = p.environ(command, id)
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(in)
	out := &capBuffer{n: p.maxOutput(), overC: make(chan struct{})}
	errTail := NewTailBuffer(StderrTail)
	cmd.Stdout, cmd.Stderr = out, errTail
	// Its own process group, so that a timeout kills its children too.
	// Pdeathsig: a plugin still running when corral dies (SIGKILL) dies
	// with it rather than hang on forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay

	CloseInheritable()
	if err := cmd.Start(); err != nil {
		return fail("", fmt.Errorf("%w: start: %w", corral.ErrUnavailable, err))
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
	// Whatever the plugin left in its group dies with the invocation:
	// instances must run in their own session or group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)

	out.mu.Lock()
	over, stdout := out.over, bytes.Clone(out.b.Bytes())
	out.mu.Unlock()
	stderr := errTail.String()
	switch {
	case timedOut && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fail(stderr, fmt.Errorf("%w: no answer within %v: killed with its process group", corral.ErrUnavailable, timeout))
	case timedOut:
		return fail(stderr, fmt.Errorf("%w: cancelled: killed with its process group: %w", corral.ErrUnavailable, ctx.Err()))
	case over:
		return fail(stderr, fmt.Errorf("%w: answer larger than max_output_bytes %d", corral.ErrUnavailable, p.maxOutput()))
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) && !errors.Is(werr, exec.ErrWaitDelay) {
		return fail(stderr, fmt.Errorf("%w: %w", corral.ErrUnavailable, werr))
	}
	if ee != nil {
		return fail(stderr, exitError(ee, stdout))
	}
	return stdout, stderr, nil
}

// exitError explains a non-zero exit: the plugin's own error answer when it
// gave one, otherwise how it died.
func exitError(ee *exec.ExitError, stdout []byte) error {
	var r struct {
		Error *pp.Error `json:"error"`
	}
	if json.Unmarshal(stdout, &r) == nil && r.Error != nil && r.Error.Message != "" {
		return fmt.Errorf("%w: %s", kindErr(r.Error.Kind), r.Error.Message)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Errorf("%w: crashed: killed by %v", corral.ErrUnavailable, ws.Signal())
	}
	return fmt.Errorf("%w: crashed: exit status %d without an error answer", corral.ErrUnavailable, ee.ExitCode())
}

// kindErr maps an error kind to corral's errors.
func kindErr(kind string) error {
	switch kind {
	case pp.KindNotFound:
		return corral.ErrNotFound
	case pp.KindBadInput:
		return corral.ErrBadInput
	case pp.KindConflict:
		return corral.ErrConflict
	case pp.KindIncompatible:
		return errIncompatible
	default:
		return corral.ErrUnavailable
	}
}

var errIncompatible = fmt.Errorf("%w: incompatible plugin", corral.ErrBadInput)

func (p *Provider) maxOutput() int {
	if p.s.MaxOutputBytes > 0 {
		return p.s.MaxOutputBytes
	}
	return DefaultMaxOutput
}

// environ is the plugin's whole environment: PATH, the configured env and
// the protocol's variables. Nothing else of corral's environment (its
// secrets) reaches it.
func (p *Provider) environ(command string, id ids) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path}
	for k, v := range p.s.Env {
		env = append(env, k+"="+v)
	}
	return append(env,
		pp.EnvCommand+"="+command,
		pp.EnvProtocol+"="+strconv.Itoa(pp.ProtocolVersion),
		pp.EnvProviderName+"="+p.name,
		pp.EnvConfigFile+"="+p.s.ConfigFile,
		pp.EnvControllerID+"="+id.controller,
		pp.EnvInstanceID+"="+id.instance,
		pp.EnvPoolID+"="+id.pool,
	)
}

// CloseInheritable marks every descriptor of corral above standard error
// close-on-exec, so that none leaks into a plugin even if some code opened
// it without O_CLOEXEC (Go's fork passes on every such descriptor).
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
