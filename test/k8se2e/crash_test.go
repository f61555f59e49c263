// Package k8se2e runs `corral serve` as a process against the stand-in
// GitHub with a pool on the kubernetes provider, on a real kube-apiserver
// (internal/testutil/kubetest; tier 1: no kubelet, so pods stay Pending and
// runners never come online). The harness is internal/testutil/e2etest.
//
// Without the Kubernetes binaries the tests skip; with CI=true they fail.
package k8se2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

const controllerID = "k8se2e"

var (
	bin     string
	cluster kubetest.Shared
)

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&bin, e2etest.BuildOptions{}, func() int {
		code := m.Run()
		cluster.Stop()
		return code
	}))
}

// pods lists corral's pods in the namespace: name -> phase.
func pods(t testing.TB, c *kubetest.Cluster, ns string) map[string]corev1.PodPhase {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Admin(t).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelController + "=" + controllerID})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.PodPhase{}
	for _, p := range l.Items {
		out[p.Name] = p.Status.Phase
	}
	return out
}

// TestKubernetes_CrashRestart kills corral with SIGKILL while its pods
// exist, then, while it is down, makes one of them end (its phase
// Succeeded, as the kubelet writes when the runner exits) and plants a pod
// of corral's controller that its store never knew (what a create
// interrupted between the cluster and the store leaves). The restarted
// corral deletes both, the ended pod's secret with it, and keeps the pods
// its store still needs.
func TestKubernetes_CrashRestart(t *testing.T) {
	c := cluster.Get(t)
	ns := c.Namespace(t, "corral-e2e-")
	c.GrantCorral(t, ns)
	kc, err := c.WriteKubeconfig("e2e.kubeconfig", c.CorralToken)
	if err != nil {
		t.Fatal(err)
	}
	gh := e2etest.NewGitHub(t, standin.Options{Seed: 3})
	listen := e2etest.FreePort(t)
	gh.Hook(listen, "e2e")
	cfg := e2etest.Config{Listen: listen, DataDir: filepath.Join(t.TempDir(), "data"), ControllerID: controllerID,
		Targets: []e2etest.Target{gh.Target("e2e", "corral-k")},
		Pools: []e2etest.Pool{{ID: "k8s", Labels: []string{"corral"}, Provider: "k8s", Image: "registry.invalid/runner:1",
			Flavor: "1cpu1gb1gb", MaxInstances: 3, BootTimeout: "10m"}},
		Providers: []e2etest.Provider{{Name: "k8s", Type: "kubernetes", Settings: []string{
			"kubeconfig: " + kc, "namespace: " + ns, "resync: 1s"}}}}
	serve := func() *e2etest.Proc {
		return e2etest.Start(t, e2etest.Serve{Bin: bin, Config: e2etest.WriteConfig(t, cfg), Listen: listen, Env: gh.Env()})
	}
	p := serve()
	for i := range 3 {
		gh.Queue(fmt.Sprint("job-", i), []string{"self-hosted", "corral", fmt.Sprint("run-", i)}, time.Second)
	}
	var before map[string]corev1.PodPhase
	e2etest.WaitFor(t, 60*time.Second, "three pods", func() bool { before = pods(t, c, ns); return len(before) == 3 })
	p.Kill()
	t.Logf("SIGKILL with pods %v", before)

	// While corral is down: one runner "exits", and an orphan appears.
	admin := c.Admin(t)
	var ended string
	for name := range before {
		ended = name
		break
	}
	// The scheduler may write the pod meanwhile: read and write again on
	// a conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := admin.CoreV1().Pods(ns).Get(t.Context(), ended, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod.Status.Phase = corev1.PodSucceeded
		_, err = admin.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	planter, err := kubernetes.Open("planter", kubernetes.Settings{Kubeconfig: kc, Namespace: ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer planter.Close()
	orphan, err := planter.Create(t.Context(), corral.InstanceSpec{InstanceID: "orphan-of-a-crashed-create", Name: "orphan-of-a-crashed-create",
		ControllerID: controllerID, PoolID: "k8s", Image: "registry.invalid/runner:1",
		Bootstrap: corral.Bootstrap{Command: []string{"run.sh"}}, Deadline: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	restart := time.Now()
	p = serve()
	// The provider deletes a pod, then its secret: both gone, not only the
	// pod (a terminal pod goes at once, a moment before its secret).
	e2etest.WaitFor(t, 60*time.Second, "the orphan, the ended pod and its secret deleted", func() bool {
		now := pods(t, c, ns)
		_, o := now["orphan-of-a-crashed-create"]
		_, e := now[ended]
		_, err := admin.CoreV1().Secrets(ns).Get(t.Context(), ended+"-bootstrap", metav1.GetOptions{})
		return !o && !e && apierrors.IsNotFound(err)
	})
	took := time.Since(restart)
	// The pods still needed stay: the two jobs not served yet keep theirs
	// (and the ended one's job gets a new pod).
	e2etest.WaitFor(t, 30*time.Second, "three pods again", func() bool { return len(pods(t, c, ns)) == 3 })
	now := pods(t, c, ns)
	for name := range before {
		if _, ok := now[name]; !ok && name != ended {
			t.Errorf("pod %s, still needed, was deleted", name)
		}
	}
	p.Stop(t)
	t.Logf("orphan %s and ended pod %s removed %s after the restart; pods now %v", orphan.ProviderID, ended, took.Round(time.Millisecond), now)
}
