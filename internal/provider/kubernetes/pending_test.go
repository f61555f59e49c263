package kubernetes_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// TestKubernetes_StuckPending: a pod still Pending after pending_timeout is
// listed as not running and reported on Exited, and the next create of its
// pool fails with ErrStuckPending and Kubernetes's reason (once per stuck
// pod: the create after that goes ahead).
func TestKubernetes_StuckPending(t *testing.T) {
	for _, c := range []struct {
		name, want string
		opts       string
		kubelet    func(t *testing.T, e *env, pod *corev1.Pod) // what a kubelet would write
	}{
		// kube-scheduler finds no node with the label.
		{name: "unschedulable", want: "Unschedulable", opts: `{"node_selector":{"corral.dev/nowhere":"x"}}`},
		// The kubelet cannot pull the image (written as the kubelet would:
		// none runs here).
		{name: "image_pull", want: "ErrImagePull: pull access denied", opts: `{"node_selector":{"corral.dev/nowhere":"y"}}`,
			kubelet: func(t *testing.T, e *env, pod *corev1.Pod) {
				// kube-scheduler writes the pod's status too (Unschedulable):
				// on a conflict, read the pod again and write again.
				pods := e.c.Admin(t).CoreV1().Pods(pod.Namespace)
				err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
					cur, err := pods.Get(t.Context(), pod.Name, metav1.GetOptions{})
					if err != nil {
						return err
					}
					cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "runner", Image: cur.Spec.Containers[0].Image,
						State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "pull access denied"}}}}
					_, err = pods.UpdateStatus(t.Context(), cur, metav1.UpdateOptions{})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.settings
			s.PendingTimeout, s.Resync = 2*time.Second, 300*time.Millisecond
			p := e.provider(t, s)
			h := harness{e: e}
			ctl := providertest.Unique("ctl-")
			spec := providertest.Spec(t, h, ctl, nil)
			spec.Options = json.RawMessage(c.opts)
			inst := providertest.Create(t, p, spec)
			if c.name == "unschedulable" {
				providertest.Eventually(t, "the scheduler to mark the pod unschedulable", func() bool {
					for _, cond := range getPod(t, e, inst).Status.Conditions {
						if cond.Type == corev1.PodScheduled && cond.Reason == corev1.PodReasonUnschedulable {
							return true
						}
					}
					return false
				})
			}
			if c.kubelet != nil {
				c.kubelet(t, e, getPod(t, e, inst))
			}
			if got, ok := providertest.Find(t, p, ctl, inst.InstanceID); !ok || !got.Running {
				t.Fatalf("before the pending timeout: %+v (found %v), want running", got, ok)
			}
			providertest.Eventually(t, "the stuck pod to be listed as not running", func() bool {
				got, ok := providertest.Find(t, p, ctl, inst.InstanceID)
				return ok && !got.Running
			})
			select {
			case id := <-p.Exited():
				if id != inst.InstanceID {
					t.Errorf("Exited() = %s, want %s", id, inst.InstanceID)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("Exited() did not report the stuck pod")
			}
			next := providertest.Spec(t, h, ctl, nil)
			_, err := p.Create(t.Context(), next)
			if !errors.Is(err, kubernetes.ErrStuckPending) || !errors.Is(err, corral.ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("next Create of the pool: %v, want ErrStuckPending with %q", err, c.want)
			}
			t.Logf("create error: %v", err)
			providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
		})
	}
}
