package docker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

func TestProvider_Create_runnerDir(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	h.cfg.ReadOnlyRoot = true
	p := h.provider(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("runner-2.330.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := shSpec(t, h.host, providertest.Unique("ctl-"), `cat `+corral.RunnerMount+`/VERSION
touch `+corral.RunnerMount+`/probe 2>/dev/null && echo runner-dir-writable || echo runner-dir-read-only
echo done; sleep 600`)
	spec.RunnerDir = dir
	inst := create(t, p, spec)
	_, id, _ := splitID(inst.ProviderID)

	got, err := h.cli.ContainerInspect(tctx(t), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var binds []string
	for _, m := range got.Container.Mounts {
		if m.Type == mount.TypeBind {
			binds = append(binds, m.Source+":"+m.Destination)
			if m.Source != dir || m.Destination != corral.RunnerMount || m.RW {
				t.Errorf("bind mount %+v; want %s read-only at %s", m, dir, corral.RunnerMount)
			}
		}
	}
	if len(binds) != 1 {
		t.Errorf("bind mounts %q; want only the runner directory", binds)
	}
	var out string
	eventually(t, "runner output", func() bool {
		out = containerOutput(t, h.cli, inst)
		return strings.Contains(out, "done")
	})
	if !strings.Contains(out, "runner-2.330.0") || !strings.Contains(out, "runner-dir-read-only") {
		t.Errorf("runner output %q; want the file read and the directory read-only", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "probe")); err == nil {
		t.Error("the runner wrote into the runner directory")
	}
}

func TestProvider_Create_runnerDirInvalid(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	p := h.provider(t)
	for _, dir := range []string{"relative/dir", "/"} {
		spec := shSpec(t, h.host, providertest.Unique("ctl-"), "true")
		spec.RunnerDir = dir
		if _, err := p.Create(tctx(t), spec); !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("RunnerDir %q: Create = %v; want ErrBadInput", dir, err)
		}
	}
}

// dindImage builds the sidecar image FROM scratch out of the host's Debian
// docker.io binaries, their shared libraries (found with ldd) and busybox.
func dindImage(t testing.TB, host string) string {
	t.Helper()
	files := map[string]string{}
	for _, name := range []string{"dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker"} {
		bin, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("no %s on this host (apt-get install -y docker.io): %v", name, err)
		}
		if name == "docker" {
			// Debian's CLI; another docker earlier in PATH may be a
			// different build.
			if _, err := os.Stat("/usr/bin/docker"); err == nil {
				bin = "/usr/bin/docker"
			}
		}
		files["/usr/bin/"+name] = bin
		libs, err := exec.Command("ldd", bin).Output()
		if err != nil {
			continue // static
		}
		sc := bufio.NewScanner(bytes.NewReader(libs))
		for sc.Scan() {
			// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
			// "/lib64/ld-linux-x86-64.so.2 (0x...)".
			f := strings.Fields(sc.Text())
			for i, s := range f {
				if strings.HasPrefix(s, "/") && (i == 0 || f[i-1] == "=>") {
					files[s] = s
				}
			}
		}
	}
	return dockertest.ImageOn(t, host, "corral-test-dind", files)
}

// sandboxCaps stands for privileged: the test engine runs in a container
// whose bounding set lacks CAP_SYS_RESOURCE, so privileged containers fail
// there ("unable to apply caps: operation not permitted").
var sandboxCaps = []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_MKNOD",
	"CAP_DAC_READ_SEARCH", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_IPC_LOCK", "CAP_SYS_NICE",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_IPC_OWNER", "CAP_SYSLOG", "CAP_SYS_TIME",
	"CAP_SYS_BOOT", "CAP_LEASE", "CAP_WAKE_ALARM", "CAP_AUDIT_CONTROL", "CAP_MAC_ADMIN",
	"CAP_MAC_OVERRIDE", "CAP_SYS_PACCT", "CAP_SYS_TTY_CONFIG", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ"}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func TestProvider_Create_dockerInDocker(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	h.cfg.ReadOnlyRoot = true
	h.cfg.DindImage = dindImage(t, h.host)
	h.cfg.DindCapabilities = sandboxCaps
	p := h.provider(t)
	hostSock := strings.TrimPrefix(h.host, "unix://")
	hostInfo, err := h.cli.Info(tctx(t), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctl := providertest.Unique("ctl-")
	spec := shSpec(t, h.host, ctl, `echo "host=$DOCKER_HOST"
docker version --format 'server={{.Server.Version}}' 2>&1
docker info --format 'daemon={{.ID}}' 2>&1
for s in `+hostSock+` /var/run/docker.sock /run/docker.sock; do test -e $s && echo "sees $s"; done
echo done; sleep 600`)
	spec.Image = h.cfg.DindImage
	spec.Options = json.RawMessage(`{"docker_in_docker":true}`)
	inst := create(t, p, spec)

	var out string
	eventually(t, "runner output", func() bool {
		out = containerOutput(t, h.cli, inst)
		return strings.Contains(out, "done")
	})
	if !strings.Contains(out, "host="+DindHost) || !strings.Contains(out, "server=") || !strings.Contains(out, "daemon=") {
		t.Fatalf("runner output %q; want docker version and info from its own daemon", out)
	}
	if strings.Contains(out, "daemon="+hostInfo.Info.ID) || strings.Contains(out, "sees ") {
		t.Errorf("runner output %q: the runner reaches the host's daemon %s", out, hostInfo.Info.ID)
	}

	// The sidecar is not an instance; the runner container has no bind.
	list, err := p.List(tctx(t), ctl)
	if err != nil || len(list) != 1 || list[0].ProviderID != inst.ProviderID {
		t.Errorf("List = %+v, %v; want only the instance", list, err)
	}
	_, id, _ := splitID(inst.ProviderID)
	got, err := h.cli.ContainerInspect(tctx(t), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Container.HostConfig.Privileged {
		t.Error("runner container is privileged")
	}
	for _, m := range got.Container.Mounts {
		if m.Type == mount.TypeBind {
			t.Errorf("runner container has bind mount %+v", m)
		}
	}

	if err := p.Delete(tctx(t), inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if left := h.instanceLeftovers(t, inst.InstanceID); len(left) > 0 {
		t.Errorf("left after Delete: %q", left)
	}
}

// An orphan sidecar (its runner container gone: a crashed Create) is
// listed, once old, as an exited instance, and Delete removes it with its
// volume.
func TestProvider_List_orphanSidecar(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	h.cfg.DindImage = dindImage(t, h.host)
	h.cfg.DindCapabilities = sandboxCaps
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")
	spec := shSpec(t, h.host, ctl, "sleep 600")
	spec.Image = h.cfg.DindImage
	spec.Options = json.RawMessage(`{"docker_in_docker":true}`)
	inst := create(t, p, spec)
	_, id, _ := splitID(inst.ProviderID)
	if _, err := h.cli.ContainerRemove(tctx(t), id, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}

	h.cfg.Clock = fixedClock{time.Now().Add(createdGrace + dindReady + time.Minute)}
	later := h.provider(t)
	list, err := later.List(tctx(t), ctl)
	if err != nil || len(list) != 1 || list[0].InstanceID != inst.InstanceID || list[0].Running {
		t.Fatalf("List = %+v, %v; want the orphan sidecar as an exited instance", list, err)
	}
	if err := later.Delete(tctx(t), list[0]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if left := h.instanceLeftovers(t, inst.InstanceID); len(left) > 0 {
		t.Errorf("left after Delete: %q", left)
	}
}

func TestProvider_Create_dockerInDockerRefused(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	p := h.provider(t) // no DindImage
	spec := shSpec(t, h.host, providertest.Unique("ctl-"), "true")
	spec.Options = json.RawMessage(`{"docker_in_docker":true}`)
	if _, err := p.Create(tctx(t), spec); !errors.Is(err, corral.ErrBadInput) {
		t.Errorf("Create without a dind image = %v; want ErrBadInput", err)
	}
}

// instanceLeftovers lists the containers and volumes labelled with the
// instance, and the dangling volumes.
func (h *harness) instanceLeftovers(t testing.TB, instanceID string) []string {
	t.Helper()
	f := make(client.Filters).Add("label", LabelInstance+"="+instanceID)
	cs, err := h.cli.ContainerList(tctx(t), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, c := range cs.Items {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	for _, vf := range []client.Filters{f, make(client.Filters).Add("dangling", "true")} {
		vs, err := h.cli.VolumeList(tctx(t), client.VolumeListOptions{Filters: vf})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs.Items {
			left = append(left, "volume "+v.Name)
		}
	}
	return left
}
