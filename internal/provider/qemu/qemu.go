// Package qemu is the provider whose instances are virtual machines: one
// QEMU process per instance, KVM when /dev/kvm is usable and software
// emulation (TCG) otherwise. A guest is a directory that
// scripts/vm/build-guest.sh makes (kernel, busybox initramfs with corral's
// init, an empty ext4 base disk, guest.json); the pool's image names it.
//
// An instance lives in Dir/<instance id>/:
//
//	instance.json    state: ids, QEMU pid and start time, QMP path, deadline
//	overlay.qcow2    copy-on-write overlay on the guest's read-only base disk
//	scratch.qcow2    the scratch disk of workspace: encrypted (dm-crypt in
//	                 the guest under a key made there and never written)
//	bootstrap.tar    the bootstrap, handed in through fw_cfg (root-only in
//	                 the guest) and removed once QEMU has read it
//	qmp.sock         QEMU's QMP socket (clean shutdown, forced stop)
//	console.log      the guest's serial console: init's and the runner's output
//
// The runner program is not in the guest: the pool's runner (a host file
// or directory) is packed once into a tar under Dir/.runners and attached
// read-only. The network is QEMU's user mode with restrict=on: the guest
// reaches nothing but the configured forwards (guestfwd), never the host's
// other loopback services, and nothing can connect in.
package qemu

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Workspace modes (pool option workspace).
const (
	WorkspaceTmpfs     = "tmpfs"
	WorkspaceEncrypted = "encrypted"
	WorkspaceNone      = "none"
)

// Accelerators.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Machine types of x64 guests.
const (
	MachineMicrovm = "microvm"
	MachineQ35     = "q35"
)

const (
	stateFile     = "instance.json"
	overlayFile   = "overlay.qcow2"
	scratchFile   = "scratch.qcow2"
	bootstrapFile = "bootstrap.tar"
	qmpFile       = "qmp.sock"
	consoleFile   = "console.log"
	qemuLogFile   = "qemu.log"
	runnersDir    = ".runners"
	stateVersion  = 1
	// deadlineGrace is how long past its deadline a VM may live before
	// corral kills QEMU (the guest powers itself off at the deadline).
	deadlineGrace = 30 * time.Second
	qmpTimeout    = 10 * time.Second
	stopTimeout   = 10 * time.Second
	quitGrace     = 2 * time.Second // after QMP quit, before SIGKILL
	// haltGrace is how long QEMU may linger after the guest kernel said
	// it restarts or powers off before corral ends QEMU itself (seen in
	// CI: a TCG microvm guest printed "reboot: Restarting system" and
	// QEMU, started with -no-reboot, still ran two minutes later).
	haltGrace = 3 * time.Second
	// haltPoll is how often the console is read for those words.
	haltPoll     = 250 * time.Millisecond
	exitedBuffer = 256
	// guestNet is the guest side of user-mode networking; forward i is
	// reached at guestNet.(forwardBase+i).
	forwardBase = 100
)

// Forward is one host service the guest may reach: QEMU relays the guest's
// connections to Guest (an address of the guest network, a host name
// written into the guest's /etc/hosts, or a loopback address relayed
// inside the guest) to Host on the host.
type Forward struct {
	Host  string // host:port that QEMU connects to
	Guest string // host:port the guest dials; "" = Host
}

// Config configures a Provider.
type Config struct {
	Dir     string // instances live in Dir/<instance id>/; absolute
	Machine string // x64 machine type: microvm (default) or q35
	Accel   string // auto (default), kvm or tcg
	// Relay is the argv prefix of the program QEMU runs per forwarded
	// connection, with the host address appended: it copies stdin and
	// stdout to that address (`corral vm-relay`).
	Relay    []string
	Forwards []Forward
	// Runner is the runner of pools whose options name none (a host file
	// or directory, see Options.Runner).
	Runner string
	// QEMUx64, QEMUarm64 and QEMUImg name the programs (default: found on
	// PATH).
	QEMUx64, QEMUarm64, QEMUImg string
	Logger                      *slog.Logger
	Clock                       corral.Clock
}

// Options are a pool's options for the qemu provider.
type Options struct {
	// Runner is the host file or directory handed to the guest at
	// /opt/corral/runner (first on PATH). A file runs with the bootstrap
	// command as its arguments; in a directory the command names a program.
	Runner    string `yaml:"runner" json:"runner,omitempty"`
	Workspace string `yaml:"workspace" json:"workspace,omitempty"` // tmpfs (default), encrypted or none
}

// Provider runs instances as QEMU virtual machines. It is safe for
// concurrent use.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	clock  corral.Clock
	accel  string // kvm or tcg, for x64 guests
	why    string // why that accelerator
	exited chan string

	mu       sync.Mutex
	deleting map[string]bool
	runners  sync.Mutex // serializes runner tar builds
}

var (
	_ corral.Provider     = (*Provider)(nil)
	_ corral.ExitNotifier = (*Provider)(nil)
	_ corral.LogReader    = (*Provider)(nil)
)

// New validates cfg, picks the accelerator and returns a provider.
func New(cfg Config) (*Provider, error) {
	var errs []error
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		errs = append(errs, fmt.Errorf("qemu provider: dir %q must be an absolute path", cfg.Dir))
	}
	switch cfg.Machine {
	case "":
		cfg.Machine = MachineMicrovm
	case MachineMicrovm, MachineQ35:
	default:
		errs = append(errs, fmt.Errorf("qemu provider: machine %q is not microvm or q35", cfg.Machine))
	}
	switch cfg.Accel {
	case "":
		cfg.Accel = AccelAuto
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		errs = append(errs, fmt.Errorf("qemu provider: accel %q is not auto, kvm or tcg", cfg.Accel))
	}
	if len(cfg.Relay) == 0 && len(cfg.Forwards) > 0 {
		errs = append(errs, errors.New("qemu provider: forwards need a relay program"))
	}
	for i, f := range cfg.Forwards {
		if _, _, err := splitPort(f.Host); err != nil {
			errs = append(errs, fmt.Errorf("qemu provider: forwards[%d].host: %w", i, err))
		}
		if f.Guest != "" {
			if _, _, err := splitPort(f.Guest); err != nil {
				errs = append(errs, fmt.Errorf("qemu provider: forwards[%d].guest: %w", i, err))
			}
		}
	}
	if cfg.Runner != "" && !filepath.IsAbs(cfg.Runner) {
		errs = append(errs, fmt.Errorf("qemu provider: runner %q must be an absolute path", cfg.Runner))
	}
	if len(cfg.Forwards) > 100 {
		errs = append(errs, errors.New("qemu provider: at most 100 forwards"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", corral.ErrBadInput, errors.Join(errs...))
	}
	cfg.Relay = slices.Clone(cfg.Relay)
	cfg.Forwards = slices.Clone(cfg.Forwards)
	for name, def := range map[*string]string{&cfg.QEMUx64: "qemu-system-x86_64", &cfg.QEMUarm64: "qemu-system-aarch64", &cfg.QEMUImg: "qemu-img"} {
		if *name == "" {
			*name = def
		}
	}
	p := &Provider{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, exited: make(chan string, exitedBuffer), deleting: map[string]bool{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "provider/qemu")
	if p.clock == nil {
		p.clock = corral.SystemClock{}
	}
	p.accel, p.why = pickAccel(cfg.Accel)
	p.log.Info("qemu provider accelerator", "accel", p.accel, "reason", p.why, "machine", cfg.Machine)
	return p, nil
}

// pickAccel chooses KVM when /dev/kvm opens read-write, else TCG.
func pickAccel(want string) (string, string) {
	if want == AccelTCG {
		return AccelTCG, "configured"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err == nil {
		_ = f.Close()
		return AccelKVM, "/dev/kvm is usable"
	}
	if want == AccelKVM {
		return AccelKVM, "configured, but /dev/kvm: " + err.Error()
	}
	return AccelTCG, "software emulation: /dev/kvm: " + err.Error()
}

// Accel returns the accelerator x64 guests use (kvm or tcg) and why.
func (p *Provider) Accel() (string, string) { return p.accel, p.why }

// Describe says how the provider runs VMs (shown in /readyz).
func (p *Provider) Describe() string {
	return fmt.Sprintf("qemu: x64 guests on %s with accel %s (%s); arm64 guests emulated (tcg)", p.cfg.Machine, p.accel, p.why)
}

// Exited reports the ids of instances of this Provider whose VM stopped by
// itself (runner exit, lifetime over).
func (p *Provider) Exited() <-chan string { return p.exited }

// state is instance.json.
type state struct {
	Version      int       `json:"version"`
	InstanceID   string    `json:"instance_id"`
	Name         string    `json:"name"`
	PoolID       string    `json:"pool_id"`
	ControllerID string    `json:"controller_id"`
	CreatedAt    time.Time `json:"created_at"`
	Deadline     time.Time `json:"deadline,omitzero"`
	Arch         string    `json:"arch"`
	Workspace    string    `json:"workspace"`
	Pid          int       `json:"pid,omitempty"`
	StartTicks   uint64    `json:"start_ticks,omitempty"` // /proc/PID/stat field 22: never trust a reused pid
	QMP          string    `json:"qmp"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func createError(spec corral.InstanceSpec, err error) error {
	return &corral.CallError{Op: "qemu create", Target: spec.PoolID, Err: err}
}

// guest is a guest directory's description (guest.json).
type guest struct {
	Dir       string
	Arch      string `json:"arch"`
	Encrypted bool   `json:"encrypted"`
}

func loadGuest(dir string) (guest, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return guest{}, fmt.Errorf("%w: image %q must be the absolute path of a guest directory (scripts/vm/build-guest.sh prints one)", corral.ErrBadInput, dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "guest.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return guest{}, fmt.Errorf("%w: image %q: no guest there (want a directory with guest.json, vmlinuz, initrd.img and base.qcow2 from scripts/vm/build-guest.sh)", corral.ErrNotFound, dir)
	}
	if err != nil {
		return guest{}, fmt.Errorf("%w: image %q: %w", corral.ErrBadInput, dir, err)
	}
	g := guest{Dir: dir}
	if err := json.Unmarshal(b, &g); err != nil {
		return guest{}, fmt.Errorf("%w: image %q: guest.json: %w", corral.ErrBadInput, dir, err)
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "base.qcow2"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return guest{}, fmt.Errorf("%w: image %q lacks %s", corral.ErrNotFound, dir, f)
		}
	}
	return g, nil
}

// Create boots the instance's VM and returns once QEMU runs and has read
// the bootstrap (whose host copy is then removed).
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	if !idPattern.MatchString(spec.InstanceID) {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: instance id %q is not a plain name", corral.ErrBadInput, spec.InstanceID))
	}
	if spec.ControllerID == "" {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: empty controller id", corral.ErrBadInput))
	}
	var opt Options
	if len(spec.Options) > 0 && string(spec.Options) != "null" {
		d := json.NewDecoder(bytes.NewReader(spec.Options))
		d.DisallowUnknownFields()
		if err := d.Decode(&opt); err != nil {
			return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: pool options: %w", corral.ErrBadInput, err))
		}
	}
	if err := opt.check(); err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	if opt.Workspace == "" {
		opt.Workspace = WorkspaceTmpfs
	}
	if opt.Runner == "" {
		opt.Runner = p.cfg.Runner
	}
	g, err := loadGuest(spec.Image)
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	arch := spec.Flavor.Arch
	if arch == "" {
		arch = "x64"
	}
	if arch != g.Arch {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: the pool's arch %s does not match guest %q (arch %s)", corral.ErrBadInput, arch, spec.Image, g.Arch))
	}
	if opt.Workspace == WorkspaceEncrypted && !g.Encrypted {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: guest %q has no dm-crypt tools: workspace encrypted is not available with it", corral.ErrBadInput, spec.Image))
	}
	boot, err := bootstrapTar(spec, opt, p.cfg.Forwards, p.clock.Now())
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	var runnerTar string
	if opt.Runner != "" {
		if runnerTar, err = p.runnerTar(opt.Runner); err != nil {
			return corral.ProviderInstance{}, createError(spec, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	if err := os.MkdirAll(p.cfg.Dir, 0o700); err != nil {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: %w", corral.ErrUnavailable, err))
	}
	dir := filepath.Join(p.cfg.Dir, spec.InstanceID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: instance %s exists", corral.ErrConflict, spec.InstanceID))
		}
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: %w", corral.ErrUnavailable, err))
	}
	inst, err := p.start(ctx, spec, opt, g, dir, boot, runnerTar)
	if err != nil {
		p.destroy(spec.InstanceID)
		return corral.ProviderInstance{}, createError(spec, err)
	}
	return inst, nil
}

func (o Options) check() error {
	switch o.Workspace {
	case "", WorkspaceTmpfs, WorkspaceEncrypted, WorkspaceNone:
	default:
		return fmt.Errorf("%w: pool option workspace %q: want tmpfs, encrypted or none", corral.ErrBadInput, o.Workspace)
	}
	if o.Runner != "" && !filepath.IsAbs(o.Runner) {
		return fmt.Errorf("%w: pool option runner %q must be an absolute path", corral.ErrBadInput, o.Runner)
	}
	return nil
}

func (p *Provider) start(ctx context.Context, spec corral.InstanceSpec, opt Options, g guest, dir string, boot []byte, runnerTar string) (corral.ProviderInstance, error) {
	st := state{
		Version: stateVersion, InstanceID: spec.InstanceID, Name: spec.Name, PoolID: spec.PoolID,
		ControllerID: spec.ControllerID, CreatedAt: p.clock.Now().UTC(), Deadline: spec.Deadline.UTC(),
		Arch: g.Arch, Workspace: opt.Workspace, QMP: filepath.Join(dir, qmpFile),
	}
	// A first record without a pid, so that a crash before QEMU starts
	// leaves a directory that List attributes to its controller.
	if err := writeState(dir, st); err != nil {
		return corral.ProviderInstance{}, err
	}
	diskMB := spec.Flavor.DiskMB
	if diskMB <= 0 {
		diskMB = 1024
	}
	overlay := filepath.Join(dir, overlayFile)
	if err := p.qemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(g.Dir, "base.qcow2"), overlay); err != nil {
		return corral.ProviderInstance{}, err
	}
	scratch := ""
	if opt.Workspace == WorkspaceEncrypted {
		scratch = filepath.Join(dir, scratchFile)
		if err := p.qemuImg(ctx, "create", "-q", "-f", "qcow2", scratch, strconv.Itoa(diskMB)+"M"); err != nil {
			return corral.ProviderInstance{}, err
		}
	}
	bootPath := filepath.Join(dir, bootstrapFile)
	if err := os.WriteFile(bootPath, boot, 0o600); err != nil {
		return corral.ProviderInstance{}, err
	}
	defer os.Remove(bootPath) // QEMU holds it in memory once started
	bin, args := p.command(spec, g, dir, overlay, scratch, runnerTar, bootPath)
	logf, err := os.OpenFile(filepath.Join(dir, qemuLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return corral.ProviderInstance{}, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return corral.ProviderInstance{}, fmt.Errorf("%w: %s: %w (apt-get install qemu-system-x86 qemu-system-arm)", corral.ErrUnavailable, bin, err)
		}
		return corral.ProviderInstance{}, fmt.Errorf("start %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	ticks, err := startTicks(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return corral.ProviderInstance{}, fmt.Errorf("read start time of QEMU %d: %w", pid, err)
	}
	st.Pid, st.StartTicks = pid, ticks
	if err := writeState(dir, st); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return corral.ProviderInstance{}, err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	// QEMU answers QMP once the machine is built, that is after it read
	// the bootstrap; then the host copy goes.
	if err := p.waitQMP(ctx, st.QMP, waited); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-waited
		b, _ := os.ReadFile(filepath.Join(dir, qemuLogFile))
		return corral.ProviderInstance{}, fmt.Errorf("%w: QEMU did not start: %w: %s", corral.ErrUnavailable, err, strings.TrimSpace(string(b)))
	}
	_ = os.Remove(bootPath)
	exited := make(chan struct{})
	go p.watch(spec.InstanceID, waited, exited)
	go p.watchHalt(st, filepath.Join(dir, consoleFile), exited)
	p.log.Info("instance started", "instance", spec.InstanceID, "pool", spec.PoolID, "pid", pid, "accel", p.accelFor(g.Arch), "arch", g.Arch, "workspace", opt.Workspace)
	return corral.ProviderInstance{ProviderID: spec.InstanceID, InstanceID: spec.InstanceID, PoolID: spec.PoolID, Running: true, CreatedAt: st.CreatedAt}, nil
}

func (p *Provider) waitQMP(ctx context.Context, sock string, waited chan error) error {
	end := time.Now().Add(qmpTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			if err := qmp(sock, "query-status", 2*time.Second); err == nil {
				return nil
			}
		}
		select {
		case err := <-waited:
			waited <- err
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(end) {
			return fmt.Errorf("no QMP answer within %v", qmpTimeout)
		}
	}
}

// watch reaps QEMU and reports an exit that no Delete asked for.
func (p *Provider) watch(id string, waited chan error, exited chan struct{}) {
	err := <-waited
	close(exited)
	p.mu.Lock()
	quiet := p.deleting[id]
	p.mu.Unlock()
	if _, serr := os.Lstat(filepath.Join(p.cfg.Dir, id)); quiet || errors.Is(serr, fs.ErrNotExist) {
		return
	}
	p.log.Info("instance stopped", "instance", id, "err", err)
	select {
	case p.exited <- id:
	default:
	}
}

// haltMarkers are the guest kernel's last words before it resets or
// powers off the machine (kernel/reboot.c). Only root in the guest can
// write to the console; a guest that prints them ends only itself.
var haltMarkers = [][]byte{[]byte("reboot: Restarting system"), []byte("reboot: Power down"), []byte("reboot: System halted")}

// watchHalt ends QEMU when the guest has halted but QEMU did not exit
// within haltGrace: the instance must stop being listed as running
// whatever the guest's firmware does with the reset. It reads only what
// the console gained since the last look, and returns when QEMU exits.
func (p *Provider) watchHalt(st state, console string, exited chan struct{}) {
	var off int64
	var tail []byte // the end of the last read, for a marker split over reads
	t := time.NewTicker(haltPoll)
	defer t.Stop()
	for {
		select {
		case <-exited:
			return
		case <-t.C:
		}
		f, err := os.Open(console)
		if err != nil {
			return // deleted
		}
		b, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<20))
		f.Close()
		off += int64(len(b))
		buf := append(tail, b...)
		halted := false
		for _, m := range haltMarkers {
			if bytes.Contains(buf, m) {
				halted = true
			}
		}
		if n := len(buf); n > 64 {
			buf = buf[n-64:]
		}
		tail = append([]byte(nil), buf...)
		if !halted {
			continue
		}
		select {
		case <-exited:
			return
		case <-time.After(haltGrace):
		}
		p.mu.Lock()
		deleting := p.deleting[st.InstanceID]
		p.mu.Unlock()
		if deleting || !alive(st) {
			return
		}
		p.log.Warn("guest halted but QEMU still runs; ending it", "instance", st.InstanceID, "pid", st.Pid, "grace", haltGrace)
		if err := p.stop(context.Background(), st); err != nil {
			p.log.Error("end QEMU of halted guest", "instance", st.InstanceID, "err", err)
		}
		return
	}
}

func (p *Provider) accelFor(arch string) string {
	if arch == "arm64" {
		return AccelTCG
	}
	return p.accel
}

// command builds QEMU's command line. Nothing secret is on it: the
// bootstrap is a file that fw_cfg hands in.
func (p *Provider) command(spec corral.InstanceSpec, g guest, dir, overlay, scratch, runnerTar, bootPath string) (string, []string) {
	cpus := max(spec.Flavor.CPU, 1)
	mem := spec.Flavor.MemoryMB
	if mem <= 0 {
		mem = 512
	}
	mem = max(mem, 192)
	accel := p.accelFor(g.Arch)
	bin := p.cfg.QEMUx64
	var args []string
	cmdline := "quiet panic=-1 loglevel=1"
	dev := "device" // virtio over MMIO
	switch {
	case g.Arch == "arm64":
		bin = p.cfg.QEMUarm64
		args = append(args, "-M", "virt", "-cpu", "cortex-a57")
		cmdline = "console=ttyAMA0 " + cmdline
	case p.cfg.Machine == MachineQ35:
		args = append(args, "-M", "q35")
		cmdline = "console=ttyS0 " + cmdline
		dev = "pci"
	default:
		args = append(args, "-M", "microvm,x-option-roms=off,rtc=on")
		cmdline = "console=ttyS0 " + cmdline
		if accel == AccelTCG {
			if khz := hostKHz(); khz > 0 {
				cmdline += fmt.Sprintf(" tsc_early_khz=%d tsc=reliable", khz)
			}
		}
	}
	if accel == AccelKVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg")
		if g.Arch != "arm64" {
			args = append(args, "-cpu", "max")
		}
	}
	args = append(args,
		"-name", "corral-"+spec.InstanceID,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-kernel", filepath.Join(g.Dir, "vmlinuz"), "-initrd", filepath.Join(g.Dir, "initrd.img"),
		"-append", cmdline,
		"-chardev", "file,id=con,path="+qarg(filepath.Join(dir, consoleFile)), "-serial", "chardev:con",
		"-qmp", "unix:"+qarg(filepath.Join(dir, qmpFile))+",server=on,wait=off",
		"-fw_cfg", "name=opt/corral/bootstrap,file="+qarg(bootPath),
		"-netdev", p.netdev(), "-device", "virtio-net-"+dev+",netdev=n0",
		"-drive", "file="+qarg(overlay)+",if=none,id=disk,format=qcow2,discard=unmap",
		"-device", "virtio-blk-"+dev+",drive=disk,serial=corral-disk",
	)
	if scratch != "" {
		args = append(args, "-drive", "file="+qarg(scratch)+",if=none,id=scratch,format=qcow2,discard=unmap",
			"-device", "virtio-blk-"+dev+",drive=scratch,serial=corral-scratch")
	}
	if runnerTar != "" {
		args = append(args, "-drive", "file="+qarg(runnerTar)+",if=none,id=runner,format=raw,readonly=on",
			"-device", "virtio-blk-"+dev+",drive=runner,serial=corral-runner")
	}
	return bin, args
}

// netdev is user-mode networking restricted to the forwards.
func (p *Provider) netdev() string {
	s := "user,id=n0,restrict=on"
	for i, f := range p.cfg.Forwards {
		_, port, _ := splitPort(guestAddr(f))
		relay := make([]string, 0, len(p.cfg.Relay)+1)
		for _, a := range append(slices.Clone(p.cfg.Relay), f.Host) {
			relay = append(relay, shellQuote(a))
		}
		s += fmt.Sprintf(",guestfwd=tcp:10.0.2.%d:%s-cmd:%s", forwardBase+i, port, qarg(strings.Join(relay, " ")))
	}
	return s
}

func guestAddr(f Forward) string {
	if f.Guest != "" {
		return f.Guest
	}
	return f.Host
}

// qarg escapes a value of a QEMU option list (commas double).
func qarg(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func splitPort(addr string) (string, string, error) {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%q: want HOST:PORT: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: port %q is not 1-65535", addr, port)
	}
	return h, port, nil
}

// hostKHz is the host's CPU clock in kHz (the TSC frequency a microvm guest
// under TCG is told, or its boot may hang calibrating).
func hostKHz() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(mhz * 1000)
			}
		}
	}
	return 0
}

func (p *Provider) qemuImg(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, p.cfg.QEMUImg, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: qemu-img %s: %w: %s", corral.ErrUnavailable, args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// bootstrapTar packs what the guest init reads from fw_cfg: config (shell
// assignments of plain values), hosts, argv/NNN, env/NAME, files/PATH.
func bootstrapTar(spec corral.InstanceSpec, opt Options, fwd []Forward, now time.Time) ([]byte, error) {
	if len(spec.Bootstrap.Command) == 0 {
		return nil, fmt.Errorf("%w: empty bootstrap command", corral.ErrBadInput)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: now}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	argv := slices.Clone(spec.Bootstrap.Command)
	if opt.Runner != "" {
		if fi, err := os.Stat(opt.Runner); err == nil && fi.Mode().IsRegular() {
			argv = append([]string{"/opt/corral/runner/" + filepath.Base(opt.Runner)}, argv...)
		}
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("%w: NUL byte in the runner command", corral.ErrBadInput)
		}
		if err := add(fmt.Sprintf("argv/%03d", i), []byte(a)); err != nil {
			return nil, err
		}
	}
	env := map[string]string{"CORRAL_INSTANCE_ID": spec.InstanceID, "CORRAL_INSTANCE_NAME": spec.Name}
	for k, v := range spec.Bootstrap.Env {
		if !envKey.MatchString(k) || strings.HasPrefix(k, "CORRAL_INSTANCE_") {
			return nil, fmt.Errorf("%w: bootstrap env name %q", corral.ErrBadInput, k)
		}
		if strings.IndexByte(v.Reveal(), 0) >= 0 {
			return nil, fmt.Errorf("%w: bootstrap env %s holds a NUL byte", corral.ErrBadInput, k)
		}
		env[k] = v.Reveal()
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := add("env/"+k, []byte(env[k])); err != nil {
			return nil, err
		}
	}
	for name, content := range spec.Bootstrap.Files {
		if !filepath.IsLocal(name) {
			return nil, fmt.Errorf("%w: bootstrap file name %q leaves the work directory", corral.ErrBadInput, name)
		}
		if err := add("files/"+filepath.ToSlash(filepath.Clean(name)), []byte(content.Reveal())); err != nil {
			return nil, err
		}
	}
	diskMB := spec.Flavor.DiskMB
	if diskMB <= 0 {
		diskMB = 1024
	}
	if opt.Workspace == WorkspaceTmpfs {
		// A tmpfs lives in the guest's RAM: leave room for the rest.
		diskMB = min(diskMB, max(spec.Flavor.MemoryMB/2, 64))
	}
	conf := fmt.Sprintf("WORKSPACE=%s\nDISK_MB=%d\n", opt.Workspace, diskMB)
	if !spec.Deadline.IsZero() {
		conf += fmt.Sprintf("LIFETIME=%d\n", max(int(spec.Deadline.Sub(now).Seconds()), 0))
	}
	var hosts, relays []string
	for i, f := range fwd {
		ip := fmt.Sprintf("10.0.2.%d", forwardBase+i)
		h, port, _ := splitPort(guestAddr(f))
		switch a := net.ParseIP(h); {
		case a != nil && a.IsLoopback():
			relays = append(relays, port+":"+ip)
		case a == nil:
			hosts = append(hosts, ip+" "+h)
		}
	}
	if len(relays) > 0 {
		conf += "RELAYS='" + strings.Join(relays, " ") + "'\n"
	}
	if err := add("config", []byte(conf)); err != nil {
		return nil, err
	}
	if len(hosts) > 0 {
		if err := add("hosts", []byte(strings.Join(hosts, "\n")+"\n")); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// runnerTar packs the runner (file or directory) into Dir/.runners once
// per content version and returns the tar's path. Tars are whole 512-byte
// blocks: the guest reads one as a raw disk.
func (p *Provider) runnerTar(src string) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: runner %q does not exist", corral.ErrNotFound, src)
		}
		return "", fmt.Errorf("%w: runner %q: %w", corral.ErrBadInput, src, err)
	}
	type entry struct {
		rel string
		fi  fs.FileInfo
		abs string
	}
	var entries []entry
	if fi.Mode().IsRegular() {
		entries = append(entries, entry{filepath.Base(src), fi, src})
	} else if fi.IsDir() {
		err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path == src {
				return nil
			}
			i, err := os.Stat(path) // follows links
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, path)
			entries = append(entries, entry{filepath.ToSlash(rel), i, path})
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("%w: runner %q: %w", corral.ErrBadInput, src, err)
		}
	} else {
		return "", fmt.Errorf("%w: runner %q is neither a file nor a directory", corral.ErrBadInput, src)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", src)
	for _, e := range entries {
		fmt.Fprintf(h, "%s %d %d %o\n", e.rel, e.fi.Size(), e.fi.ModTime().UnixNano(), e.fi.Mode())
	}
	name := filepath.Join(p.cfg.Dir, runnersDir, hex.EncodeToString(h.Sum(nil))[:24]+".tar")
	p.runners.Lock()
	defer p.runners.Unlock()
	now := time.Now()
	if _, err := os.Stat(name); err == nil {
		_ = os.Chtimes(name, now, now) // in use: not pruned
		return name, nil
	}
	p.pruneRunners(now)
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return "", fmt.Errorf("%w: %w", corral.ErrUnavailable, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "tmp-*")
	if err != nil {
		return "", fmt.Errorf("%w: %w", corral.ErrUnavailable, err)
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.rel, Mode: int64(e.fi.Mode().Perm()), ModTime: e.fi.ModTime(), Uid: 0, Gid: 0}
		if e.fi.IsDir() {
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.rel+"/"
			if err := tw.WriteHeader(hdr); err != nil {
				return "", err
			}
			continue
		}
		if !e.fi.Mode().IsRegular() {
			continue
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.fi.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return "", err
		}
		f, err := os.Open(e.abs)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(tw, f)
		_ = f.Close()
		if err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return "", err
	}
	return name, nil
}

// runnerKeep is how long a runner tar no Create used stays in Dir/.runners.
const runnerKeep = 24 * time.Hour

// pruneRunners removes runner tars unused for runnerKeep (older versions
// of a runner). A VM still running from one keeps its open file.
func (p *Provider) pruneRunners(now time.Time) {
	ents, _ := os.ReadDir(filepath.Join(p.cfg.Dir, runnersDir))
	for _, e := range ents {
		fi, err := e.Info()
		if err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > runnerKeep {
			_ = os.Remove(filepath.Join(p.cfg.Dir, runnersDir, e.Name()))
		}
	}
}

func writeState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func readState(dir string) (state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, err
	}
	return st, nil
}

// startTicks is field 22 of /proc/PID/stat: the process's start time, so
// that a pid reused by another process is never taken for QEMU.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, errors.New("zombie")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the state's QEMU still runs.
func alive(st state) bool {
	if st.Pid <= 0 {
		return false
	}
	t, err := startTicks(st.Pid)
	return err == nil && t == st.StartTicks
}

// Delete stops the VM (QMP quit, then SIGKILL) and removes the instance
// directory: overlay, scratch disk, sockets, logs.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	id := inst.ProviderID
	if id == "" {
		id = inst.InstanceID
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: instance id %q is not a plain name", corral.ErrBadInput, id)
	}
	p.mu.Lock()
	p.deleting[id] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.deleting, id)
		p.mu.Unlock()
	}()
	dir := filepath.Join(p.cfg.Dir, id)
	st, err := readState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Lstat(dir); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
	}
	if err == nil {
		if err := p.stop(ctx, st); err != nil {
			return &corral.CallError{Op: "qemu delete", Target: id, Err: err}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return &corral.CallError{Op: "qemu delete", Target: id, Err: err}
	}
	p.log.Info("instance deleted", "instance", id)
	return nil
}

// stop ends the state's QEMU: QMP quit, SIGKILL when that does not do
// it in time.
func (p *Provider) stop(ctx context.Context, st state) error {
	if !alive(st) {
		return nil
	}
	if err := qmp(st.QMP, "quit", 3*time.Second); err != nil {
		p.log.Debug("qmp quit failed; killing QEMU", "instance", st.InstanceID, "err", err)
	}
	start := time.Now()
	killed := false
	for alive(st) {
		if !killed && time.Since(start) > quitGrace {
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
			killed = true
		}
		if time.Since(start) > stopTimeout {
			return fmt.Errorf("QEMU %d survived SIGKILL", st.Pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// PowerDown asks the guest to shut down cleanly (ACPI power button).
func (p *Provider) PowerDown(inst corral.ProviderInstance) error {
	st, err := readState(filepath.Join(p.cfg.Dir, inst.ProviderID))
	if err != nil {
		return err
	}
	return qmp(st.QMP, "system_powerdown", qmpTimeout)
}

// List returns the controller's instances, running or stopped. It also
// kills any VM past its deadline by more than deadlineGrace (the guest
// should have powered off by itself).
func (p *Provider) List(ctx context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	ents, err := os.ReadDir(p.cfg.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &corral.CallError{Op: "qemu list", Target: p.cfg.Dir, Err: err}
	}
	var out []corral.ProviderInstance
	now := p.clock.Now()
	for _, e := range ents {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		st, err := readState(filepath.Join(p.cfg.Dir, e.Name()))
		if err != nil || st.ControllerID != controllerID {
			continue
		}
		running := alive(st)
		if running && !st.Deadline.IsZero() && now.After(st.Deadline.Add(deadlineGrace)) {
			p.log.Warn("VM outlived its deadline; killing QEMU", "instance", st.InstanceID, "pid", st.Pid)
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
			running = false
		}
		out = append(out, corral.ProviderInstance{ProviderID: st.InstanceID, InstanceID: st.InstanceID,
			PoolID: st.PoolID, Running: running, CreatedAt: st.CreatedAt})
	}
	return out, ctx.Err()
}

// RunnerLog returns the end of the guest's console (init's and the
// runner's output).
func (p *Provider) RunnerLog(_ context.Context, inst corral.ProviderInstance, maxBytes int) (string, error) {
	f, err := os.Open(filepath.Join(p.cfg.Dir, inst.ProviderID, consoleFile))
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-int64(maxBytes), 0)
	b := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return string(b[:n]), nil
}

// destroy removes what a failed Create left.
func (p *Provider) destroy(id string) {
	dir := filepath.Join(p.cfg.Dir, id)
	if st, err := readState(dir); err == nil {
		_ = p.stop(context.Background(), st)
	}
	if err := os.RemoveAll(dir); err != nil {
		p.log.Warn("remove directory of failed create", "instance", id, "err", err)
	}
}

// InstanceDir is where an instance's files live (tests search it).
func (p *Provider) InstanceDir(id string) string { return filepath.Join(p.cfg.Dir, id) }
