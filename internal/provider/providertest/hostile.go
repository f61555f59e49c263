package providertest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HostileArg makes a test binary play a hostile job (RunHostile). It reads what to
// attack from the HOSTILE_* variables of its environment and prints one line
// per attempt: "attempt NAME: SUCCEEDED detail" or "attempt NAME: failed: why",
// then "hostile: done". It uses nothing but system calls, so the same program
// can run as a job of any provider.
const HostileArg = "corral-test-hostile"

// Variables of the hostile job.
const (
	EnvHostileMode       = "HOSTILE_MODE"        // attack (default), tmp, fill, cgroup
	EnvHostileOtherDir   = "HOSTILE_OTHER_DIR"   // another instance's work directory
	EnvHostileOtherID    = "HOSTILE_OTHER_ID"    // another instance's id
	EnvHostileOtherPid   = "HOSTILE_OTHER_PID"   // host pid of another instance's runner
	EnvHostileDataDir    = "HOSTILE_DATA_DIR"    // corral's data directory
	EnvHostileHostMarker = "HOSTILE_HOST_MARKER" // on the command line of a host process
	EnvHostileTmpValue   = "HOSTILE_TMP_VALUE"   // tmp mode: the value this job writes
	EnvHostileFillMB     = "HOSTILE_FILL_MB"     // fill mode: write at most this much
)

// SecretPrefix starts every secret the hostile job hunts for.
const SecretPrefix = "hostile-secret-"

// RunHostile is the hostile job. It uses nothing but system calls and
// /proc, so the same program runs as the job of any provider (statically
// built for containers).
func RunHostile() int {
	switch os.Getenv(EnvHostileMode) {
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
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		var caps []string
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
				caps = append(caps, k+"="+strings.TrimSpace(v))
			}
		}
		fmt.Printf("hostile: privileges %s\n", strings.Join(caps, " "))
	}
	marker := os.Getenv(EnvHostileHostMarker)
	// 1. Unmount the private /proc and look for host processes.
	uerr := unix.Unmount("/proc", unix.MNT_DETACH)
	if pid := FindProc(func(pid int) bool { return ProcHas(pid, "cmdline", marker) }); pid > 0 {
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
	other := os.Getenv(EnvHostileOtherDir)
	if entries, err := os.ReadDir(other); err != nil {
		report("list_other_instance", err, "")
	} else {
		report("list_other_instance", nil, fmt.Sprintf("%d entries", len(entries)))
	}
	report("write_other_instance", os.WriteFile(filepath.Join(other, "pwned"), []byte("x"), 0o644), "wrote pwned")
	// 5, 6. corral's data directory.
	data := os.Getenv(EnvHostileDataDir)
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
	if pid, err := strconv.Atoi(os.Getenv(EnvHostileOtherPid)); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
		killed = append(killed, "host pid "+strconv.Itoa(pid))
	}
	mark := "CORRAL_INSTANCE_ID=" + os.Getenv(EnvHostileOtherID)
	for _, pid := range listPids() {
		if ProcHasEntry(pid, mark) && syscall.Kill(pid, syscall.SIGKILL) == nil {
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
	cmd := exec.Command("/proc/self/exe", HostileArg)
	cmd.Env = append(os.Environ(), EnvHostileMode+"=userns")
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
	data := os.Getenv(EnvHostileDataDir)
	var errs []string
	for _, m := range []string{"/proc", data, filepath.Dir(data), "/tmp"} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Sprintf("umount %s: %v", m, err))
		}
	}
	var got []string
	if pid := FindProc(func(pid int) bool { return ProcHas(pid, "cmdline", os.Getenv(EnvHostileHostMarker)) }); pid > 0 {
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

// huntSecret looks for SecretPrefix in every readable environment (and
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
	_ = filepath.WalkDir(os.Getenv(EnvHostileDataDir), func(p string, d fs.DirEntry, err error) error {
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
	i := bytes.Index(b, []byte(SecretPrefix))
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

func FindProc(match func(int) bool) int {
	for _, pid := range listPids() {
		if pid != os.Getpid() && match(pid) {
			return pid
		}
	}
	return 0
}

func ProcHas(pid int, file, s string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	return err == nil && s != "" && bytes.Contains(b, []byte(s))
}

func ProcHasEntry(pid int, kv string) bool {
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
	v := os.Getenv(EnvHostileTmpValue)
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
	limit, _ := strconv.Atoi(os.Getenv(EnvHostileFillMB))
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
	mb, _ := strconv.Atoi(os.Getenv(EnvHostileFillMB))
	fmt.Println("alloc: start")
	mem := make([]byte, mb<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	fmt.Printf("alloc: survived %d MiB\n", mb)
}

// HostileAttempts are the attacks of the default mode, in order.
var HostileAttempts = []string{"umount_proc_list_host", "read_corral_environ", "list_other_instance",
	"write_other_instance", "write_database", "read_secret_key", "kill_other_runner", "userns_unmount", "steal_webhook_secret"}

// AttemptLine returns the line of the hostile job's output that reports
// attempt name, or "".
func AttemptLine(out, name string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "attempt "+name+":") {
			return line
		}
	}
	return ""
}
