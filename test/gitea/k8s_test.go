package gitea

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

// podStep proves that a step ran in the runner's pod: there /bin/sh is
// busybox, gitea-runner is at /bin, and the kubernetes provider's
// variables name the pod.
const podStep = `test "$(readlink /bin/sh)" = busybox && test -x /bin/gitea-runner && test -n "$CORRAL_INSTANCE_ID" && echo job in pod $CORRAL_INSTANCE_NAME`

// k8sRig is a rig whose only pool, "pods" (label corral-k), runs each
// runner in a pod on a one-node cluster (kubetest.StartNode), with the
// host network so that the runner reaches Gitea on 127.0.0.1 — all of it
// inside the node's private namespaces.
type k8sRig struct {
	*rig
	node *kubetest.Node
	ns   string
	kc   string
}

func newK8sRig(t *testing.T, n *kubetest.Node, img string, poolMax int) *k8sRig {
	t.Helper()
	r := newRig(t)
	r.cfg.ControllerID = "gitea-" + r.id
	ns := n.Namespace(t, "corral-gitea-")
	n.GrantCorral(t, ns)
	kc, err := n.WriteKubeconfig("corral.kubeconfig", n.CorralToken)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Pools = []e2etest.Pool{{ID: "pods", Labels: []string{"corral-k"}, Provider: "k8s", Image: img, Flavor: "1cpu1gb1gb",
		MaxInstances: poolMax, BootTimeout: "120s", MaxJobRuntime: "5m", IdleTimeout: "10s",
		Options: "{host_network: true}"}}
	r.cfg.Providers = []e2etest.Provider{{Name: "k8s", Type: "kubernetes", Settings: []string{
		"kubeconfig: " + kc, "namespace: " + ns, "resync: 2s"}}}
	return &k8sRig{rig: r, node: n, ns: ns, kc: kc}
}

func (r *k8sRig) pushSteps(t testing.TB, name string, n int, step string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\non:\n  push:\n    paths: ['.gitea/workflows/%s.yml']\njobs:\n", name, name)
	for i := range n {
		fmt.Fprintf(&b, "  j%02d:\n    runs-on: [self-hosted, corral-k]\n    steps:\n      - run: %s\n", i, step)
	}
	if err := r.g.pushWorkflow(r.repo, name+".yml", b.String()); err != nil {
		t.Fatal(err)
	}
}

// objects lists what is left in the namespace: pods (with their phase)
// and secrets other than service-account ones.
func (r *k8sRig) objects(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := r.node.Admin(t)
	var out []string
	pods, err := cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		out = append(out, fmt.Sprintf("pod %s (%s)", p.Name, p.Status.Phase))
	}
	secs, err := cs.CoreV1().Secrets(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs.Items {
		if s.Type != corev1.SecretTypeServiceAccountToken {
			out = append(out, "secret "+s.Name)
		}
	}
	return out
}

func (r *k8sRig) runningPods(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := r.node.Admin(t).CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			n++
		}
	}
	return n
}

// waitJobs waits until the n jobs completed at Gitea and checks that each
// succeeded on its own runner of corral's.
func (r *k8sRig) waitJobs(t testing.TB, n int, within time.Duration, seen *int) {
	t.Helper()
	var js []job
	waitFor(t, within, fmt.Sprintf("%d jobs completed at Gitea", n), func() bool {
		if seen != nil {
			*seen = max(*seen, r.runningPods(t))
		}
		js = r.giteaJobs(t)
		done := 0
		for _, j := range js {
			if j.Status == "completed" {
				done++
			}
		}
		return len(js) == n && done == n
	})
	runners := map[string]bool{}
	for _, j := range js {
		if j.Conclusion != "success" {
			t.Errorf("job %d (%s) concluded %q, want success; its log:\n%s", j.ID, j.Name, j.Conclusion, r.g.jobLog(r.repo, j.ID))
		}
		if !strings.HasPrefix(j.RunnerName, "corral-"+r.id) {
			t.Errorf("job %d ran on %q, not a runner of corral's", j.ID, j.RunnerName)
		}
		if runners[j.RunnerName] {
			t.Errorf("runner %s ran two jobs", j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
}

// waitClean waits until Gitea lists no runner of the repository and the
// namespace holds no pod and no secret of corral's.
func (r *k8sRig) waitClean(t testing.TB) {
	t.Helper()
	var names, left []string
	waitFor(t, 90*time.Second, "no runner registration and nothing left in the namespace", func() bool {
		var err error
		names, err = r.g.runners(r.repo)
		left = r.objects(t)
		return err == nil && len(names) == 0 && len(left) == 0
	})
}

// TestGitea_Kubernetes runs Gitea jobs in pods of a real kubelet (tier 2),
// in the node's private namespaces (the whole test runs there: Gitea,
// corral and the cluster share its loopback).
func TestGitea_Kubernetes(t *testing.T) {
	if !kubetest.Isolated() {
		if skipReason != "" {
			t.Skip("no Gitea binaries: " + skipReason)
		}
		t.Setenv(envPrebuiltCorral, corralBin) // the isolated run does not build corral again
		kubetest.RunIsolated(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := kubetest.StartNode(ctx, t, kubetest.NodeOptions{})
	t.Cleanup(n.Stop)
	img := n.ImportImage(t, "corral-gitea-runner", map[string]string{"/bin/gitea-runner": runnerBin}, nil)
	// jobs_in_pods: three jobs, each in its own pod, succeed at Gitea;
	// afterwards Gitea lists no runner of corral's and the namespace is
	// empty.
	t.Run("jobs_in_pods", func(t *testing.T) {
		const jobs = 3
		r := newK8sRig(t, n, img, 4)
		p := r.start(t)
		start := time.Now()
		r.pushSteps(t, "pods", jobs, podStep)
		seen := 0
		r.waitJobs(t, jobs, 4*time.Minute, &seen)
		elapsed := time.Since(start)
		if seen == 0 {
			t.Error("never saw a running pod")
		}
		r.waitClean(t)
		t.Logf("%d jobs in pods in %s (clean after %s), up to %d pods running at once",
			jobs, elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), seen)
		p.Stop(t)
	})
	// sigkill_while_pods_run: corral is killed with SIGKILL while two
	// runner pods run jobs; while it is down an orphan pod of its
	// controller appears (what a create interrupted between the cluster
	// and the store leaves). The restarted corral deletes the orphan, the
	// jobs still succeed, and nothing is left.
	t.Run("sigkill_while_pods_run", func(t *testing.T) {
		const jobs = 2
		step := podStep + " && sleep 8"
		r := newK8sRig(t, n, img, 3)
		p := r.start(t)
		start := time.Now()
		r.pushSteps(t, "crash", jobs, step)
		waitFor(t, 3*time.Minute, "two runner pods running", func() bool { return r.runningPods(t) == jobs })
		p.Kill()
		planter, err := kubernetes.Open("planter", kubernetes.Settings{Kubeconfig: r.kc, Namespace: r.ns}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer planter.Close()
		orphan, err := planter.Create(t.Context(), corral.InstanceSpec{InstanceID: "orphan-of-a-crashed-create", Name: "orphan-of-a-crashed-create",
			ControllerID: r.cfg.ControllerID, PoolID: "pods", Image: r.cfg.Pools[0].Image,
			Bootstrap: corral.Bootstrap{Command: []string{"sleep", "600"}}, Deadline: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		restart := time.Now()
		p = r.start(t)
		waitFor(t, 60*time.Second, "the orphan pod deleted", func() bool {
			for _, o := range r.objects(t) {
				if strings.Contains(o, orphan.ProviderID) {
					return false
				}
			}
			return true
		})
		orphanGone := time.Since(restart)
		r.waitJobs(t, jobs, 3*time.Minute, nil)
		r.waitClean(t)
		t.Logf("orphan gone %s after the restart; %d jobs succeeded, clean %s after the restart (%s after the push)",
			orphanGone.Round(time.Millisecond), jobs, time.Since(restart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		p.Stop(t)
	})
}

// envPrebuiltCorral names a corral binary TestMain uses instead of
// building one (set by TestGitea_Kubernetes for its isolated run).
const envPrebuiltCorral = "CORRAL_GITEA_PREBUILT_CORRAL"
