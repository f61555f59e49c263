package docker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// TestProvider_HostileJob runs providertest's hostile job in a container
// next to a busy one, a corral-like host process holding the webhook
// secret, and a corral-like data directory: every attempt must fail.
func TestProvider_HostileJob(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")

	data := t.TempDir()
	for name, mode := range map[string]os.FileMode{"corral.db": 0o644, "secret.key": 0o600} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(providertest.SecretPrefix+"in-"+name), mode); err != nil {
			t.Fatal(err)
		}
	}
	secret := providertest.Unique(providertest.SecretPrefix)
	marker := providertest.Unique("corral-like-")
	host := exec.Command("/bin/busybox", "sh", "-c", "sleep 120; : "+marker)
	host.Env = []string{"CORRAL_WEBHOOK_SECRET=" + secret}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	other := providertest.Spec(t, h, ctl, nil)
	otherInst := create(t, p, other)
	eventually(t, "the other runner", func() bool {
		return strings.Contains(containerOutput(t, h.cli, otherInst), "corral-test-runner: pid=")
	})
	otherPid := 0
	eventually(t, "the other runner on the host", func() bool {
		otherPid = providertest.FindProc(func(pid int) bool {
			return providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+otherInst.InstanceID) &&
				providertest.ProcHas(pid, "cmdline", providertest.RunnerArg)
		})
		return otherPid > 0
	})
	// The other container's files are in the engine's data root, if
	// anywhere on this host.
	otherDir := h.dataRoot(t)
	if otherDir == "" {
		otherDir = "/var/lib/docker"
	}

	spec := providertest.Spec(t, h, ctl, nil)
	spec.Bootstrap.Command = []string{runnerPath, providertest.HostileArg}
	spec.Bootstrap.Env = map[string]corral.Secret{}
	for k, v := range map[string]string{
		providertest.EnvHostileOtherDir:   otherDir,
		providertest.EnvHostileOtherID:    otherInst.InstanceID,
		providertest.EnvHostileOtherPid:   strconv.Itoa(otherPid),
		providertest.EnvHostileDataDir:    data,
		providertest.EnvHostileHostMarker: marker,
	} {
		spec.Bootstrap.Env[k] = corral.Secret(v)
	}
	inst := create(t, p, spec)
	var out string
	eventually(t, "the hostile job to finish", func() bool {
		out = containerOutput(t, h.cli, inst)
		return strings.Contains(out, "hostile: done")
	})
	t.Logf("hostile job:\n%s", out)
	for _, name := range providertest.HostileAttempts {
		t.Run(name, func(t *testing.T) {
			line := providertest.AttemptLine(out, name)
			if line == "" {
				t.Fatalf("the hostile job did not report attempt %s", name)
			}
			if strings.Contains(line, "SUCCEEDED") {
				t.Errorf("%s", line)
			}
			if strings.Contains(out, secret) {
				t.Errorf("the job printed corral's webhook secret")
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(data, "corral.db")); string(b) != providertest.SecretPrefix+"in-corral.db" {
		t.Errorf("the database file changed: %q", b)
	}
	if providertest.FindProc(func(pid int) bool {
		return pid == otherPid && providertest.ProcHas(pid, "cmdline", providertest.RunnerArg)
	}) == 0 {
		t.Errorf("the other instance's runner %d died", otherPid)
	}
}
