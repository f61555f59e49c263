// Package dockertest gives tests a Docker Engine and tiny images for it.
//
// The engine is either the one named by the environment variable
// CORRAL_TEST_DOCKER_HOST (e.g. started by .ci/run) or one private daemon
// per test process, started from the dockerd binary in a short temporary
// directory (no bridge, no iptables, its own data and exec roots). Call Main
// from TestMain so that the private daemon is stopped when the tests end.
//
// No image can be pulled on the project's machines: Image builds images FROM
// scratch out of Debian's busybox-static and the files a test gives.
package dockertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// EnvHost names the environment variable holding the endpoint of a running
// Docker Engine (unix:///...); when set, no daemon is started for Socket.
const EnvHost = "CORRAL_TEST_DOCKER_HOST"

// ErrNoDocker: dockerd is not installed or cannot run here (not root).
var ErrNoDocker = errors.New("dockertest: no dockerd binary in PATH or not running as root (apt-get install -y docker.io)")

// ErrNoBusybox: Debian's busybox-static is not installed.
var ErrNoBusybox = errors.New("dockertest: no " + Busybox + " (apt-get install -y busybox-static)")

// Daemon is a private Docker daemon for tests: no bridge, no iptables, its
// data root and exec root in its own directory.
type Daemon struct {
	dir  string
	cmd  *exec.Cmd
	exit chan struct{} // closed when dockerd has ended
	werr error         // Wait's error, valid after exit is closed

	stopOnce sync.Once
	stopErr  error
}

// StartDaemon starts dockerd with its socket, data root, exec root and pid
// file in a new short directory under /tmp (unix socket paths are limited
// to about 100 bytes) and returns when the engine answers a ping.
func StartDaemon() (*Daemon, error) {
	bin, err := exec.LookPath("dockerd")
	if err != nil || os.Geteuid() != 0 {
		return nil, ErrNoDocker
	}
	dir, err := os.MkdirTemp("/tmp", "cdk-")
	if err != nil {
		return nil, fmt.Errorf("dockertest: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("dockertest: %w", err)
	}
	defer logf.Close()
	d := &Daemon{dir: dir, exit: make(chan struct{})}
	d.cmd = exec.Command(bin,
		"--host", d.Host(),
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		"--userland-proxy=false", "--log-level=warn")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// If the test process dies without Stop, take the daemon down with it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("dockertest: start dockerd: %w", err)
	}
	go func() { d.werr = d.cmd.Wait(); close(d.exit) }()
	if err := d.waitReady(); err != nil {
		_ = d.Stop()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) waitReady() error {
	c, err := client.New(client.WithHost(d.Host()))
	if err != nil {
		return fmt.Errorf("dockertest: %w", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		_, err := c.Ping(ctx, client.PingOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-d.exit:
			log, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
			return fmt.Errorf("dockertest: dockerd exited: %v\n%s", d.werr, log)
		case <-ctx.Done():
			return fmt.Errorf("dockertest: dockerd did not answer: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Host is the daemon's endpoint, unix://DIR/docker.sock.
func (d *Daemon) Host() string { return "unix://" + filepath.Join(d.dir, "docker.sock") }

// DataRoot is the daemon's data root (containers, volumes, layers).
func (d *Daemon) DataRoot() string { return filepath.Join(d.dir, "data") }

// Pid is dockerd's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop stops the daemon by its pid (SIGTERM; SIGKILL after 30 s), waits
// for it to exit and removes its directory. dockerd kills its containers
// and its containerd as it stops. Stop is idempotent.
func (d *Daemon) Stop() error {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exit:
		case <-time.After(30 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exit
			d.stopErr = errors.New("dockertest: dockerd did not stop in time; killed")
		}
		// A container shim that outlived its daemon (a test killed in
		// the middle) still runs under this directory: stop it too.
		killUnder(d.dir)
		// dockerd leaves mounts behind (e.g. exec/netns/default for the
		// host network): detach them before removing the directory.
		if err := unmountUnder(d.dir); err != nil {
			d.stopErr = errors.Join(d.stopErr, err)
		}
		if err := os.RemoveAll(d.dir); err != nil {
			d.stopErr = errors.Join(d.stopErr, fmt.Errorf("dockertest: remove %s: %w", d.dir, err))
		}
	})
	return d.stopErr
}

var shared struct {
	once   sync.Once
	host   string
	daemon *Daemon // nil when EnvHost is used
	err    error
}

func sharedHost() (string, error) {
	shared.once.Do(func() {
		if h := os.Getenv(EnvHost); h != "" {
			shared.host = h
			return
		}
		shared.daemon, shared.err = StartDaemon()
		if shared.err == nil {
			shared.host = shared.daemon.Host()
		}
	})
	return shared.host, shared.err
}

// skipOrFail skips t when Docker is missing, except when the environment
// variable CI is "true": there it fails t, because CI must never skip the
// Docker suites.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNoDocker) || errors.Is(err, ErrNoBusybox) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: Docker tests must not be skipped)", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Socket returns the Docker endpoint shared by the tests of this process:
// EnvHost, or a private daemon started at the first call. Without dockerd
// it skips t (fails it when CI=true).
func Socket(t testing.TB) string {
	t.Helper()
	host, err := sharedHost()
	skipOrFail(t, err)
	return host
}

// DataRoot returns the data root of the daemon behind Socket, or "" when
// it is the one named by EnvHost.
func DataRoot(t testing.TB) string {
	t.Helper()
	Socket(t)
	if shared.daemon == nil {
		return ""
	}
	return shared.daemon.DataRoot()
}

// NewDaemon starts another private daemon, stopped when t ends, for tests
// that need several engines or stop one. It needs dockerd even when EnvHost
// is set.
func NewDaemon(t testing.TB) *Daemon {
	t.Helper()
	d, err := StartDaemon()
	skipOrFail(t, err)
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// Main runs the tests, then stops the daemon Socket started, if any. Use
// it as `func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.daemon != nil {
		if err := shared.daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("dockertest: %w", err)
	}
	var points []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		// Field 5 is the mount point, with spaces and such octal-escaped;
		// our directory names have none.
		if p := f[4]; p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("dockertest: unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// killUnder SIGKILLs every process whose command line names dir.
func killUnder(dir string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
