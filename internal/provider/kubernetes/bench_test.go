package kubernetes_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// BenchmarkCreateScheduled measures one instance from the provider's
// Create to its pod bound to a node by kube-scheduler (tier 1: a Node
// object registered through the API, no kubelet, so the pod is never
// Running), seen through a watch. Each pod is deleted after its iteration
// (outside the timer), with grace period 0.
//
//	scripts/k8s/build.sh
//	go test -run '^$' -bench BenchmarkCreateScheduled -count 6 ./internal/provider/kubernetes/
func BenchmarkCreateScheduled(b *testing.B) {
	e := newEnv(b)
	e.c.AddNode(b, "bench-"+e.ns, "64", "256Gi", map[string]string{"corral.dev/bench": e.ns})
	p := e.provider(b, e.settings)
	ctl := providertest.Unique("ctl-")
	cs := e.c.Admin(b)
	for b.Loop() {
		id := providertest.Unique("inst-")
		spec := corral.InstanceSpec{InstanceID: id, Name: "corral-" + id, ControllerID: ctl, PoolID: "bench",
			Image: "registry.invalid/runner:1", Flavor: corral.Flavor{CPU: 1, MemoryMB: 256},
			Bootstrap: corral.Bootstrap{Command: []string{"run.sh"}, Env: map[string]corral.Secret{"RUNNER_TOKEN": "t"}},
			Deadline:  time.Now().Add(10 * time.Minute)}
		spec.Options = []byte(`{"node_selector":{"corral.dev/bench":"` + e.ns + `"}}`)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		name := "corral-" + spec.InstanceID
		w, err := cs.CoreV1().Pods(e.ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			b.Fatal(err)
		}
		inst, err := p.Create(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		scheduled := false
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted && pod.Spec.NodeName != "" {
				scheduled = true
				break
			}
		}
		w.Stop()
		b.StopTimer()
		if !scheduled {
			pod, _ := cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
			b.Fatalf("pod %s not scheduled within 30s: %+v", inst.ProviderID, pod.Status.Conditions)
		}
		if !strings.HasSuffix(inst.ProviderID, "/"+name) {
			b.Fatalf("provider id %s, want pod %s", inst.ProviderID, name)
		}
		// No kubelet confirms the bound pod's end, so the provider's
		// Delete would wait for it: remove pod and secret at once.
		if err := cs.CoreV1().Pods(e.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			b.Fatal(err)
		}
		if err := cs.CoreV1().Secrets(e.ns).Delete(ctx, name+"-bootstrap", metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		cancel()
		b.StartTimer()
	}
}
