package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// TestProvider_HostileJob runs providertest's hostile job in a VM next to
// a busy one, a corral-like host process holding the webhook secret and a
// corral-like data directory: every attempt must fail, and the other VM
// must live on.
func TestProvider_HostileJob(t *testing.T) {
	h := newHarness(t)
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
	host := exec.Command("/bin/sh", "-c", "sleep 300; : "+marker)
	host.Env = []string{"CORRAL_WEBHOOK_SECRET=" + secret}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	other, err := p.Create(t.Context(), providertest.Spec(t, h, ctl, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Delete(t.Context(), other) })
	waitFor(t, "the other runner", func() bool { return strings.Contains(consoleOf(h, other), "corral-test-runner: pid=") })
	otherSt, err := readState(p.InstanceDir(other.ProviderID))
	if err != nil {
		t.Fatal(err)
	}

	spec := providertest.Spec(t, h, ctl, nil)
	spec.Bootstrap.Command = []string{providertest.HostileArg}
	spec.Bootstrap.Env = map[string]corral.Secret{}
	for k, v := range map[string]string{
		providertest.EnvHostileOtherDir:   p.InstanceDir(other.ProviderID),
		providertest.EnvHostileOtherID:    other.InstanceID,
		providertest.EnvHostileOtherPid:   strconv.Itoa(otherSt.Pid),
		providertest.EnvHostileDataDir:    data,
		providertest.EnvHostileHostMarker: marker,
	} {
		spec.Bootstrap.Env[k] = corral.Secret(v)
	}
	inst, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Delete(t.Context(), inst) })
	var out string
	waitFor(t, "the hostile job to finish", func() bool {
		out = consoleOf(h, inst)
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
		})
	}
	if strings.Contains(out, secret) {
		t.Errorf("the job printed corral's webhook secret")
	}
	if b, _ := os.ReadFile(filepath.Join(data, "corral.db")); string(b) != providertest.SecretPrefix+"in-corral.db" {
		t.Errorf("the database file changed: %q", b)
	}
	if !alive(otherSt) {
		t.Errorf("the other instance's VM (QEMU %d) died", otherSt.Pid)
	}
	if got, ok := providertest.Find(t, p, ctl, other.InstanceID); !ok || !got.Running {
		t.Errorf("the other instance is listed as %+v (found %v), want running", got, ok)
	}
}
