// Package process is the provider whose instances are child processes of
// the host: each runner runs under a small shim (`corral shim`) in a fresh
// working directory, in new mount, PID, UTS and IPC namespaces where the
// kernel allows it. Run as root, the runner is a per-instance unprivileged
// uid without capabilities, with private /tmp, /var/tmp and /dev/shm, other
// instances and the Hide paths out of sight, a tmpfs of its own and the
// flavor's cgroup limits (isolation.go, isolate.go, cgroup.go). It is for
// trusted jobs: the network and the rest of the file system are the host's.
//
// An instance lives in Dir/<instance id>/ (a 64 MiB tmpfs when root):
//
//	instance.json   state: ids, uid, shim pid and start time (written atomically)
//	work/           the runner's working directory, HOME and TMPDIR (a tmpfs
//	                of the flavor's disk when root; .corral/ holds the
//	                private /tmp, /var/tmp and /dev/shm)
//	runner.log      the shim's and the runner's stdout and stderr
//
// The shim enforces the deadline itself, so an instance dies even while
// corral is down; a new Provider on the same Dir finds the survivors through
// the state files and /proc.
package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Log keys.
const (
	keyInstance = "instance"
	keyPid      = "pid"
	keyPool     = "pool"
	keyErr      = "err"
	keyDir      = "dir"
	keyNS       = "namespaced"
)

// Namespaces modes.
const (
	NamespacesAuto = "auto"
	NamespacesOn   = "on"
	NamespacesOff  = "off"
)

const (
	// orphanAge is how old a directory without a readable start record must
	// be before List reports it: younger ones may be a Create in progress.
	orphanAge = time.Minute
	// killTimeout bounds how long Delete waits for the process tree to die.
	killTimeout = 10 * time.Second
	// exitedBuffer is the size of the Exited channel.
	exitedBuffer = 256
	defaultPath  = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Config configures a Provider.
type Config struct {
	Dir        string   // instances live in Dir/<instance id>/; absolute
	Shim       []string // argv prefix that runs the shim, e.g. {"/usr/bin/corral", "shim"}
	Namespaces string   // "auto" (default), "on" or "off"
	// Grace is how long the shim waits between SIGTERM and SIGKILL at the
	// deadline; 0 means the shim's default (10s).
	Grace time.Duration
	// Hide lists host paths that runners must not see (corral's data
	// directory): an empty read-only tmpfs covers each in the instance's
	// mount namespace. Dir is always hidden, but for the instance's own
	// work directory.
	Hide []string
	// Keep lists host paths that runners see read-only even under Hide or
	// the private /tmp (corral's binary, which the simulated runners and
	// runner scripts run).
	Keep []string
	// DiskMB caps the size of each instance's tmpfs (the flavor's disk,
	// or DefaultDiskMB when the flavor names none); 0: no cap.
	DiskMB int
	// UIDBase is the first host uid and gid of instances; 0: DefaultUIDBase.
	UIDBase int
	// PidsMax caps the processes of one instance; 0: DefaultPidsMax.
	PidsMax int
	Logger  *slog.Logger
	Clock   corral.Clock
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		errs = append(errs, fmt.Errorf("process provider: dir %q must be an absolute path", c.Dir))
	}
	if len(c.Shim) == 0 || c.Shim[0] == "" {
		errs = append(errs, errors.New("process provider: shim command is empty"))
	}
	switch c.Namespaces {
	case "", NamespacesAuto, NamespacesOn, NamespacesOff:
	default:
		errs = append(errs, fmt.Errorf("process provider: namespaces %q is not auto, on or off", c.Namespaces))
	}
	for _, h := range c.Hide {
		if !filepath.IsAbs(h) || filepath.Clean(h) == "/" {
			errs = append(errs, fmt.Errorf("process provider: hidden path %q must be an absolute path other than /", h))
		}
	}
	for _, k := range c.Keep {
		if !filepath.IsAbs(k) {
			errs = append(errs, fmt.Errorf("process provider: kept path %q must be absolute", k))
		}
	}
	if c.DiskMB < 0 || c.UIDBase < 0 || c.PidsMax < 0 {
		errs = append(errs, errors.New("process provider: negative disk, uid base or pids limit"))
	}
	if c.UIDBase > 0 && c.UIDBase < 1000 {
		errs = append(errs, fmt.Errorf("process provider: uid base %d would give instances system uids", c.UIDBase))
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("process provider: negative grace %v", c.Grace))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", corral.ErrBadInput, errors.Join(errs...))
	}
	return nil
}

// Provider runs instances as processes. It is safe for concurrent use.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	clock  corral.Clock
	exited chan string
	// noNS is set once the kernel refused namespaces in auto mode, so that
	// later creates do not try again.
	noNS atomic.Bool

	isoOnce sync.Once
	isoVal  *isolation
	logOnce sync.Once

	mu       sync.Mutex
	deleting map[string]bool // instance ids whose exit is not news
	reserved map[int]bool    // uids of instances being created
}

var (
	_ corral.Provider     = (*Provider)(nil)
	_ corral.ExitNotifier = (*Provider)(nil)
	_ corral.LogReader    = (*Provider)(nil)
)

// New validates cfg and returns a provider. It does no I/O.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Namespaces == "" {
		cfg.Namespaces = NamespacesAuto
	}
	cfg.Shim = slices.Clone(cfg.Shim)
	cfg.Hide = slices.Clone(cfg.Hide)
	cfg.Keep = slices.Clone(cfg.Keep)
	if cfg.UIDBase == 0 {
		cfg.UIDBase = DefaultUIDBase
	}
	if cfg.PidsMax == 0 {
		cfg.PidsMax = DefaultPidsMax
	}
	p := &Provider{
		cfg:      cfg,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		exited:   make(chan string, exitedBuffer),
		deleting: map[string]bool{},
		reserved: map[int]bool{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "provider/process")
	if p.clock == nil {
		p.clock = corral.SystemClock{}
	}
	return p, nil
}

// Exited reports the ids of instances started by this Provider whose shim
// exited by itself. It is buffered; when nobody reads it, ids are dropped
// and the reconciler's List finds the exits instead.
func (p *Provider) Exited() <-chan string { return p.exited }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: instance id %q is not a plain name", corral.ErrBadInput, id)
	}
	return nil
}

func createError(spec corral.InstanceSpec, err error) error {
	return &corral.CallError{Op: "process create", Target: spec.PoolID, Err: err}
}

// Create starts the instance's shim and runner and returns once the shim
// process exists and its state file is written.
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	if err := checkID(spec.InstanceID); err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	if spec.ControllerID == "" {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: empty controller id", corral.ErrBadInput))
	}
	argv, err := resolveArgv(spec.Image, spec.Bootstrap.Command)
	if err == nil {
		err = checkSpec(spec, argv)
	}
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	env, err := p.environ(spec)
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	if err := ctx.Err(); err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: %w", corral.ErrUnavailable, err))
	}
	p.logIsolation()
	iso := p.iso()
	dir := filepath.Join(p.cfg.Dir, spec.InstanceID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: instance %s exists", corral.ErrConflict, spec.InstanceID))
		}
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: %w", corral.ErrUnavailable, err))
	}
	var err2 error
	if iso.disk {
		err2 = mountInstance(dir, p.diskMB(spec.Flavor))
	}
	var inst corral.ProviderInstance
	if err2 == nil {
		inst, err2 = p.start(spec, dir, argv, env, iso)
	}
	if err2 != nil {
		if rerr := iso.cg.remove(spec.InstanceID); rerr != nil {
			p.log.Warn("remove cgroups of failed create", keyInstance, spec.InstanceID, keyErr, rerr)
		}
		if rerr := unmountInstance(dir); rerr != nil {
			p.log.Warn("unmount directory of failed create", keyInstance, spec.InstanceID, keyErr, rerr)
		}
		if rerr := removeAll(dir); rerr != nil {
			p.log.Warn("remove directory of failed create", keyInstance, spec.InstanceID, keyErr, rerr)
		}
		return corral.ProviderInstance{}, createError(spec, err2)
	}
	return inst, nil
}

// start fills the fresh instance directory dir and starts the shim.
func (p *Provider) start(spec corral.InstanceSpec, dir string, argv, env []string, iso *isolation) (corral.ProviderInstance, error) {
	isolated := iso.namespaces && iso.root
	uid := 0
	if isolated {
		var err error
		if uid, err = p.allocUID(); err != nil {
			return corral.ProviderInstance{}, err
		}
		defer p.releaseUID(uid)
	}
	st := state{
		UID:          uid,
		Version:      stateVersion,
		InstanceID:   spec.InstanceID,
		Name:         spec.Name,
		PoolID:       spec.PoolID,
		ControllerID: spec.ControllerID,
		CreatedAt:    p.clock.Now().UTC(),
	}
	// A first record without a pid, so that a crash before the shim starts
	// leaves a directory that List can attribute to its controller.
	if err := writeState(dir, st); err != nil {
		return corral.ProviderInstance{}, err
	}
	work := filepath.Join(dir, workDir)
	if err := os.Mkdir(work, 0o700); err != nil && !(iso.disk && errors.Is(err, fs.ErrExist)) {
		return corral.ProviderInstance{}, err
	}
	if err := os.Mkdir(filepath.Join(work, "tmp"), 0o700); err != nil {
		return corral.ProviderInstance{}, err
	}
	if err := writeFiles(work, spec.Bootstrap.Files); err != nil {
		return corral.ProviderInstance{}, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return corral.ProviderInstance{}, err
	}
	defer logf.Close() // the child has its own descriptor

	var cgDirs []string
	if len(iso.cg.enforced()) > 0 {
		if cgDirs, err = iso.cg.create(spec.InstanceID, spec.Flavor, p.cfg.PidsMax); err != nil {
			return corral.ProviderInstance{}, fmt.Errorf("%w: %w", corral.ErrUnavailable, err)
		}
	}
	var isoArgs []string
	if isolated {
		if isoArgs, err = p.isolationArgs(spec, dir, uid, imagePaths(spec, argv)); err != nil {
			return corral.ProviderInstance{}, err
		}
	}
	args := slices.Clone(p.cfg.Shim[1:])
	for _, c := range cgDirs {
		args = append(args, "--cgroup", c)
	}
	if !spec.Deadline.IsZero() {
		args = append(args, "--deadline", spec.Deadline.UTC().Format(time.RFC3339Nano))
	}
	if p.cfg.Grace > 0 {
		args = append(args, "--grace", p.cfg.Grace.String())
	}
	args = append(args, "--dir", work)
	// The isolation flags apply only in new namespaces.
	shimArgs := func(ns bool) []string {
		a := slices.Clone(args)
		if ns {
			a = append(append(a, "--namespaced"), isoArgs...)
		}
		return append(append(a, "--"), argv...)
	}

	cmd, namespaced, err := p.startShim(shimArgs, work, env, logf)
	if err != nil {
		return corral.ProviderInstance{}, err
	}
	pid := cmd.Process.Pid
	// The child is not reaped before Wait below, so its stat is there.
	ps, err := readStat(pid)
	if err != nil {
		p.abort(cmd, spec.InstanceID, nil)
		return corral.ProviderInstance{}, fmt.Errorf("read start time of shim %d: %w", pid, err)
	}
	st.Pid, st.StartTicks, st.Namespaced = pid, ps.Start, namespaced
	if err := writeState(dir, st); err != nil {
		p.abort(cmd, spec.InstanceID, &st)
		return corral.ProviderInstance{}, err
	}
	go p.wait(cmd, spec.InstanceID)
	p.log.Info("instance started", keyInstance, spec.InstanceID, keyPool, spec.PoolID, keyPid, pid, keyNS, namespaced)
	return corral.ProviderInstance{
		ProviderID: spec.InstanceID,
		InstanceID: spec.InstanceID,
		PoolID:     spec.PoolID,
		Running:    true,
		CreatedAt:  st.CreatedAt,
	}, nil
}

// startShim starts the shim, in new namespaces when configured and allowed.
func (p *Provider) startShim(args func(ns bool) []string, work string, env []string, logf *os.File) (*exec.Cmd, bool, error) {
	tryNS := p.cfg.Namespaces == NamespacesOn || (p.cfg.Namespaces == NamespacesAuto && !p.noNS.Load())
	for {
		cmd := exec.Command(p.cfg.Shim[0], args(tryNS)...)
		cmd.Dir = work
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if tryNS {
			cmd.SysProcAttr.Cloneflags = cloneFlags
		}
		err := cmd.Start()
		if err == nil {
			return cmd, tryNS, nil
		}
		if tryNS && p.cfg.Namespaces == NamespacesAuto &&
			(errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL)) {
			p.noNS.Store(true)
			p.log.Warn("namespaces refused by the kernel; running instances without them", keyErr, err)
			tryNS = false
			continue
		}
		return nil, false, fmt.Errorf("start shim: %w", err)
	}
}

// abort kills the tree of a shim whose start could not be recorded, and
// reaps the shim.
func (p *Provider) abort(cmd *exec.Cmd, id string, st *state) {
	_ = cmd.Process.Kill()
	if err := p.killTree(context.Background(), id, st); err != nil {
		p.log.Warn("kill instance of failed create", keyInstance, id, keyErr, err)
	}
	_ = cmd.Wait()
}

// wait reaps the shim and reports its exit.
func (p *Provider) wait(cmd *exec.Cmd, id string) {
	err := cmd.Wait()
	// Delete marks the id before it kills and removes the directory
	// before it unmarks, so a deleted instance passes one of the checks.
	p.mu.Lock()
	quiet := p.deleting[id]
	p.mu.Unlock()
	if _, err := os.Lstat(filepath.Join(p.cfg.Dir, id)); quiet || errors.Is(err, fs.ErrNotExist) {
		return
	}
	p.log.Info("instance exited", keyInstance, id, keyErr, err)
	select {
	case p.exited <- id:
	default:
		p.log.Warn("exit notification dropped: channel full", keyInstance, id)
	}
}

// resolveArgv turns a pool image and a bootstrap command into the runner's
// argv: an executable image runs with the command as its arguments; in a
// directory image the command's first word names the program inside it.
func resolveArgv(image string, command []string) ([]string, error) {
	if image == "" || !filepath.IsAbs(image) {
		return nil, fmt.Errorf("%w: image %q must be an absolute path", corral.ErrBadInput, image)
	}
	fi, err := os.Stat(image)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: image %q does not exist", corral.ErrNotFound, image)
		}
		return nil, fmt.Errorf("%w: image %q: %w", corral.ErrBadInput, image, err)
	}
	switch {
	case fi.Mode().IsRegular():
		if fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%w: image %q is not executable", corral.ErrBadInput, image)
		}
		return append([]string{image}, command...), nil
	case fi.IsDir():
		if len(command) == 0 || !filepath.IsLocal(command[0]) {
			return nil, fmt.Errorf("%w: image %q is a directory and the bootstrap command does not name a program inside it", corral.ErrBadInput, image)
		}
		prog := filepath.Join(image, command[0])
		pi, err := os.Stat(prog)
		if err != nil {
			return nil, fmt.Errorf("%w: runner program %q not found in image %q", corral.ErrNotFound, command[0], image)
		}
		if !pi.Mode().IsRegular() || pi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%w: runner program %q in image %q is not an executable file", corral.ErrBadInput, command[0], image)
		}
		return append([]string{prog}, command[1:]...), nil
	default:
		return nil, fmt.Errorf("%w: image %q is neither an executable file nor a directory", corral.ErrBadInput, image)
	}
}

// environ builds the runner's minimal environment. Bootstrap values may
// override PATH, HOME, TMPDIR and LANG, never the CORRAL_INSTANCE_* ids.
func (p *Provider) environ(spec corral.InstanceSpec) ([]string, error) {
	work := filepath.Join(p.cfg.Dir, spec.InstanceID, workDir)
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path, "HOME=" + work, "TMPDIR=" + filepath.Join(work, "tmp"), "LANG=C.UTF-8"}
	keys := make([]string, 0, len(spec.Bootstrap.Env))
	for k := range spec.Bootstrap.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !envKey.MatchString(k) {
			return nil, fmt.Errorf("%w: bootstrap env name %q", corral.ErrBadInput, k)
		}
		v := spec.Bootstrap.Env[k].Reveal()
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("%w: bootstrap env %s holds a NUL byte", corral.ErrBadInput, k)
		}
		env = append(env, k+"="+v)
	}
	env = append(env, "CORRAL_INSTANCE_ID="+spec.InstanceID, "CORRAL_INSTANCE_NAME="+spec.Name)
	return env, nil
}

// checkSpec refuses, before anything is written, what the shim could not
// start: NUL bytes in arguments or the name, file names outside work/.
func checkSpec(spec corral.InstanceSpec, argv []string) error {
	for _, a := range append([]string{spec.Name}, argv...) {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("%w: NUL byte in the instance name or runner command", corral.ErrBadInput)
		}
	}
	for name := range spec.Bootstrap.Files {
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%w: bootstrap file name %q leaves the work directory", corral.ErrBadInput, name)
		}
	}
	return nil
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// writeFiles writes the bootstrap files into work, each 0600.
func writeFiles(work string, files map[string]corral.Secret) error {
	for name, content := range files {
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%w: bootstrap file name %q leaves the work directory", corral.ErrBadInput, name)
		}
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content.Reveal()), 0o600); err != nil {
			return err
		}
	}
	return nil
}
