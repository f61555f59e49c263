package kubernetes

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/corral-ci/corral/internal/corral"
)

var _ corral.LogReader = (*Provider)(nil)

// Reading a runner's log.
const (
	// MaxLogBytes caps what RunnerLog returns.
	MaxLogBytes = 64 << 10
	// logTailLines is how many lines RunnerLog asks the kubelet for (the
	// end of the log; pods/log's limitBytes would keep its beginning).
	// containerd splits long lines at 16 KiB by default, so this bounds
	// the transfer too (streamed; only the tail is kept).
	logTailLines = 2000
)

// RunnerLog returns the end of the runner container's log, at most
// maxBytes and at most MaxLogBytes (maxBytes <= 0: MaxLogBytes), read
// through the API server from the pod's kubelet (pods/log, container
// "runner"), so that corral can show why a runner failed. An unknown pod
// is an error wrapping corral.ErrNotFound; a pod whose runner has not
// started (Pending, on no node or on one whose kubelet has not started it:
// no log yet) one wrapping corral.ErrUnavailable.
func (p *Provider) RunnerLog(ctx context.Context, inst corral.ProviderInstance, maxBytes int) (string, error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("kubernetes %s: runner log of %s: %w", p.name, inst.InstanceID, err)
	}
	ns, name, ok := strings.Cut(inst.ProviderID, "/")
	if !ok || ns == "" || name == "" {
		return fail(fmt.Errorf("%w: %q is not a pod of this provider", corral.ErrNotFound, inst.ProviderID))
	}
	if maxBytes <= 0 || maxBytes > MaxLogBytes {
		maxBytes = MaxLogBytes
	}
	if err := p.synced(ctx); err != nil {
		return fail(err)
	}
	// The API server answers an empty log for a pod on no node.
	if pod := p.cachedPod(ns, name); pod != nil && pod.Spec.NodeName == "" {
		return fail(fmt.Errorf("%w: pod %s/%s is on no node yet (%s): its runner has not started, there is no log",
			corral.ErrUnavailable, ns, name, pendingReason(pod)))
	}
	tail := int64(logTailLines)
	rc, err := p.cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: containerName, TailLines: &tail}).Stream(ctx)
	if err != nil {
		return fail(p.logError(ns, name, err))
	}
	defer rc.Close()
	t := &tailBuffer{max: maxBytes}
	if _, err := io.Copy(t, rc); err != nil {
		return fail(fmt.Errorf("pod %s/%s: reading the log: %w", ns, name, apiError(err)))
	}
	return t.String(), nil
}

// logError explains a failed log request: for a pod whose runner has not
// started the API server or the kubelet answers a bare error ("bad
// request", no kubelet to reach); the pod's phase says why. A missing pod
// or missing rights are what the API says.
func (p *Provider) logError(ns, name string, err error) error {
	if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		if pod := p.cachedPod(ns, name); pod != nil && (pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "") {
			return fmt.Errorf("%w: pod %s/%s is Pending (%s): its runner has not started, there is no log yet: %v",
				corral.ErrUnavailable, ns, name, pendingReason(pod), err)
		}
	}
	return fmt.Errorf("pod %s/%s: %w", ns, name, apiError(err))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if len(t.b) > t.max {
		return string(t.b[len(t.b)-t.max:])
	}
	return string(t.b)
}
