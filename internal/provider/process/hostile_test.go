package process

import (
	"bytes"
	"context"
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
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// hostileArg makes the test binary play a hostile job. It reads what to
// attack from the HOSTILE_* variables of its environment and prints one line
// per attempt: "attempt NAME: SUCCEEDED detail" or "attempt NAME: failed: why",
// then "hostile: done". It uses nothing but system calls, so the same program
// can run as a job of any provider.
const hostileArg = "corral-test-hostile"

// Variables of the hostile job.
const (
	envHostileMode       = "HOSTILE_MODE"        // attack (default), tmp, fill
	envHostileOtherDir   = "HOSTILE_OTHER_DIR"   // another instance's work directory
	envHostileOtherID    = "HOSTILE_OTHER_ID"    // another instance's id
	envHostileOtherPid   = "HOSTILE_OTHER_PID"   // host pid of another instance's runner
	envHostileDataDir    = "HOSTILE_DATA_DIR"    // corral's data directory
	envHostileHostMarker = "HOSTILE_HOST_MARKER" // on the command line of a host process
	envHostileTmpValue   = "HOSTILE_TMP_VALUE"   // tmp mode: the value this job writes
	envHostileFillMB     = "HOSTILE_FILL_MB"     // fill mode: write at most this much
)

// secretPrefix starts every secret the hostile job hunts for.
const secretPrefix = "hostile-secret-"

func runHostile() int {
	switch os.Getenv(envHostileMode) {
	case "userns":
		hostileUserns()
		return 0
	case "tmp":
		hostileTmp()
	case "fill":
		hostileFill()
	case "cgroup":
		hostileCgroup()
	default:
		hostileAttack()
	}
	fmt.Println("hostile: done")
	// Stay alive a little, so that tests can look at the instance while
	// its job runs.
	time.Sleep(30 * time.Second)
	return 0
}

func report(name string, err error, detail string) {
	if err != nil {
		fmt.Printf("attempt %s: failed: %v\n", name, err)
		return
	}
	fmt.Printf("attempt %s: SUCCEEDED %s\n", name, detail)
}

func hostileAttack() {
	fmt.Printf("hostile: uid=%d euid=%d pid=%d\n", os.Getuid(), os.Geteuid(), os.Getpid())
	marker := os.Getenv(envHostileHostMarker)
	// 1. Unmount the private /proc and look for host processes.
	uerr := unix.Unmount("/proc", unix.MNT_DETACH)
	if pid := findProc(func(pid int) bool { return procHas(pid, "cmdline", marker) }); pid > 0 {
		report("umount_proc_list_host", nil, fmt.Sprintf("host process %d visible (umount: %v)", pid, uerr))
	} else {
		report("umount_proc_list_host", fmt.Errorf("umount: %v; no host process visible", uerr), "")
	}
	// 2. Read the environment of a corral-like host process.
	if found := huntSecret(false); found != "" {
		report("read_corral_environ", nil, found)
	} else {
		report("read_corral_environ", errors.New("no secret in any readable environment"), "")
	}
	// 3, 4. Another instance's directory.
	other := os.Getenv(envHostileOtherDir)
	if entries, err := os.ReadDir(other); err != nil {
		report("list_other_instance", err, "")
	} else {
		report("list_other_instance", nil, fmt.Sprintf("%d entries", len(entries)))
	}
	report("write_other_instance", os.WriteFile(filepath.Join(other, "pwned"), []byte("x"), 0o644), "wrote pwned")
	// 5, 6. corral's data directory.
	data := os.Getenv(envHostileDataDir)
	f, err := os.OpenFile(filepath.Join(data, "corral.db"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.Write([]byte("x"))
		_ = f.Close()
	}
	report("write_database", err, "appended to corral.db")
	b, err := os.ReadFile(filepath.Join(data, "secret.key"))
	report("read_secret_key", err, fmt.Sprintf("%d bytes", len(b)))
	// 7. Kill another instance's runner, by its host pid or by finding it.
	var killed []string
	if pid, err := strconv.Atoi(os.Getenv(envHostileOtherPid)); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
		killed = append(killed, "host pid "+strconv.Itoa(pid))
	}
	mark := "CORRAL_INSTANCE_ID=" + os.Getenv(envHostileOtherID)
	for _, pid := range listPids() {
		if procHasEntry(pid, mark) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, "pid "+strconv.Itoa(pid))
		}
	}
	if len(killed) > 0 {
		report("kill_other_runner", nil, strings.Join(killed, ", "))
	} else {
		report("kill_other_runner", errors.New("no signal delivered"), "")
	}
	// 8. In a user namespace of its own, where it is root, unmount what
	// covers the host's view.
	cmd := exec.Command("/proc/self/exe", hostileArg)
	cmd.Env = append(os.Environ(), envHostileMode+"=userns")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if err := cmd.Run(); err != nil {
		report("userns_unmount", fmt.Errorf("start in a new user namespace: %w", err), "")
	}
	// 9. Steal the webhook secret from corral's environment, command line
	// or files.
	if found := huntSecret(true); found != "" {
		report("steal_webhook_secret", nil, found)
	} else {
		report("steal_webhook_secret", errors.New("secret not found"), "")
	}
}

// hostileUserns runs as root of a user namespace of its own: it unmounts
// /proc and whatever covers the data directory, then looks again.
func hostileUserns() {
	data := os.Getenv(envHostileDataDir)
	var errs []string
	for _, m := range []string{"/proc", data, filepath.Dir(data), "/tmp"} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Sprintf("umount %s: %v", m, err))
		}
	}
	var got []string
	if pid := findProc(func(pid int) bool { return procHas(pid, "cmdline", os.Getenv(envHostileHostMarker)) }); pid > 0 {
		got = append(got, fmt.Sprintf("host process %d visible", pid))
	}
	if b, err := os.ReadFile(filepath.Join(data, "secret.key")); err == nil {
		got = append(got, fmt.Sprintf("read secret.key (%d bytes)", len(b)))
	}
	if f := huntSecret(true); f != "" {
		got = append(got, "found "+f)
	}
	if len(got) > 0 {
		report("userns_unmount", nil, strings.Join(got, "; "))
	} else {
		report("userns_unmount", errors.New(strings.Join(errs, "; ")), "")
	}
}

// huntSecret looks for secretPrefix in every readable environment (and
// command line and file of the data directory when wide).
func huntSecret(wide bool) string {
	for _, pid := range listPids() {
		files := []string{"environ"}
		if wide {
			files = append(files, "cmdline")
		}
		for _, f := range files {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + f)
			if s := extractSecret(b); s != "" {
				return s
			}
		}
	}
	if !wide {
		return ""
	}
	found := ""
	_ = filepath.WalkDir(os.Getenv(envHostileDataDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			found = extractSecret(b)
		}
		return nil
	})
	return found
}

func extractSecret(b []byte) string {
	i := bytes.Index(b, []byte(secretPrefix))
	if i < 0 {
		return ""
	}
	end := i
	for end < len(b) && b[end] > ' ' && b[end] < 0x7f {
		end++
	}
	return string(b[i:end])
}

func listPids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func findProc(match func(int) bool) int {
	for _, pid := range listPids() {
		if pid != os.Getpid() && match(pid) {
			return pid
		}
	}
	return 0
}

func procHas(pid int, file, s string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	return err == nil && s != "" && bytes.Contains(b, []byte(s))
}

func procHasEntry(pid int, kv string) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	for e := range bytes.SplitSeq(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// hostileTmp writes its value into /tmp, /var/tmp and /dev/shm, then
// reports what other files it sees there.
func hostileTmp() {
	v := os.Getenv(envHostileTmpValue)
	for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		err := os.WriteFile(filepath.Join(d, "corral-leak-"+v), []byte(v), 0o644)
		fmt.Printf("tmp-write %s: %v\n", d, err)
	}
	time.Sleep(time.Second) // let the other instance write too
	for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "corral-leak-") && e.Name() != "corral-leak-"+v {
				fmt.Printf("tmp-seen %s/%s\n", d, e.Name())
			}
		}
	}
}

// hostileFill writes into its work directory until the disk is full or
// HOSTILE_FILL_MB are written, and reports which came first.
func hostileFill() {
	limit, _ := strconv.Atoi(os.Getenv(envHostileFillMB))
	f, err := os.Create("fill")
	if err != nil {
		fmt.Printf("fill: create: %v\n", err)
		return
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	for mb := 0; mb < limit; mb++ {
		if _, err := f.Write(chunk); err != nil {
			fmt.Printf("fill: stopped after %d MiB: %v nospace=%v\n", mb, err, errors.Is(err, syscall.ENOSPC))
			return
		}
	}
	fmt.Printf("fill: wrote %d MiB without error\n", limit)
}

// hostileCgroup prints the limits of its own cgroups, as /proc/self/cgroup
// names them, then allocates more memory than its flavor gives.
func hostileCgroup() {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		files := map[string][]string{
			"memory": {"/sys/fs/cgroup/memory", "memory.limit_in_bytes"},
			"cpu":    {"/sys/fs/cgroup/cpu", "cpu.cfs_quota_us"},
			"pids":   {"/sys/fs/cgroup/pids", "pids.max"},
			"":       {"/sys/fs/cgroup", "memory.max", "cpu.max", "pids.max"},
		}
		for k := range strings.SplitSeq(parts[1], ",") {
			f, ok := files[k]
			for i := 1; ok && i < len(f); i++ {
				v, err := os.ReadFile(filepath.Join(f[0], parts[2], f[i]))
				fmt.Printf("cgroup %s %s=%s err=%v\n", parts[2], f[i], strings.TrimSpace(string(v)), err)
			}
		}
	}
	mb, _ := strconv.Atoi(os.Getenv(envHostileFillMB))
	fmt.Println("alloc: start")
	mem := make([]byte, mb<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	fmt.Printf("alloc: survived %d MiB\n", mb)
}

// hostileEnv is a hostile job's bootstrap environment.
func hostileSpec(t *testing.T, h *harness, ctl string, env map[string]string) corral.InstanceSpec {
	spec := providertest.Spec(t, h, ctl, nil)
	spec.Bootstrap.Command = []string{hostileArg}
	spec.Bootstrap.Env = map[string]corral.Secret{}
	for k, v := range env {
		spec.Bootstrap.Env[k] = corral.Secret(v)
	}
	return spec
}

// waitOutput waits until the instance's log holds want and returns it.
func waitOutput(t *testing.T, h *harness, inst corral.ProviderInstance, want string) string {
	t.Helper()
	var out string
	providertest.Eventually(t, "the hostile job to say "+want, func() bool {
		out = h.Output(t, inst)
		return strings.Contains(out, want)
	})
	return out
}

// hostileHarness is a harness whose instances live in the data directory
// of a corral-like setup: a database file and a secret key next to them.
func hostileHarness(t *testing.T) (*harness, string) {
	return hostileHarnessIn(t, t.TempDir())
}

// hostileHarnessIn is hostileHarness with the data directory data.
func hostileHarnessIn(t *testing.T, data string) (*harness, string) {
	h := newHarness(t, NamespacesAuto)
	h.dir = filepath.Join(data, "instances")
	h.hide = []string{data}
	for name, mode := range map[string]os.FileMode{"corral.db": 0o644, "secret.key": 0o600} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(secretPrefix+"in-"+name), mode); err != nil {
			t.Fatal(err)
		}
	}
	return h, data
}

func TestProvider_HostileJob(t *testing.T) {
	// Under /tmp, the data directory is hidden by the private /tmp; out of
	// it, by a mask.
	t.Run("data_dir_in_tmp", func(t *testing.T) { testHostileJob(t, t.TempDir()) })
	t.Run("data_dir_out_of_tmp", func(t *testing.T) {
		data, err := os.MkdirTemp("/var/lib", "corral-hostile-")
		if err != nil {
			t.Skipf("no data directory out of /tmp: %v", err)
		}
		t.Cleanup(func() { _ = removeAll(data) })
		testHostileJob(t, data)
	})
}

func testHostileJob(t *testing.T, data string) {
	h, data := hostileHarnessIn(t, data)
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")

	// A corral-like host process holding the webhook secret in its
	// environment and a marker on its command line.
	secret := providertest.Unique(secretPrefix)
	marker := providertest.Unique("corral-like-")
	host := exec.Command("/bin/busybox", "sh", "-c", "sleep 120; : "+marker)
	host.Env = []string{"CORRAL_WEBHOOK_SECRET=" + secret}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	// Another instance, busy with its job.
	otherSpec := providertest.Spec(t, h, ctl, nil)
	other := providertest.Create(t, p, otherSpec)
	waitOutput(t, h, other, "corral-test-runner: pid=")
	otherPid := 0
	providertest.Eventually(t, "the other runner on the host", func() bool {
		otherPid = findProc(func(pid int) bool {
			return procHasEntry(pid, "CORRAL_INSTANCE_ID="+other.InstanceID) && procHas(pid, "cmdline", providertest.RunnerArg)
		})
		return otherPid > 0
	})
	otherWork := filepath.Join(h.dir, other.ProviderID, workDir)

	inst := providertest.Create(t, p, hostileSpec(t, h, ctl, map[string]string{
		envHostileOtherDir:   otherWork,
		envHostileOtherID:    other.InstanceID,
		envHostileOtherPid:   strconv.Itoa(otherPid),
		envHostileDataDir:    data,
		envHostileHostMarker: marker,
	}))
	out := waitOutput(t, h, inst, "hostile: done")
	t.Logf("hostile job:\n%s", out)

	for _, name := range []string{"umount_proc_list_host", "read_corral_environ", "list_other_instance",
		"write_other_instance", "write_database", "read_secret_key", "kill_other_runner", "userns_unmount", "steal_webhook_secret"} {
		t.Run(name, func(t *testing.T) {
			line := attemptLine(out, name)
			if line == "" {
				t.Fatalf("the hostile job did not report attempt %s", name)
			}
			if strings.Contains(line, "SUCCEEDED") {
				t.Errorf("%s", line)
			}
			switch name {
			case "read_corral_environ", "steal_webhook_secret", "userns_unmount":
				if strings.Contains(out, secret) {
					t.Errorf("the job printed corral's webhook secret")
				}
			case "write_other_instance":
				if _, err := os.Lstat(filepath.Join(otherWork, "pwned")); err == nil {
					t.Errorf("the other instance's directory holds the job's file")
				}
			case "write_database":
				if b, _ := os.ReadFile(filepath.Join(data, "corral.db")); string(b) != secretPrefix+"in-corral.db" {
					t.Errorf("the database file changed: %q", b)
				}
			case "kill_other_runner":
				if !alive(otherPid, mustStat(t, otherPid).Start) {
					t.Errorf("the other instance's runner %d died", otherPid)
				}
			}
		})
	}
}

func mustStat(t *testing.T, pid int) procStat {
	s, err := readStat(pid)
	if err != nil {
		return procStat{Pid: pid, Start: 1<<64 - 1}
	}
	return s
}

func attemptLine(out, name string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "attempt "+name+":") {
			return line
		}
	}
	return ""
}

func TestProvider_PrivateTmp(t *testing.T) {
	h, _ := hostileHarness(t)
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")
	var insts []corral.ProviderInstance
	values := []string{providertest.Unique("a-"), providertest.Unique("b-")}
	for _, v := range values {
		insts = append(insts, providertest.Create(t, p, hostileSpec(t, h, ctl, map[string]string{
			envHostileMode: "tmp", envHostileTmpValue: v,
		})))
	}
	for i, inst := range insts {
		out := waitOutput(t, h, inst, "hostile: done")
		if strings.Contains(out, "tmp-seen") || strings.Count(out, ": <nil>") != 3 {
			t.Errorf("instance %d:\n%s", i, out)
		}
	}
	for _, inst := range insts {
		if err := p.Delete(t.Context(), inst); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		for _, v := range values {
			if _, err := os.Lstat(filepath.Join(d, "corral-leak-"+v)); err == nil {
				t.Errorf("%s/corral-leak-%s is on the host", d, v)
				_ = os.Remove(filepath.Join(d, "corral-leak-"+v))
			}
		}
	}
}

func TestProvider_DiskFull(t *testing.T) {
	h, data := hostileHarness(t)
	h.diskMB = 16
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")
	spec := hostileSpec(t, h, ctl, map[string]string{envHostileMode: "fill", envHostileFillMB: "64"})
	inst := providertest.Create(t, p, spec)
	out := waitOutput(t, h, inst, "hostile: done")
	if !strings.Contains(out, "nospace=true") {
		t.Errorf("the job was not stopped by a full disk:\n%s", out)
	}
	// corral's store, in the same data directory, still commits.
	if err := commitStore(t.Context(), filepath.Join(data, "store.db")); err != nil {
		t.Errorf("store commit while the job's disk is full: %v", err)
	}
	if err := p.Delete(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	if left := h.Leftovers(t, inst); len(left) > 0 {
		t.Errorf("Delete left %v", left)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(inst.InstanceID)) {
		t.Errorf("a mount of the instance is left:\n%s", b)
	}
}

// commitStore opens a SQLite store at path and commits one write.
func commitStore(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(ctx, func(tx corral.Tx) error {
		return tx.PutTenant(ctx, corral.Tenant{ID: "t-disk-full", MaxInstances: 1})
	})
}

func TestProvider_CgroupLimits(t *testing.T) {
	h, _ := hostileHarness(t)
	p := h.provider(t)
	if enforced := p.iso().cg.enforced(); !slices.Contains(enforced, "memory") {
		_, degraded := p.Isolation()
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatalf("no memory cgroup as root in CI: %v", degraded)
		}
		t.Skipf("no memory cgroup here: %v", degraded)
	}
	ctl := providertest.Unique("ctl-")
	spec := hostileSpec(t, h, ctl, map[string]string{envHostileMode: "cgroup", envHostileFillMB: "256"})
	spec.Flavor = corral.Flavor{CPU: 1, MemoryMB: 64}
	inst := providertest.Create(t, p, spec)
	var out string
	providertest.Eventually(t, "the allocating job to end", func() bool {
		got, ok := providertest.Find(t, p, ctl, inst.InstanceID)
		out = h.Output(t, inst)
		return ok && !got.Running || strings.Contains(out, "hostile: done")
	})
	t.Logf("job:\n%s", out)
	// What the job reads from its own cgroups: the flavor's limits.
	want := []string{"memory.max=67108864 ", "cpu.max=100000 100000", "pids.max=4096 "}
	if cg := p.iso().cg; cg.v2 == "" {
		want = nil
		for k, w := range map[string]string{"memory": "memory.limit_in_bytes=67108864 ", "cpu": "cpu.cfs_quota_us=100000 ", "pids": "pids.max=4096 "} {
			if cg.v1[k] != "" {
				want = append(want, w)
			}
		}
	}
	for _, w := range append(want, "alloc: start") {
		if !strings.Contains(out, w) {
			t.Errorf("job output lacks %q", w)
		}
	}
	if strings.Contains(out, "alloc: survived") {
		t.Errorf("a 64 MiB job allocated 256 MiB")
	}
	dirs := p.iso().cg.dirs(inst.InstanceID)
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("cgroup %s of the running instance: %v", d, err)
		}
	}
	if err := p.Delete(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left after Delete: %v", d, err)
		}
	}
}
