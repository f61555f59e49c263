package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
)

// Isolation defaults.
const (
	// DefaultUIDBase is the first host uid (and gid) given to instances:
	// instance slot n runs as DefaultUIDBase+n.
	DefaultUIDBase = 1_000_000
	// uidSlots is how many uids instances may use.
	uidSlots = 65536
	// DefaultDiskMB sizes an instance's tmpfs when its flavor names no disk.
	DefaultDiskMB = 4096
	// DefaultPidsMax caps the processes of one instance.
	DefaultPidsMax = 4096
	// cloneFlags are the namespaces of an instance: mount, PID, UTS, IPC.
	cloneFlags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
)

// Private directories inside work/.corral of an instance, bound over /tmp,
// /var/tmp and /dev/shm in the instance's mount namespace.
const privateDir = ".corral"

var privateTmp = [][2]string{{"tmp", "/tmp"}, {"var-tmp", "/var/tmp"}, {"shm", "/dev/shm"}}

// isolation is what the host allows, found once by probe.
type isolation struct {
	root       bool // corral runs as root: uids, mounts
	namespaces bool // the kernel gives new namespaces
	disk       bool // each instance gets a tmpfs of its own
	cg         cgroups
	degraded   []string
}

// Isolation says which isolation the provider gives its instances on this
// host, and what it cannot give (each a sentence for logs and health
// reports). It probes the host once.
func (p *Provider) Isolation() (summary string, degraded []string) {
	iso := p.iso()
	var on []string
	if iso.namespaces {
		on = append(on, "own mount, PID, UTS and IPC namespaces with a fresh /proc")
	}
	if iso.namespaces && iso.root {
		on = append(on, "per-instance unprivileged uid without capabilities (no_new_privs)",
			"private /tmp, /var/tmp and /dev/shm", "other instances hidden")
		if len(p.cfg.Hide) > 0 {
			on = append(on, "hidden: "+strings.Join(p.cfg.Hide, ", "))
		}
	}
	if iso.disk {
		on = append(on, "a size-limited tmpfs per instance")
	}
	if c := iso.cg.enforced(); len(c) > 0 {
		on = append(on, "cgroup "+iso.cg.version()+" limits: "+strings.Join(c, ", "))
	}
	on = append(on, "host network shared")
	return "process provider: " + strings.Join(on, "; "), append([]string(nil), iso.degraded...)
}

func (p *Provider) iso() *isolation {
	p.isoOnce.Do(func() { p.isoVal = p.probe() })
	return p.isoVal
}

// probe finds what the host allows: a shim started in new namespaces, a
// tmpfs mounted in Dir, cgroups created under corral's own.
func (p *Provider) probe() *isolation {
	iso := &isolation{root: os.Geteuid() == 0}
	if !iso.root {
		iso.degraded = append(iso.degraded, "corral does not run as root: runners run as corral's user, with its access, and no per-instance disk")
	}
	switch {
	case p.cfg.Namespaces == NamespacesOff:
		iso.degraded = append(iso.degraded, "namespaces are off by configuration: runners see the host's processes, /tmp and corral's files")
	default:
		cmd := exec.Command(p.cfg.Shim[0], append(p.cfg.Shim[1:], "--probe")...)
		cmd.Env = []string{"PATH=" + defaultPath}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags}
		err := cmd.Run()
		if err == nil {
			iso.namespaces = true
		} else {
			iso.degraded = append(iso.degraded, "the kernel refused new namespaces ("+err.Error()+"): runners see the host's processes, /tmp and corral's files")
		}
	}
	if iso.root {
		if err := probeTmpfs(p.cfg.Dir); err != nil {
			iso.degraded = append(iso.degraded, "no tmpfs per instance ("+err.Error()+"): a job can fill the disk of "+p.cfg.Dir)
		} else {
			iso.disk = true
		}
	}
	var why []string
	iso.cg, why = detectCgroups()
	iso.degraded = append(iso.degraded, why...)
	if len(iso.cg.enforced()) == 0 {
		iso.degraded = append(iso.degraded, "no cgroup limits: flavors (cpu, memory, pids) are not enforced")
	}
	return iso
}

// probePrefix names the directory probeTmpfs mounts on, followed by the
// prober's pid.
const probePrefix = ".probe-"

// probeTmpfs tries a tmpfs mount in dir. The probe's directory carries the
// prober's pid, so that the probes of processes killed in the middle (a
// short-lived garm or plugin provider process killed with corral) are
// removed, and unmounted, by the next one.
func probeTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	removeStaleProbes(dir)
	d := filepath.Join(dir, probePrefix+strconv.Itoa(os.Getpid()))
	_ = unix.Unmount(d, unix.MNT_DETACH)
	_ = os.Remove(d)
	if err := os.Mkdir(d, 0o700); err != nil {
		return err
	}
	defer os.Remove(d)
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64k,mode=0700"); err != nil {
		return err
	}
	return unix.Unmount(d, unix.MNT_DETACH)
}

// removeStaleProbes unmounts and removes the probe directories in dir of
// processes that no longer exist.
func removeStaleProbes(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), probePrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), probePrefix) || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err == nil || errors.Is(err, unix.EPERM) {
			continue // its prober may be at work
		}
		d := filepath.Join(dir, e.Name())
		_ = unix.Unmount(d, unix.MNT_DETACH)
		_ = os.Remove(d)
	}
}

// logIsolation logs the isolation once, at the first create.
func (p *Provider) logIsolation() {
	p.logOnce.Do(func() {
		summary, degraded := p.Isolation()
		p.log.Info("isolation", "summary", summary)
		for _, d := range degraded {
			p.log.Warn("isolation degraded", "reason", d)
		}
	})
}

// allocUID reserves the lowest free uid for an instance; release frees the
// reservation once the state file records it.
func (p *Provider) allocUID() (int, error) {
	used := map[int]bool{}
	entries, _ := os.ReadDir(p.cfg.Dir)
	for _, e := range entries {
		if st, err := readState(filepath.Join(p.cfg.Dir, e.Name())); err == nil && st.UID > 0 {
			used[st.UID] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid := range p.reserved {
		used[uid] = true
	}
	for n := range uidSlots {
		uid := p.cfg.UIDBase + n
		if !used[uid] {
			p.reserved[uid] = true
			return uid, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d instance uids are in use", corral.ErrUnavailable, uidSlots)
}

func (p *Provider) releaseUID(uid int) {
	p.mu.Lock()
	delete(p.reserved, uid)
	p.mu.Unlock()
}

// diskMB is the size of an instance's tmpfs.
func (p *Provider) diskMB(f corral.Flavor) int {
	if f.DiskMB > 0 && (p.cfg.DiskMB == 0 || f.DiskMB < p.cfg.DiskMB) {
		return f.DiskMB
	}
	if p.cfg.DiskMB > 0 {
		return p.cfg.DiskMB
	}
	return DefaultDiskMB
}

// logMB sizes the tmpfs of an instance directory, which holds its state
// and runner.log (so a runner that prints without end fills it, not the
// host's disk); its work directory is a tmpfs of its own.
const logMB = 64

// mountInstance mounts the instance's tmpfs on its fresh directory and the
// tmpfs of its work directory, mb MiB, in it.
func mountInstance(dir string, mb int) error {
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size="+strconv.Itoa(logMB)+"m")
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, workDir), 0o700)
	}
	if err == nil {
		err = unix.Mount("tmpfs", filepath.Join(dir, workDir), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700,size="+strconv.Itoa(mb)+"m")
	}
	if err != nil {
		return fmt.Errorf("%w: mount tmpfs on %s: %w", corral.ErrUnavailable, dir, err)
	}
	return nil
}

// unmountInstance unmounts the instance's tmpfs, if it has one.
func unmountInstance(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", dir, err)
}

// isolationArgs makes the instance's private directories, gives the
// runner's uid its work directory and returns the shim's isolation flags.
func (p *Provider) isolationArgs(spec corral.InstanceSpec, dir string, uid int, image []string) ([]string, error) {
	work := filepath.Join(dir, workDir)
	if err := chownTree(work, uid); err != nil {
		return nil, err
	}
	// The private directories share the work directory's space.
	private := filepath.Join(work, privateDir)
	if err := os.Mkdir(private, 0o711); err != nil {
		return nil, err
	}
	for _, t := range privateTmp {
		d := filepath.Join(private, t[0])
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o1777); err != nil {
			return nil, err
		}
	}
	args := []string{"--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(uid), "--private", private, "--mask", p.cfg.Dir}
	if h := spec.Name; h != "" {
		args = append(args, "--hostname", h)
	}
	for _, h := range p.cfg.Hide {
		args = append(args, "--mask", h)
	}
	for _, k := range append(image, p.cfg.Keep...) {
		if _, err := os.Stat(k); err == nil && !slices.Contains(args, k) {
			args = append(args, "--keep-ro", k)
			// The runner's uid could not pass a directory that others
			// may not search (such as /root): cover the first one with
			// a mask, in which the kept path is bound again.
			if d := closedAncestor(k); d != "" && !slices.Contains(args, d) {
				args = append(args, "--mask", d)
			}
		}
	}
	args = append(args, "--keep-rw", filepath.Join(dir, workDir))
	return args, nil
}

func chownTree(root string, uid int) error {
	return filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
}

// closedAncestor returns the first directory above path that others may
// not search, or "".
func closedAncestor(path string) string {
	dir := filepath.Dir(filepath.Clean(path))
	var chain []string
	for ; dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		chain = append(chain, dir)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		fi, err := os.Stat(chain[i])
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			return chain[i]
		}
	}
	return ""
}

// imagePaths are the paths the runner needs to see read-only: its program
// (and where a symlink leads), a directory image, a managed runner.
func imagePaths(spec corral.InstanceSpec, argv []string) []string {
	prog := argv[0]
	if r, err := filepath.EvalSymlinks(prog); err == nil {
		prog = r // a symlink is bound where it leads
	}
	out := []string{prog}
	if fi, err := os.Stat(spec.Image); err == nil && fi.IsDir() {
		out = append(out, spec.Image)
		// Links in a directory image lead to programs elsewhere.
		entries, _ := os.ReadDir(spec.Image)
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			if r, err := filepath.EvalSymlinks(filepath.Join(spec.Image, e.Name())); err == nil && !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	if spec.RunnerDir != "" && filepath.IsAbs(spec.RunnerDir) {
		out = append(out, spec.RunnerDir)
	}
	return out
}

// RemoveLeftovers removes what instances under dir left on the host
// besides their directories: the tmpfs mounts and the cgroups of every
// instance directory found there. It kills nothing: call it when no
// instance runs any more (tests, uninstalling). corral itself needs it not:
// the next start adopts and deletes what a stopped corral left.
func RemoveLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	cg, _ := detectCgroups()
	var errs []error
	for _, e := range entries {
		if checkID(e.Name()) != nil {
			continue
		}
		d := filepath.Join(dir, e.Name())
		if err := unmountInstance(d); err != nil {
			errs = append(errs, err)
		}
		if err := cg.removeTries(e.Name(), 1); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
