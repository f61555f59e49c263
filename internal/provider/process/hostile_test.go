package process

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// hostileEnv is a hostile job's bootstrap environment.
func hostileSpec(t *testing.T, h *harness, ctl string, env map[string]string) corral.InstanceSpec {
	spec := providertest.Spec(t, h, ctl, nil)
	spec.Bootstrap.Command = []string{providertest.HostileArg}
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
		if err := os.WriteFile(filepath.Join(data, name), []byte(providertest.SecretPrefix+"in-"+name), mode); err != nil {
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
	requireIsolation(t, p)
	ctl := providertest.Unique("ctl-")

	// A corral-like host process holding the webhook secret in its
	// environment and a marker on its command line.
	secret := providertest.Unique(providertest.SecretPrefix)
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
		otherPid = providertest.FindProc(func(pid int) bool {
			return providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+other.InstanceID) && providertest.ProcHas(pid, "cmdline", providertest.RunnerArg)
		})
		return otherPid > 0
	})
	otherWork := filepath.Join(h.dir, other.ProviderID, workDir)

	inst := providertest.Create(t, p, hostileSpec(t, h, ctl, map[string]string{
		providertest.EnvHostileOtherDir:   otherWork,
		providertest.EnvHostileOtherID:    other.InstanceID,
		providertest.EnvHostileOtherPid:   strconv.Itoa(otherPid),
		providertest.EnvHostileDataDir:    data,
		providertest.EnvHostileHostMarker: marker,
	}))
	out := waitOutput(t, h, inst, "hostile: done")
	t.Logf("hostile job:\n%s", out)

	t.Run("unprivileged", func(t *testing.T) {
		_, after, _ := strings.Cut(out, "hostile: uid=")
		if uid, err := strconv.Atoi(strings.Fields(after + " x")[0]); err != nil || uid < DefaultUIDBase {
			t.Errorf("the job runs as uid %q, want one from %d", strings.Fields(after + " x")[0], DefaultUIDBase)
		}
		for _, want := range []string{"CapEff=0000000000000000", "CapPrm=0000000000000000",
			"CapBnd=0000000000000000", "CapAmb=0000000000000000", "NoNewPrivs=1"} {
			if !strings.Contains(out, want) {
				t.Errorf("the job is not unprivileged: want %s", want)
			}
		}
	})
	for _, name := range providertest.HostileAttempts {
		t.Run(name, func(t *testing.T) {
			line := providertest.AttemptLine(out, name)
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
				if b, _ := os.ReadFile(filepath.Join(data, "corral.db")); string(b) != providertest.SecretPrefix+"in-corral.db" {
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

func TestProvider_PrivateTmp(t *testing.T) {
	h, _ := hostileHarness(t)
	p := h.provider(t)
	requireIsolation(t, p)
	ctl := providertest.Unique("ctl-")
	var insts []corral.ProviderInstance
	values := []string{providertest.Unique("a-"), providertest.Unique("b-")}
	for _, v := range values {
		insts = append(insts, providertest.Create(t, p, hostileSpec(t, h, ctl, map[string]string{
			providertest.EnvHostileMode: "tmp", providertest.EnvHostileTmpValue: v,
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
	requireIsolation(t, p)
	ctl := providertest.Unique("ctl-")
	spec := hostileSpec(t, h, ctl, map[string]string{providertest.EnvHostileMode: "fill", providertest.EnvHostileFillMB: "64"})
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
		if os.Getenv("CI") == "true" {
			t.Fatalf("no memory cgroup in CI: %v", degraded)
		}
		t.Skipf("no memory cgroup here: %v", degraded)
	}
	ctl := providertest.Unique("ctl-")
	spec := hostileSpec(t, h, ctl, map[string]string{providertest.EnvHostileMode: "cgroup", providertest.EnvHostileFillMB: "256"})
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

// requireIsolation skips a test that needs root and namespaces where they
// are missing, except in CI (CI=true), which runs as root: there it fails.
func requireIsolation(t *testing.T, p *Provider) {
	t.Helper()
	if iso := p.iso(); iso.root && iso.namespaces && iso.disk {
		return
	}
	_, degraded := p.Isolation()
	if os.Getenv("CI") == "true" {
		t.Fatalf("no isolation in CI: %q", degraded)
	}
	t.Skipf("this host does not allow isolation (run as root): %q", degraded)
}

// An instance that a stopped corral left (its runner since gone) holds
// mounts and cgroups; RemoveLeftovers frees them, so its directory can go.
func TestRemoveLeftovers(t *testing.T) {
	h, _ := hostileHarness(t)
	p := h.provider(t)
	requireIsolation(t, p)
	inst, err := p.Create(t.Context(), providertest.Spec(t, h, providertest.Unique("ctl-"), nil))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.dir, inst.ProviderID)
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.killTree(t.Context(), inst.InstanceID, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err == nil {
		t.Fatalf("the instance directory went without unmounting: no tmpfs?")
	}
	if err := RemoveLeftovers(h.dir); err != nil {
		t.Fatalf("RemoveLeftovers: %v", err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(inst.InstanceID)) {
		t.Errorf("a mount of the instance is left")
	}
	for _, d := range p.iso().cg.dirs(inst.InstanceID) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s left: %v", d, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove the directory after RemoveLeftovers: %v", err)
	}
}

// A runner program below a directory that others may not search (such as
// /root) is still reachable to the runner's uid, through a mask.
func TestProvider_ImageInClosedDirectory(t *testing.T) {
	h, _ := hostileHarness(t)
	p := h.provider(t)
	requireIsolation(t, p)
	closed, err := os.MkdirTemp("/var/lib", "corral-closed-")
	if err != nil {
		t.Skipf("no directory out of /tmp: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(closed) })
	img := filepath.Join(closed, "image")
	if err := os.Mkdir(img, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(closed, "runner")
	if err := os.Link(h.exe, prog); err != nil {
		t.Skipf("cannot link the test binary into %s: %v", closed, err)
	}
	if err := os.Symlink(prog, filepath.Join(img, "runner")); err != nil {
		t.Fatal(err)
	}
	spec := providertest.Spec(t, h, providertest.Unique("ctl-"), nil)
	spec.Image = img
	spec.Bootstrap.Command = []string{"runner", providertest.RunnerArg}
	inst := providertest.Create(t, p, spec)
	waitOutput(t, h, inst, "corral-test-runner: pid=")
}
