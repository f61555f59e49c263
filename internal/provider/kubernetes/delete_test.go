package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// podGone reports whether the API server no longer has the pod.
func podGone(t *testing.T, e *env, inst corral.ProviderInstance) bool {
	t.Helper()
	ns, name, _ := strings.Cut(inst.ProviderID, "/")
	_, err := e.c.Admin(t).CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return apierrors.IsNotFound(err)
}

func secretGone(t *testing.T, e *env, inst corral.ProviderInstance) bool {
	t.Helper()
	ns, name, _ := strings.Cut(inst.ProviderID, "/")
	_, err := e.c.Admin(t).CoreV1().Secrets(ns).Get(t.Context(), name+"-bootstrap", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return apierrors.IsNotFound(err)
}

// fakeNode registers a Ready node without a kubelet (kubetest.AddNode),
// tainted so that only pods with the returned pool options (a node
// selector and a toleration for it) are bound to it.
func fakeNode(t *testing.T, e *env) json.RawMessage {
	t.Helper()
	name := "fake-" + e.ns
	e.c.AddNode(t, name, "16", "64Gi", map[string]string{"corral.dev/test-node": e.ns})
	nodes := e.c.Admin(t).CoreV1().Nodes()
	n, err := nodes.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = []corev1.Taint{{Key: "corral.dev/test-node", Value: e.ns, Effect: corev1.TaintEffectNoSchedule}}
	if _, err := nodes.Update(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(`{"node_selector":{"corral.dev/test-node":"` + e.ns + `"},` +
		`"tolerations":[{"key":"corral.dev/test-node","operator":"Equal","value":"` + e.ns + `","effect":"NoSchedule"}]}`)
}

// createBound creates an instance (without providertest's cleanup, which
// would wait for a pod no kubelet removes) and waits until kube-scheduler
// has bound its pod to a node.
func createBound(t *testing.T, e *env, p *kubernetes.Provider, ctl string, opts json.RawMessage) corral.ProviderInstance {
	t.Helper()
	spec := providertest.Spec(t, harness{e: e}, ctl, map[string]corral.Secret{"RUNNER_TOKEN": "t"})
	spec.Options = opts
	inst, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	providertest.Eventually(t, "kube-scheduler to bind the pod to the fake node", func() bool {
		return getPod(t, e, inst).Spec.NodeName != ""
	})
	return inst
}

// TestKubernetes_DeleteUnscheduled: a pod never bound to a node (its node
// selector matches none) is removed by the API server at once even with
// Delete's grace period, so it is gone, with its secret, when Delete
// returns, and Delete does not wait.
func TestKubernetes_DeleteUnscheduled(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings)
	ctl := providertest.Unique("ctl-")
	spec := providertest.Spec(t, harness{e: e}, ctl, map[string]corral.Secret{"RUNNER_TOKEN": "t"})
	spec.Options = json.RawMessage(`{"node_selector":{"corral.dev/nowhere":"x"}}`)
	inst, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Delete(t.Context(), inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Delete of an unscheduled pod took %s", d)
	}
	if !podGone(t, e, inst) || !secretGone(t, e, inst) {
		t.Errorf("pod or secret still there right after Delete")
	}
	if _, ok := providertest.Find(t, p, ctl, inst.InstanceID); ok {
		t.Errorf("deleted pod still listed")
	}
}

// TestKubernetes_DeleteBound: a pod bound to a node whose kubelet never
// confirms (a node object without a kubelet) stays terminating after
// Delete, which returns nil after its bounded wait; it is listed as not
// running. Once force_delete_after has passed, List force-deletes it; a
// later Delete force-deletes at once; and Delete itself force-deletes
// during its wait when force_delete_after ends within it.
func TestKubernetes_DeleteBound(t *testing.T) {
	e := newEnv(t)
	opts := fakeNode(t, e)
	p := e.provider(t, e.settings) // force_delete_after: default 30s
	ctl := providertest.Unique("ctl-")
	x := createBound(t, e, p, ctl, opts)
	y := createBound(t, e, p, ctl, opts)

	start := time.Now()
	if err := p.Delete(t.Context(), x); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	took := time.Since(start)
	t.Logf("Delete of a bound pod returned after %s", took.Round(time.Millisecond))
	if took < 14*time.Second || took > 25*time.Second {
		t.Errorf("Delete returned after %s, want its 15 s wait", took)
	}
	pod := getPod(t, e, x)
	if pod.DeletionTimestamp == nil || pod.DeletionGracePeriodSeconds == nil || *pod.DeletionGracePeriodSeconds != 1 {
		t.Errorf("pod after Delete: deletionTimestamp %v, grace %v; want terminating with grace 1", pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds)
	}
	if !secretGone(t, e, x) {
		t.Errorf("the bootstrap secret is still there after Delete")
	}
	if got, ok := providertest.Find(t, p, ctl, x.InstanceID); !ok || got.Running {
		t.Errorf("terminating pod listed as %+v (found %v), want listed not running", got, ok)
	}

	// Delete is bounded by its context too.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	start = time.Now()
	err := p.Delete(ctx, y)
	cancel()
	if err != nil || time.Since(start) > 5*time.Second {
		t.Errorf("Delete with a 1 s context: %v after %s, want nil at once", err, time.Since(start))
	}
	if podGone(t, e, y) {
		t.Fatalf("pod %s gone without a kubelet or a force delete", y.ProviderID)
	}

	// A provider with force_delete_after 5s: x has been terminating past
	// it (15 s), y not yet.
	s := e.settings
	s.ForceDeleteAfter = 5 * time.Second
	pf := e.provider(t, s)
	list, err := pf.List(t.Context(), ctl)
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range list {
		if pi.InstanceID == x.InstanceID {
			t.Errorf("List listed the pod it force-deleted")
		}
	}
	if !podGone(t, e, x) {
		t.Errorf("List did not force-delete the pod terminating past force_delete_after")
	}
	if podGone(t, e, y) {
		t.Fatalf("List force-deleted a pod terminating for less than force_delete_after")
	}

	// Once y is overdue, Delete force-deletes it at once.
	dt := getPod(t, e, y).DeletionTimestamp.Time
	time.Sleep(time.Until(dt.Add(s.ForceDeleteAfter + 1500*time.Millisecond)))
	start = time.Now()
	if err := pf.Delete(t.Context(), y); err != nil {
		t.Fatalf("Delete of an overdue pod: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second || !podGone(t, e, y) {
		t.Errorf("Delete of an overdue pod: gone %v after %s, want gone at once", podGone(t, e, y), d)
	}

	// A pod deleted by pf is force-deleted within Delete's wait, when its
	// deletionTimestamp (the delete + 1 s) + 5 s comes.
	z := createBound(t, e, pf, ctl, opts)
	start = time.Now()
	if err := pf.Delete(t.Context(), z); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if d := time.Since(start); d < 4*time.Second || d > 12*time.Second || !podGone(t, e, z) {
		t.Errorf("Delete with force_delete_after 5s: gone %v after %s, want gone after about 6-7 s", podGone(t, e, z), d)
	}
}

func TestKubernetes_ForceDeleteAfterValidate(t *testing.T) {
	var fe provider.FieldErrors
	err := (&kubernetes.Settings{ForceDeleteAfter: -time.Second}).Validate()
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "force_delete_after" {
		t.Errorf("Validate of a negative force_delete_after = %v, want one error on force_delete_after", err)
	}
	if err := (&kubernetes.Settings{ForceDeleteAfter: time.Second}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
