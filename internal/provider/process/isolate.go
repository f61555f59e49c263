package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// isolateArgs are the shim's isolation flags; see Provider.isolationArgs.
type isolateArgs struct {
	uid, gid int    // run the runner as this uid and gid; 0: as the shim
	private  string // instance directory holding tmp, var-tmp and shm
	hostname string
	masks    stringList // covered by an empty read-only tmpfs
	keepRO   stringList // visible again, read-only, under the masks
	keepRW   stringList // visible again, writable, under the masks
	cgroups  stringList // cgroup directories the shim joins
}

func (a isolateArgs) isolated() bool {
	return a.uid > 0 || a.private != "" || len(a.masks) > 0 || len(a.keepRO) > 0 || len(a.keepRW) > 0
}

// joinCgroups moves the shim into the instance's cgroups, so that the
// runner and all its descendants are born in them.
func joinCgroups(dirs []string) error {
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte("0"), 0); err != nil {
			return fmt.Errorf("shim: join cgroup %s: %w", d, err)
		}
	}
	return nil
}

// keep is a path that stays visible in the instance's mount namespace.
type keep struct {
	path string
	fd   int
	dir  bool
	ro   bool
}

// isolate builds the runner's view of the file system, in the shim's own
// mount namespace (the shim is PID 1 of a new PID namespace, and root):
//   - mounts are private, so nothing propagates to the host;
//   - a fresh /proc shows only the namespace's processes; the runner, an
//     unprivileged uid without capabilities, cannot unmount it;
//   - /tmp, /var/tmp and /dev/shm are the instance's own directories;
//   - each mask (the instances directory, corral's data directory) is
//     covered by an empty read-only tmpfs, in which only the kept paths
//     (the runner's program, read-only; its work directory) are bound
//     again at their own paths.
//
// It also sets the host name, no_new_privs and an empty capability bounding
// set on the calling thread, from which the runner is forked.
func isolate(a isolateArgs) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	var keeps []keep
	defer func() {
		for _, k := range keeps {
			_ = unix.Close(k.fd)
		}
	}()
	open := func(p string, ro bool) error {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			_ = unix.Close(fd)
			return fmt.Errorf("stat %s: %w", p, err)
		}
		keeps = append(keeps, keep{path: p, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR, ro: ro})
		return nil
	}
	var privates []keep
	if a.private != "" {
		for _, t := range privateTmp {
			if err := open(filepath.Join(a.private, t[0]), false); err != nil {
				return err
			}
			k := keeps[len(keeps)-1]
			k.path = t[1]
			privates = append(privates, k)
		}
	}
	nPrivate := len(keeps)
	for _, p := range a.keepRO {
		if err := open(p, true); err != nil {
			return err
		}
	}
	for _, p := range a.keepRW {
		if err := open(p, false); err != nil {
			return err
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	for _, k := range privates {
		if _, err := os.Lstat(k.path); err != nil {
			continue // this host has no such directory
		}
		if err := bindFd(k, k.path); err != nil {
			return err
		}
	}
	masks := slices.Clone([]string(a.masks))
	slices.Sort(masks)
	var mounted []string
	for _, m := range masks {
		m = filepath.Clean(m)
		if slices.ContainsFunc(mounted, func(p string) bool { return under(m, p) }) {
			continue
		}
		if _, err := os.Lstat(m); err != nil {
			continue // not there, or hidden already (under the private /tmp)
		}
		if err := unix.Mount("tmpfs", m, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
			return fmt.Errorf("mask %s: %w", m, err)
		}
		mounted = append(mounted, m)
	}
	rest := keeps[nPrivate:]
	slices.SortFunc(rest, func(x, y keep) int { return strings.Compare(x.path, y.path) })
	for _, k := range rest {
		if err := makeTarget(k); err != nil {
			return err
		}
		if err := bindFd(k, k.path); err != nil {
			return err
		}
	}
	for _, m := range mounted {
		if err := unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return fmt.Errorf("make mask %s read-only: %w", m, err)
		}
	}
	if a.hostname != "" {
		h := a.hostname
		if len(h) > 64 {
			h = h[:64]
		}
		if err := unix.Sethostname([]byte(h)); err != nil {
			return fmt.Errorf("set host name: %w", err)
		}
	}
	return dropPrivileges()
}

// bindFd binds the file or directory open as k.fd at target.
func bindFd(k keep, target string) error {
	src := "/proc/self/fd/" + strconv.Itoa(k.fd)
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", k.path, target, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if k.ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", target, err)
	}
	return nil
}

// makeTarget makes sure that the mount point of k exists, inside a mask or
// the private /tmp.
func makeTarget(k keep) error {
	fi, err := os.Lstat(k.path)
	switch {
	case err == nil && fi.IsDir() == k.dir:
		return nil
	case err == nil:
		return fmt.Errorf("keep %s: type changed", k.path)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if k.dir {
		return os.MkdirAll(k.path, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(k.path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// dropPrivileges sets no_new_privs and empties the capability bounding set
// of the calling thread: the runner forked from it, once it runs as an
// unprivileged uid, can never gain a capability (setuid programs and file
// capabilities included).
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	last := 63
	if b, err := os.ReadFile(procRoot + "/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}
