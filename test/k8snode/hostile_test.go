package k8snode

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNode_HostileJob runs providertest's hostile job in a pod on the
// node, next to a busy runner pod, a corral-like process of this machine
// holding the webhook secret, and a corral-like data directory: every
// attempt must fail. The pods use the host network (no network plugin
// here), so this covers files, processes and privileges, not the network
// (docs/kubernetes.md).
func TestNode_HostileJob(t *testing.T) {
	e := newEnv(t)
	h := harness{e: e}
	p := e.provider(t, e.settings())
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

	otherInst := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
	eventually(t, "the other runner", func() bool {
		return strings.Contains(h.Output(t, otherInst), "corral-test-runner: pid=")
	})
	otherPid := 0
	eventually(t, "the other runner on this machine", func() bool {
		otherPid = providertest.FindProc(func(pid int) bool {
			return providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+otherInst.InstanceID) &&
				providertest.ProcHas(pid, "cmdline", providertest.RunnerArg)
		})
		return otherPid > 0
	})
	// The other pod's workspace (an emptyDir) on the node.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := e.n.Admin(t).CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelInstance + "=" + otherInst.InstanceID})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the other pod: %v, %d", err, len(pods.Items))
	}
	otherDir := filepath.Join("/var/lib/kubelet/pods", string(pods.Items[0].UID), "volumes/kubernetes.io~empty-dir/workspace")
	if _, err := os.Stat(otherDir); err != nil {
		t.Fatalf("the other pod's workspace is not where the test looks: %v", err)
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
	inst := providertest.Create(t, p, spec)
	var out string
	eventually(t, "the hostile job to finish", func() bool {
		out = h.Output(t, inst)
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
	if _, err := os.Stat(filepath.Join(otherDir, "pwned")); err == nil {
		t.Errorf("the hostile job wrote into the other pod's workspace")
	}
	if providertest.FindProc(func(pid int) bool {
		return pid == otherPid && providertest.ProcHas(pid, "cmdline", providertest.RunnerArg)
	}) == 0 {
		t.Errorf("the other instance's runner %d died", otherPid)
	}
}
