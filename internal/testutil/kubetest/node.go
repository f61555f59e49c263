package kubetest

// The one-node tier ("tier 2"): a real kubelet, with Debian's containerd
// and runc, next to the control plane, so that pods run.
//
// A kubelet is made to own a machine: it mounts under /var/lib/kubelet,
// writes /var/log/pods, sets kernel sysctls, makes cgroups and serves on
// the node's address, which may not be loopback. So the node and its
// control plane run in private namespaces: the test binary runs itself
// again in a new mount, network and PID namespace (IsolatedMain for a
// whole package, RunIsolated for one test), where
//   - the network has only a loopback interface, holding 127.0.0.1 and the
//     node address NodeIP (192.0.2.10, TEST-NET-1: nothing outside the
//     namespace is reachable, nothing inside is reachable from outside);
//   - kubelet's and containerd's directories are tmpfs mounts of the
//     namespace, and the sysctls the kubelet would set on the host are
//     files bound over their /proc/sys entries;
//   - the first process is a reaper (containerd's shims are re-parented to
//     it), and when the tests end it kills every process left: nothing of
//     the node survives its test binary, even after a crash or SIGKILL;
//   - cgroups are made under one root per run (/corral-kubetest-…), which
//     the outer process removes afterwards.
// Pods have no network plugin here (the node reports NetworkReady=false):
// they must use the host network (the kubernetes provider's host_network
// pool option), which is the namespace's.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// NodeIP is the node's address inside the private network namespace.
const NodeIP = "192.0.2.10"

// NodeName is the name the kubelet registers.
const NodeName = "corral-node"

// pauseImageName names the sandbox ("pause") image, made from busybox
// (sleep) and imported at start: nothing is pulled.
const pauseImageName = "pause"

const (
	envIsolate = "CORRAL_KUBETEST_ISOLATE" // "init": the reaper; "run": the tests inside
	envCgroup  = "CORRAL_KUBETEST_CGROUP"  // the run's cgroup root name
)

// ErrNoNode: this machine cannot run the node tier; the error says why.
var ErrNoNode = errors.New("kubetest: cannot run a kubelet node here")

// Isolated reports whether this process runs inside the node's private
// namespaces.
func Isolated() bool { return os.Getenv(envIsolate) == "run" }

// NodeSupport says why this machine cannot run a node, or nil: root, the
// kubelet binary, containerd, runc, ctr and ip.
func NodeSupport() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (a kubelet mounts, makes cgroups and namespaces)", ErrNoNode)
	}
	if _, err := binaries(true); err != nil {
		return fmt.Errorf("%w: %w", ErrNoNode, err)
	}
	if fi, err := os.Stat(filepath.Join(BinDir(), "kubelet")); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%w: kubelet missing in %s (scripts/k8s/build.sh builds it)", ErrNoNode, BinDir())
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%w: %s not on PATH (apt-get install -y containerd runc iproute2)", ErrNoNode, b)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			return fmt.Errorf("%w: no cgroup filesystem at /sys/fs/cgroup", ErrNoNode)
		}
	}
	return nil
}

// skipOrFail skips t for a missing prerequisite, or fails it under CI=true.
func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: the node tests must not be skipped)", err)
	}
	t.Skip(err)
}

// IsolatedMain is TestMain for a package whose every test needs a node:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.IsolatedMain(m)) }
//
// Outside the namespaces it runs the test binary again inside them, with
// the same arguments and output, and returns its exit code. When the
// machine cannot run a node it runs the tests here instead, and
// StartNode skips them (or fails them under CI=true) with the reason.
func IsolatedMain(m *testing.M) int {
	switch os.Getenv(envIsolate) {
	case "init":
		return initMain()
	case "run":
		return m.Run()
	}
	if err := NodeSupport(); err != nil {
		return m.Run()
	}
	return reexec(os.Args[1:], os.Stdout, os.Stderr)
}

// InitIfIsolated must be the first call of the TestMain of a package that
// uses RunIsolated: in the namespaces' first process it runs the reaper
// and exits.
func InitIfIsolated() {
	if os.Getenv(envIsolate) == "init" {
		os.Exit(initMain())
	}
}

// RunIsolated runs the calling top-level test again, alone, inside the
// node's private namespaces, and reports its output and result as t's.
// It returns true when the caller already runs inside (then it goes on
// with the test) and false outside (then it returns at once):
//
//	if !kubetest.RunIsolated(t) {
//		return
//	}
//
// The package's TestMain calls InitIfIsolated first.
func RunIsolated(t *testing.T) bool {
	t.Helper()
	if Isolated() {
		return true
	}
	if err := NodeSupport(); err != nil {
		skipOrFail(t, err)
	}
	name := t.Name()
	args := []string{"-test.run=^" + regexp.QuoteMeta(name) + "$", "-test.v", "-test.count=1"}
	for _, f := range []string{"test.timeout", "test.short"} {
		if fl := flag.Lookup(f); fl != nil {
			args = append(args, "-"+f+"="+fl.Value.String())
		}
	}
	var out bytes.Buffer
	w := io.MultiWriter(&out, lineLogger(t))
	code := reexec(args, w, w)
	switch {
	case code != 0:
		t.Fatalf("kubetest: %s in the node's namespaces exited %d", name, code)
	case strings.Contains(out.String(), "--- SKIP: "+name+" "):
		t.Skip("skipped in the node's namespaces (see above)")
	case !strings.Contains(out.String(), "--- PASS: "+name+" "):
		t.Fatalf("kubetest: %s did not run in the node's namespaces", name)
	}
	return false
}

// lineLogger writes each line to t.Log.
func lineLogger(t *testing.T) io.Writer {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() { pw.Close(); <-done })
	return pw
}

// reexec runs the test binary with args in new mount, network and PID
// namespaces (its first process is initMain), then removes the cgroups
// the run made, and returns the exit code.
func reexec(args []string, stdout, stderr io.Writer) int {
	cg := "corral-kubetest-" + randomHex(4)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envIsolate+"=init", envCgroup+"="+cg)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	err := cmd.Run()
	removeCgroups(cg)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if code := ee.ExitCode(); code > 0 {
			return code
		}
		return 1
	default:
		fmt.Fprintf(stderr, "kubetest: run in private namespaces: %v\n", err)
		return 1
	}
}

// initMain is the namespaces' first process: it makes the mounts private,
// mounts /proc for the new PID namespace, brings the loopback up with the
// node address, runs the tests as its child, reaps every process that is
// re-parented to it, and when the tests end kills what is left.
func initMain() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "kubetest init:", err); return 1 }
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make mounts private: %w", err))
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fail(fmt.Errorf("mount /proc: %w", err))
	}
	for _, a := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", NodeIP + "/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
			return fail(fmt.Errorf("ip %s: %v: %s", strings.Join(a, " "), err, out))
		}
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), envIsolate+"=run")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	code := -1
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			break // ECHILD: nothing left
		}
		if pid == cmd.Process.Pid {
			switch {
			case ws.Exited():
				code = ws.ExitStatus()
			case ws.Signaled():
				fmt.Fprintf(os.Stderr, "kubetest init: tests killed by %v\n", ws.Signal())
				code = 128 + int(ws.Signal())
			}
			_ = syscall.Kill(-1, syscall.SIGKILL) // every other process of the namespace
		}
	}
	if code < 0 {
		return 1
	}
	return code
}

// cgroupRoots are the directories of the run's cgroup root, one per
// mounted hierarchy (cgroup v1 controllers, the named systemd one, and
// the unified one).
func cgroupRoots(name string) []string {
	var out []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{filepath.Join("/sys/fs/cgroup", name)} // cgroup v2 only
	}
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name(), name))
		}
	}
	return out
}

func makeCgroups(name string) error {
	for _, d := range cgroupRoots(name) {
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if strings.Contains(d, "/cpuset/") { // a v1 cpuset starts empty
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(d, f), err)
				}
			}
		}
	}
	return nil
}

// removeCgroups removes the run's cgroup directories, deepest first (the
// processes in them are gone once the PID namespace is).
func removeCgroups(name string) {
	for _, root := range cgroupRoots(name) {
		for range 50 {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			if len(dirs) == 0 {
				break
			}
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = syscall.Rmdir(dirs[i])
			}
			if _, err := os.Stat(root); os.IsNotExist(err) {
				break
			}
			time.Sleep(100 * time.Millisecond) // tasks still leaving
		}
	}
}

// Node is a control plane and a kubelet whose pods run.
type Node struct {
	*Cluster
	// Containerd is containerd's socket.
	Containerd string
	// CgroupRoot is the kubelet's cgroup root.
	CgroupRoot string
	// Log is the components' log file.
	Log string

	dir string

	procs []*exec.Cmd
	waits []chan error
}

// NodeOptions of StartNode.
type NodeOptions struct {
	// PodPidsLimit is the kubelet's podPidsLimit (0: 1024).
	PodPidsLimit int
}

// sysctls the kubelet sets unless protectKernelDefaults (which makes it
// fail when they differ instead); they are not namespaced, so the files
// bound over them hold the values the kubelet wants and it writes nothing.
var sysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// nodeDirs are the fixed paths a kubelet and containerd write; each gets a
// tmpfs of the mount namespace.
var nodeDirs = []string{"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/run/containerd", "/opt/containerd"}

// StartNode starts, inside the node's namespaces (see RunIsolated), a
// control plane (with kube-scheduler), containerd and a kubelet that
// registers NodeName, and waits until the node can take pods. Outside the
// namespaces, or without a prerequisite, it skips t (fails under
// CI=true). The caller stops it.
func StartNode(ctx context.Context, t testing.TB, opt NodeOptions) *Node {
	t.Helper()
	if err := NodeSupport(); err != nil {
		skipOrFail(t, err)
	}
	if !Isolated() {
		t.Fatal("kubetest: StartNode outside the node's namespaces (call RunIsolated or use IsolatedMain)")
	}
	n, err := startNode(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func startNode(ctx context.Context, opt NodeOptions) (n *Node, err error) {
	dir, err := os.MkdirTemp("", "corral-kubenode-")
	if err != nil {
		return nil, err
	}
	n = &Node{CgroupRoot: "/" + os.Getenv(envCgroup), Log: filepath.Join(dir, "node.log"), dir: dir}
	defer func() {
		if err != nil {
			b, _ := os.ReadFile(n.Log)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			n.Stop()
			err = fmt.Errorf("%w\n--- node log (tail) ---\n%s", err, b)
		}
	}()
	for _, d := range nodeDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return n, err
		}
		if err := syscall.Mount("tmpfs", d, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
			return n, fmt.Errorf("kubetest: tmpfs on %s: %w", d, err)
		}
	}
	for k, v := range sysctls {
		f := filepath.Join(dir, "sysctl-"+strings.ReplaceAll(k, "/", "-"))
		if err := os.WriteFile(f, []byte(v+"\n"), 0o644); err != nil {
			return n, err
		}
		if err := syscall.Mount(f, "/proc/sys/"+k, "", syscall.MS_BIND, ""); err != nil {
			return n, fmt.Errorf("kubetest: mask /proc/sys/%s: %w", k, err)
		}
	}
	logf, err := os.Create(n.Log)
	if err != nil {
		return n, err
	}
	if n.CgroupRoot == "/" {
		n.CgroupRoot = "/corral-kubetest-" + randomHex(4)
	}
	if err := makeCgroups(strings.TrimPrefix(n.CgroupRoot, "/")); err != nil {
		return n, fmt.Errorf("kubetest: cgroup root: %w", err)
	}

	cdir := filepath.Join(dir, "containerd")
	if err := os.MkdirAll(filepath.Join(cdir, "cni"), 0o755); err != nil {
		return n, err
	}
	n.Containerd = filepath.Join(cdir, "containerd.sock")
	pause, pauseRef, err := ImageArchive(pauseImageName, nil, nil, []string{"/bin/sleep", "2147483647"})
	if err != nil {
		return n, err
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
`, filepath.Join(cdir, "root"), filepath.Join(cdir, "state"), n.Containerd, pauseRef, filepath.Join(cdir, "cni"), filepath.Join(cdir, "cni"))
	if err := os.WriteFile(filepath.Join(cdir, "config.toml"), []byte(cfg), 0o600); err != nil {
		return n, err
	}
	if err := n.start(logf, "containerd", "containerd", "--config", filepath.Join(cdir, "config.toml")); err != nil {
		return n, err
	}
	if err := waitSocket(ctx, n.Containerd, 60*time.Second); err != nil {
		return n, fmt.Errorf("kubetest: containerd: %w", err)
	}
	if err := n.Import(ctx, pause); err != nil {
		return n, err
	}

	n.Cluster, err = Start(ctx, dir, Options{Log: logf, node: true})
	if err != nil {
		return n, err
	}
	kc, err := n.WriteKubeconfig("kubelet.kubeconfig", n.AdminToken)
	if err != nil {
		return n, err
	}
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return n, err
	}
	pids := opt.PodPidsLimit
	if pids == 0 {
		pids = 1024
	}
	kcfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
resolvConf: %s
protectKernelDefaults: false
serializeImagePulls: false
podPidsLimit: %d
syncFrequency: 10s
fileCheckFrequency: 1h
registerNode: true
kubeAPIQPS: 200
kubeAPIBurst: 400
`, NodeIP, n.CgroupRoot, n.Containerd, resolv, pids)
	kcfgPath := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(kcfgPath, []byte(kcfg), 0o600); err != nil {
		return n, err
	}
	if err := n.start(logf, filepath.Join(BinDir(), "kubelet"), "kubelet",
		"--config", kcfgPath, "--kubeconfig", kc, "--root-dir", "/var/lib/kubelet",
		"--hostname-override", NodeName, "--node-ip", NodeIP, "--v", "1",
	); err != nil {
		return n, err
	}
	if err := n.waitNode(ctx); err != nil {
		return n, err
	}
	return n, nil
}

func (n *Node) start(logw io.Writer, bin, name string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = prefixed(logw, name), prefixed(logw, name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n.procs = append(n.procs, cmd)
	n.waits = append(n.waits, done)
	return nil
}

func waitSocket(ctx context.Context, path string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("no answer on %s within %v: %w", path, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitNode waits until the kubelet registered the node with its capacity
// and lifts the taints that the node lifecycle controller (which does not
// run here) would lift: the node is not "Ready" since no network plugin
// runs, but host-network pods run on it.
func (n *Node) waitNode(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cs, err := kubernetes.NewForConfig(n.RESTConfig(n.AdminToken))
	if err != nil {
		return err
	}
	var last error
	for {
		for i, w := range n.waits {
			select {
			case err := <-w:
				w <- err
				return fmt.Errorf("kubetest: %s exited: %v (log %s)", filepath.Base(n.procs[i].Path), err, n.Log)
			default:
			}
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err
		case node.Status.Allocatable.Cpu().IsZero():
			last = errors.New("no allocatable cpu yet")
		case len(node.Spec.Taints) > 0:
			last = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				node.Spec.Taints = nil
				_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
				return err
			})
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: node %s not usable: %v (last: %v; log %s)", NodeName, ctx.Err(), last, n.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop ends the kubelet, containerd and the control plane. Containers
// left are killed when the namespaces' first process ends.
func (n *Node) Stop() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		_ = n.procs[i].Process.Signal(syscall.SIGTERM)
		select {
		case <-n.waits[i]:
		case <-time.After(10 * time.Second):
			_ = n.procs[i].Process.Kill()
			<-n.waits[i]
		}
		if i == len(n.procs)-1 && n.Cluster != nil { // the kubelet first, then its API server
			n.Cluster.Stop()
		}
	}
	n.procs, n.waits = nil, nil
	if n.dir != "" && os.Getenv("CORRAL_KUBETEST_KEEP") == "" {
		// Containers still running are killed with the namespaces; their
		// mounts under dir go now, so the files can.
		if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			lines := strings.Split(string(b), "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if f := strings.Fields(lines[i]); len(f) > 4 && strings.HasPrefix(f[4], n.dir+"/") {
					_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
				}
			}
		}
		_ = os.RemoveAll(n.dir)
		n.dir = ""
	}
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *Node) Ctr(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.Containerd, "--namespace", "k8s.io"}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Import loads an image archive (ImageArchive) into the node's
// containerd, where the kubelet finds it without a registry.
func (n *Node) Import(ctx context.Context, archive []byte) error {
	_, err := n.Ctr(ctx, bytes.NewReader(archive), "images", "import", "-")
	return err
}

// ImportImage builds (ImageArchive) and imports an image, and returns its
// reference.
func (n *Node) ImportImage(t testing.TB, name string, files map[string]string, env []string) string {
	t.Helper()
	b, ref, err := ImageArchive(name, files, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.Import(ctx, b); err != nil {
		t.Fatal(err)
	}
	return ref
}

// RunningContainers counts the containers of pods (not sandboxes) that
// containerd runs.
func (n *Node) RunningContainers(ctx context.Context) (int, error) {
	out, err := n.Ctr(ctx, nil, "tasks", "ls")
	if err != nil {
		return 0, err
	}
	count := 0
	for _, l := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(l); len(f) >= 3 && f[2] == "RUNNING" {
			count++
		}
	}
	return count, nil
}

// PodRunning waits until the pod runs (phase Running) and returns it.
func PodRunning(ctx context.Context, cs kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pod %s/%s not running: %w", ns, name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pids returns the processes of the node (kubelet, containerd) and of
// its control plane.
func (n *Node) Pids() []int {
	out := n.Cluster.Pids()
	for _, p := range n.procs {
		out = append(out, p.Process.Pid)
	}
	return out
}
