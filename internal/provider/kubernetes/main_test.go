package kubernetes_test

import (
	"context"
	"os"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

// cluster is one control plane (etcd, kube-apiserver, kube-scheduler) for
// the package's tests; each test takes its own namespace.
var cluster kubetest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

// env is a namespace on the shared cluster where the user corral has the
// documented Role, and settings of a provider instance that use it.
type env struct {
	c        *kubetest.Cluster
	ns       string
	settings kubernetes.Settings
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := cluster.Get(t)
	ns := c.Namespace(t, "corral-test-")
	c.GrantCorral(t, ns)
	// The pods must pass the restricted Pod Security Standard: the API
	// server's PodSecurity admission refuses them otherwise.
	restricted(t, c, ns)
	return &env{c: c, ns: ns, settings: kubernetes.Settings{Namespace: ns, Resync: time.Second}}
}

// provider opens a provider instance as the user corral, through a
// kubeconfig file (the way corral's config names a cluster).
func (e *env) provider(t testing.TB, s kubernetes.Settings) *kubernetes.Provider {
	t.Helper()
	if s.Kubeconfig == "" {
		kc, err := e.c.WriteKubeconfig("corral-"+e.ns+".kubeconfig", e.c.CorralToken)
		if err != nil {
			t.Fatal(err)
		}
		s.Kubeconfig = kc
	}
	p, err := kubernetes.Open("k8s-test", s, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// harness adapts the provider to providertest. No kubelet runs (tier 1):
// pods are stored, listed, watched and deleted but never start, so the
// subtests that need a running runner skip, saying so.
type harness struct{ e *env }

func (h harness) New(t *testing.T) corral.Provider { return h.e.provider(t, h.e.settings) }
func (h harness) Image(*testing.T) string          { return "registry.invalid/corral-test-runner:1" }
func (h harness) Command() []string                { return []string{"/corral", providertest.RunnerArg} }
func (h harness) Output(*testing.T, corral.ProviderInstance) string {
	return ""
}
func (h harness) Processes(*testing.T, string) int { return 0 }

// Leftovers lists the instance's pod and secret if they still exist.
func (h harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := h.e.c.Admin(t)
	pods, err := cs.CoreV1().Pods(h.e.ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelInstance + "=" + inst.InstanceID})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range pods.Items {
		left = append(left, "pod "+p.Name)
	}
	secs, err := cs.CoreV1().Secrets(h.e.ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelInstance + "=" + inst.InstanceID})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for _, s := range secs.Items {
		left = append(left, "secret "+s.Name)
	}
	return left
}

const noKubelet = "tier 1: no kubelet runs, pods never start (docs/kubernetes.md)"

func (harness) SkipReason(test string) string {
	switch test {
	case "bootstrap_env_and_files":
		return noKubelet + "; TestKubernetes_PodSpec checks the secret, env and mounts instead"
	case "runner_exit_is_not_running", "delete_kills_whole_tree":
		return noKubelet
	case "deadline_kills_without_corral":
		return noKubelet + "; activeDeadlineSeconds (checked in TestKubernetes_PodSpec) is enforced by the kubelet"
	case "bad_image_fails_cleanly":
		return "the kubelet pulls images after the pod is created: a missing image is a stuck-Pending error (TestKubernetes_StuckPending/image_pull)"
	}
	return ""
}

func TestKubernetes_Conformance(t *testing.T) {
	providertest.Run(t, harness{e: newEnv(t)})
}

func restricted(t testing.TB, c *kubetest.Cluster, ns string) {
	t.Helper()
	podSecurity(t, c, ns, "restricted")
}

// podSecurity sets the Pod Security Standard the namespace enforces.
func podSecurity(t testing.TB, c *kubetest.Cluster, ns, level string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"` + level + `"}}}`)
	if _, err := c.Admin(t).CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}
