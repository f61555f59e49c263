package k8snode

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

// runnerPath is where the test runner lives in its image.
const runnerPath = "/corral-test-runner"

// hostNetwork gives every instance the pool option host_network: the node
// has no network plugin, so pods use the node's network (its namespace's).
type hostNetwork struct{ *kubernetes.Provider }

func (p hostNetwork) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	if len(spec.Options) == 0 {
		spec.Options = json.RawMessage(`{"host_network": true}`)
	}
	return p.Provider.Create(ctx, spec)
}

// env is a namespace on the node where the user corral has the
// documented Role.
type env struct {
	n   *kubetest.Node
	ns  string
	kc  string
	img string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := getNode(t)
	ns := n.Namespace(t, "corral-node-")
	n.GrantCorral(t, ns)
	kc, err := n.WriteKubeconfig("corral-"+ns+".kubeconfig", n.CorralToken)
	if err != nil {
		t.Fatal(err)
	}
	img := n.ImportImage(t, "corral-test-runner", map[string]string{runnerPath: runnerBinary(t)}, nil)
	return &env{n: n, ns: ns, kc: kc, img: img}
}

func (e *env) settings() kubernetes.Settings {
	return kubernetes.Settings{Kubeconfig: e.kc, Namespace: e.ns, Resync: time.Second}
}

func (e *env) provider(t testing.TB, s kubernetes.Settings) hostNetwork {
	t.Helper()
	p, err := kubernetes.Open("k8s-node", s, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return hostNetwork{p}
}

// harness adapts the provider on the node to providertest: pods run, so
// every subtest that needs a running runner runs.
type harness struct{ e *env }

func (h harness) New(t *testing.T) corral.Provider { return h.e.provider(t, h.e.settings()) }
func (h harness) Image(*testing.T) string          { return h.e.img }
func (h harness) Command() []string                { return []string{runnerPath, providertest.RunnerArg} }

// Output is the runner container's log, read through the API server
// (which reaches the kubelet at the node's address).
func (h harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := h.e.n.Admin(t)
	pods, err := cs.CoreV1().Pods(h.e.ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelInstance + "=" + inst.InstanceID})
	if err != nil || len(pods.Items) == 0 {
		return ""
	}
	b, err := cs.CoreV1().Pods(h.e.ns).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "runner"}).DoRaw(ctx)
	if err != nil {
		return ""
	}
	return string(b)
}

// Processes counts processes on this machine (the node's PID namespace)
// whose command line has the marker: the pod's processes are among them.
func (h harness) Processes(t *testing.T, marker string) int {
	pids, err := providertest.HostProcesses(marker)
	if err != nil {
		t.Fatal(err)
	}
	return len(pids)
}

// Leftovers lists the instance's pod and secret if they still exist.
func (h harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := h.e.n.Admin(t)
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelInstance + "=" + inst.InstanceID}
	var left []string
	pods, err := cs.CoreV1().Pods(h.e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		left = append(left, "pod "+p.Name)
	}
	secs, err := cs.CoreV1().Secrets(h.e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs.Items {
		left = append(left, "secret "+s.Name)
	}
	return left
}

func (harness) SkipReason(test string) string {
	if test == "bad_image_fails_cleanly" {
		return "the kubelet pulls images after the pod is created: a missing image is a stuck-Pending error with the reason (TestNode_MissingImage)"
	}
	return ""
}

// TestNode_Conformance runs the whole provider suite against pods that
// run: runner output, exit, deadline (activeDeadlineSeconds enforced by
// the kubelet), a restarted provider, and Delete killing the whole
// process tree.
func TestNode_Conformance(t *testing.T) {
	providertest.Run(t, harness{e: newEnv(t)})
}

// A pod whose image is not on the node (and no registry is reachable)
// is listed as not running once pending_timeout passes, and the pool's
// next create fails with ErrStuckPending and the kubelet's reason, which
// names the image.
func TestNode_MissingImage(t *testing.T) {
	e := newEnv(t)
	s := e.settings()
	s.PendingTimeout = 5 * time.Second
	p := e.provider(t, s)
	spec := corral.InstanceSpec{InstanceID: "inst-missing-image", Name: "corral-inst-missing-image", ControllerID: "ctl-missing",
		PoolID: "pool-missing", Image: "corral.local/no-such-image:1", Flavor: corral.Flavor{CPU: 1, MemoryMB: 128},
		Bootstrap: corral.Bootstrap{Command: []string{"/run.sh"}}, Deadline: time.Now().Add(time.Hour)}
	inst := providertest.Create(t, p, spec)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, ok := providertest.Find(t, p, "ctl-missing", inst.InstanceID)
		if ok && !got.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod with a missing image is still listed running")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The stuck reason is recorded when the watch reports the pod ended
	// (an event or the next resync), which Exited announces.
	select {
	case id := <-p.Exited():
		if id != inst.InstanceID {
			t.Fatalf("Exited() = %s, want %s", id, inst.InstanceID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Exited() did not report the stuck pod")
	}
	next := spec
	next.InstanceID, next.Name = "inst-after-missing", "corral-inst-after-missing"
	_, err := p.Create(t.Context(), next)
	if !errors.Is(err, kubernetes.ErrStuckPending) || !strings.Contains(err.Error(), "no-such-image") {
		t.Fatalf("next Create: %v, want ErrStuckPending naming the image", err)
	}
	t.Logf("next Create: %v", err)
}

// TestNode_RunnerLog reads a running runner's log through the provider
// (the Role's pods/log, the API server reaching the kubelet): the whole
// output, then only its last bytes when asked for fewer.
func TestNode_RunnerLog(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings())
	spec := providertest.Spec(t, harness{e: e}, providertest.Unique("ctl-"), nil)
	inst := providertest.Create(t, p, spec)
	t.Cleanup(func() { _ = p.Delete(context.Background(), inst) })
	var log string
	providertest.Eventually(t, "the runner's first line in RunnerLog", func() bool {
		var err error
		log, err = p.RunnerLog(t.Context(), inst, 64<<10)
		return err == nil && strings.Contains(log, "corral-test-runner: pid=")
	})
	short, err := p.RunnerLog(t.Context(), inst, 16)
	if err != nil {
		t.Fatal(err)
	}
	// The runner may print more between the reads: the short tail is
	// within the log read after it, never its beginning.
	after, err := p.RunnerLog(t.Context(), inst, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(short) == 0 || len(short) > 16 || !strings.Contains(after, short) || strings.HasPrefix(after, short) {
		t.Errorf("RunnerLog(16) = %q, want the last bytes (at most 16) of %q", short, after)
	}
}
