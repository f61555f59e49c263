package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// TestKubernetes_RunnerLog: tier 1 has no kubelet, so no pod has a log;
// RunnerLog says why, as an error (never an empty log): a pod on no node
// and a pod bound to a node whose kubelet never started it are
// ErrUnavailable naming Pending; a pod that does not exist is
// ErrNotFound (the API's 404, which the Role's pods/log right lets
// through: without it the API answers 403).
func TestKubernetes_RunnerLog(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings)
	ctl := providertest.Unique("ctl-")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	spec := providertest.Spec(t, harness{e: e}, ctl, nil)
	spec.Options = json.RawMessage(`{"node_selector":{"corral.dev/nowhere":"x"}}`)
	unscheduled := providertest.Create(t, p, spec)
	out, err := p.RunnerLog(ctx, unscheduled, 16<<10)
	t.Logf("unscheduled pod: %v", err)
	if !errors.Is(err, corral.ErrUnavailable) || !strings.Contains(err.Error(), "no node") || out != "" {
		t.Errorf("RunnerLog of an unscheduled pod = %q, %v; want ErrUnavailable saying it is on no node", out, err)
	}

	bound := createBound(t, e, p, ctl, fakeNode(t, e))
	t.Cleanup(func() { // no kubelet removes it
		ns, name, _ := strings.Cut(bound.ProviderID, "/")
		_ = e.c.Admin(t).CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	// The provider reads the pod from its informer's cache, which learns
	// of the binding a moment after the API server (createBound asks the
	// API server).
	providertest.Eventually(t, "the provider's cache to see the pod bound", func() bool {
		_, err := p.RunnerLog(ctx, bound, 0)
		return err == nil || !strings.Contains(err.Error(), "no node")
	})
	out, err = p.RunnerLog(ctx, bound, 0)
	t.Logf("pod bound to a node without a kubelet: %v", err)
	if !errors.Is(err, corral.ErrUnavailable) || !strings.Contains(err.Error(), "Pending") || out != "" {
		t.Errorf("RunnerLog of a bound Pending pod = %q, %v; want ErrUnavailable saying it is Pending", out, err)
	}

	for _, id := range []string{e.ns + "/corral-no-such-pod", "not-a-pod-id", ""} {
		inst := corral.ProviderInstance{ProviderID: id, InstanceID: "no-such-instance"}
		if out, err := p.RunnerLog(ctx, inst, 0); !errors.Is(err, corral.ErrNotFound) || out != "" {
			t.Errorf("RunnerLog(%q) = %q, %v; want ErrNotFound", id, out, err)
		}
	}
}
