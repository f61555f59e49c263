package plugin

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// TestProvider_HostileJob runs providertest's hostile job through corral's
// plugin provider on the example plugin (namespaces auto, corral-like data
// directory hidden, the plugin's config file in it): every attack fails,
// as on the built-in process provider, although the plugin process that
// started the instance is long gone.
func TestProvider_HostileJob(t *testing.T) {
	data := t.TempDir()
	h := newHarness(t, "auto")
	h.dir = filepath.Join(data, "instances")
	h.cfg = filepath.Join(data, "plugin.json")
	b, _ := json.Marshal(map[string]any{"dir": h.dir, "namespaces": "auto", "hide": []string{data}})
	if err := os.WriteFile(h.cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"corral.db": 0o644, "secret.key": 0o600} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(providertest.SecretPrefix+"in-"+name), mode); err != nil {
			t.Fatal(err)
		}
	}
	p := h.provider(t)
	if err := p.Health(context.Background()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no isolation in CI: %v", err)
		}
		t.Skipf("this host does not allow isolation (run as root): %v", err)
	}
	ctl := providertest.Unique("ctl-")

	secret := providertest.Unique(providertest.SecretPrefix)
	marker := providertest.Unique("corral-like-")
	host := exec.Command("/bin/sh", "-c", "sleep 120; : "+marker)
	host.Env = []string{"CORRAL_WEBHOOK_SECRET=" + secret}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	other := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
	otherPid := 0
	providertest.Eventually(t, "the other runner on the host", func() bool {
		otherPid = providertest.FindProc(func(pid int) bool {
			return providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+other.InstanceID) && providertest.ProcHas(pid, "cmdline", providertest.RunnerArg)
		})
		return otherPid > 0
	})
	otherWork := filepath.Join(h.dir, other.ProviderID, "work")

	spec := providertest.Spec(t, h, ctl, nil)
	spec.Bootstrap.Command = []string{providertest.HostileArg}
	spec.Bootstrap.Env = map[string]corral.Secret{
		providertest.EnvHostileOtherDir:   corral.Secret(otherWork),
		providertest.EnvHostileOtherID:    corral.Secret(other.InstanceID),
		providertest.EnvHostileOtherPid:   corral.Secret(strconv.Itoa(otherPid)),
		providertest.EnvHostileDataDir:    corral.Secret(data),
		providertest.EnvHostileHostMarker: corral.Secret(marker),
	}
	inst := providertest.Create(t, p, spec)
	var out string
	providertest.Eventually(t, "the hostile job to finish", func() bool {
		out = h.Output(t, inst)
		return strings.Contains(out, "hostile: done")
	})
	t.Logf("hostile job:\n%s", out)

	_, after, _ := strings.Cut(out, "hostile: uid=")
	if uid, err := strconv.Atoi(strings.Fields(after + " x")[0]); err != nil || uid < process.DefaultUIDBase {
		t.Errorf("the job runs as uid %q, want one from %d", strings.Fields(after + " x")[0], process.DefaultUIDBase)
	}
	for _, name := range providertest.HostileAttempts {
		line := providertest.AttemptLine(out, name)
		switch {
		case line == "":
			t.Errorf("the hostile job did not report attempt %s", name)
		case strings.Contains(line, "SUCCEEDED"):
			t.Errorf("%s", line)
		}
	}
	if strings.Contains(out, secret) {
		t.Errorf("the job printed corral's webhook secret")
	}
	if _, err := os.Lstat(filepath.Join(otherWork, "pwned")); err == nil {
		t.Errorf("the other instance's directory holds the job's file")
	}
	if b, _ := os.ReadFile(filepath.Join(data, "corral.db")); string(b) != providertest.SecretPrefix+"in-corral.db" {
		t.Errorf("the database file changed: %q", b)
	}
	if !slices.Contains(envProcesses(t, "CORRAL_INSTANCE_ID="+other.InstanceID), otherPid) {
		t.Errorf("the other instance's runner %d died", otherPid)
	}
}
