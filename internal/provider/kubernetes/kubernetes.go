// Package kubernetes is the kubernetes provider type: one pod per instance,
// on a cluster reached by a kubeconfig file or from inside the cluster.
//
// The pod: one container "runner" running the bootstrap command in the
// pool's image, working directory the workspace, an emptyDir (medium
// Memory when the pool asks for workspace: memory) whose size limit is the
// flavor's disk; requests and limits equal to the flavor's cpu, memory and
// disk; restartPolicy Never; activeDeadlineSeconds is the instance's
// deadline, so the kubelet ends it even when corral is down. Pod security:
// runAsNonRoot with uid 1001 unless the pool allows root, no privilege
// escalation, every capability dropped, the runtime's default seccomp
// profile, no host mounts or namespaces (but the node's network when the
// pool asks for it), no service account token, no service links. The
// bootstrap's environment and files live in a Secret named after the pod
// whose owner is the pod: the cluster's garbage collector removes it with
// the pod even if corral never does.
//
// Status comes from one informer per watched namespace (a watch with a
// periodic resync), never from polling: List reads the informer's cache.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/corral-ci/corral/internal/corral"
)

var (
	_ corral.Provider     = (*Provider)(nil)
	_ corral.ExitNotifier = (*Provider)(nil)
)

// Provider runs instances as pods of one cluster.
type Provider struct {
	name string
	cfg  Settings // with defaults
	cs   clientset.Interface
	log  *slog.Logger
	now  func() time.Time

	startOnce sync.Once
	stop      chan struct{}
	stopOnce  sync.Once
	informers map[string]cache.SharedIndexInformer // by namespace
	listers   map[string]listersv1.PodLister

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every informer event
	// stuck: pool id -> the reasons of pods found stuck Pending that no
	// Create of the pool reported yet; reported: pods already counted.
	stuck    map[string][]string
	reported map[string]bool
	exited   chan string
	notified map[string]bool
}

// Open makes the provider instance from its settings: the kubeconfig file
// (or the in-cluster configuration) is read; nothing is dialed until the
// first call.
func Open(name string, s Settings, log *slog.Logger) (*Provider, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var rc *rest.Config
	var err error
	if s.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: s.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: s.Context}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client configuration: %w", err)
	}
	return New(name, s, rc, log)
}

// New makes the provider instance on a client configuration.
func New(name string, s Settings, rc *rest.Config, log *slog.Logger) (*Provider, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "corral (provider " + name + ")"
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	cs, err := clientset.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: client: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{name: name, cfg: s.withDefaults(), cs: cs, log: log.With("component", "kubernetes"), now: time.Now,
		stop: make(chan struct{}), changed: make(chan struct{}), stuck: map[string][]string{}, reported: map[string]bool{},
		exited: make(chan string, 256), notified: map[string]bool{}}, nil
}

// Close stops the informers.
func (p *Provider) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
}

// Exited reports instances whose pod ended (or was found stuck Pending).
func (p *Provider) Exited() <-chan string { return p.exited }

// start starts one informer per namespace, once.
func (p *Provider) start() {
	p.startOnce.Do(func() {
		p.informers = map[string]cache.SharedIndexInformer{}
		p.listers = map[string]listersv1.PodLister{}
		for _, ns := range p.cfg.namespaces() {
			f := informers.NewSharedInformerFactoryWithOptions(p.cs, p.cfg.Resync, informers.WithNamespace(ns),
				informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelManaged + "=true" }))
			pi := f.Core().V1().Pods()
			inf := pi.Informer()
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { p.observe(obj) },
				UpdateFunc: func(_, obj any) { p.observe(obj) },
				DeleteFunc: func(any) { p.wake() },
			})
			p.informers[ns], p.listers[ns] = inf, pi.Lister()
			f.Start(p.stop)
		}
	})
}

// synced starts the informers and waits until their caches are filled.
func (p *Provider) synced(ctx context.Context) error {
	p.start()
	for ns, inf := range p.informers {
		if inf.HasSynced() {
			continue
		}
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("kubernetes: pods of namespace %s not listed yet: %w (%v)", ns, corral.ErrUnavailable, ctx.Err())
		}
	}
	return nil
}

// wake tells waiters that the cache changed.
func (p *Provider) wake() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// observe handles an informer event: a pod that ended or is stuck is
// reported once on Exited; a stuck one is recorded for its pool.
func (p *Provider) observe(obj any) {
	defer p.wake()
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	st := p.status(pod)
	if st.running {
		return
	}
	id := pod.Annotations[AnnotationInstance]
	key := pod.Namespace + "/" + pod.Name + "/" + string(pod.UID)
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.stuck != "" && !p.reported[key] {
		p.reported[key] = true
		pool := pod.Annotations[AnnotationPool]
		p.stuck[pool] = append(p.stuck[pool], st.stuck)
		p.log.Warn("pod stuck Pending", "pod", pod.Namespace+"/"+pod.Name, "pool", pool, "reason", st.stuck)
	}
	if id != "" && !p.notified[key] {
		p.notified[key] = true
		select {
		case p.exited <- id:
		default: // nobody listens: the reconciler's sweep finds it anyway
		}
	}
}

// waitCache waits until cond holds on the cache or ctx ends (events wake
// it; the API already answered, so this is the watch's lag).
func (p *Provider) waitCache(ctx context.Context, cond func() bool) bool {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// podStatus is what corral reads of a pod.
type podStatus struct {
	running bool
	stuck   string // why the pod is stuck Pending; empty when it is not
}

// status decides whether the pod counts as running: Pending (within the
// pending timeout) and Running do; Succeeded, Failed, a pod being deleted
// and a pod stuck Pending do not.
func (p *Provider) status(pod *corev1.Pod) podStatus {
	switch {
	case pod.DeletionTimestamp != nil:
		return podStatus{}
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return podStatus{}
	case pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "":
		if age := p.now().Sub(pod.CreationTimestamp.Time); age >= p.cfg.PendingTimeout {
			return podStatus{stuck: fmt.Sprintf("pod %s/%s Pending for %s: %s", pod.Namespace, pod.Name,
				age.Round(time.Second), pendingReason(pod))}
		}
	}
	return podStatus{running: true}
}

// pendingReason is what Kubernetes says keeps the pod Pending: a waiting
// container's reason (ErrImagePull, ImagePullBackOff, ...), else the
// scheduler's (Unschedulable and its message).
func pendingReason(pod *corev1.Pod) string {
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			return strings.TrimSpace(w.Reason + ": " + w.Message)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return strings.TrimSpace(c.Reason + ": " + c.Message)
		}
	}
	if pod.Spec.NodeName != "" {
		return "scheduled on node " + pod.Spec.NodeName + ", no container started"
	}
	return "not scheduled"
}

// takeStuck returns (and forgets) the stuck reasons of the pool.
func (p *Provider) takeStuck(pool string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.stuck[pool]
	delete(p.stuck, pool)
	return r
}

// ErrStuckPending: pods of the pool stayed Pending past the pending
// timeout; it wraps corral.ErrUnavailable.
var ErrStuckPending = fmt.Errorf("%w: pod stuck Pending", corral.ErrUnavailable)

// Create creates the instance's pod and its bootstrap secret, and returns
// once the informer has seen the pod. If pods of the pool were found stuck
// Pending since its last create, it creates nothing and returns
// ErrStuckPending with their reasons (the pool backs off).
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	fail := func(err error) (corral.ProviderInstance, error) {
		return corral.ProviderInstance{}, fmt.Errorf("kubernetes %s: create %s: %w", p.name, spec.InstanceID, err)
	}
	if err := checkSpec(spec); err != nil {
		return fail(err)
	}
	opts, err := poolOptions(spec)
	if err != nil {
		return fail(err)
	}
	if err := opts.Validate(&p.cfg); err != nil {
		return fail(fmt.Errorf("%w: %v", corral.ErrBadInput, err))
	}
	if err := p.synced(ctx); err != nil {
		return fail(err)
	}
	if r := p.takeStuck(spec.PoolID); len(r) > 0 {
		return fail(fmt.Errorf("%w: %s", ErrStuckPending, strings.Join(r, "; ")))
	}
	pod, sec := p.buildPod(spec, opts, p.now())
	created, err := p.cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fail(fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, apiError(err)))
	}
	sec.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: created.Name, UID: created.UID}}
	if _, err := p.cs.CoreV1().Secrets(sec.Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		derr := p.deletePod(context.WithoutCancel(ctx), created.Namespace, created.Name)
		return fail(errors.Join(fmt.Errorf("secret %s/%s: %w", sec.Namespace, sec.Name, apiError(err)), derr))
	}
	inst := corral.ProviderInstance{ProviderID: created.Namespace + "/" + created.Name, InstanceID: spec.InstanceID,
		PoolID: spec.PoolID, Running: true, CreatedAt: created.CreationTimestamp.Time}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !p.waitCache(wctx, func() bool { return p.cached(created.Namespace, created.Name, created.UID) }) {
		p.log.Warn("the watch has not shown the created pod yet", "pod", inst.ProviderID)
	}
	return inst, nil
}

func (p *Provider) cached(ns, name string, uid any) bool {
	pod := p.cachedPod(ns, name)
	return pod != nil && (uid == nil || pod.UID == uid)
}

// cachedPod is the pod as the informer's cache has it; nil if it has none.
func (p *Provider) cachedPod(ns, name string) *corev1.Pod {
	l, ok := p.listers[ns]
	if !ok {
		return nil
	}
	pod, err := l.Pods(ns).Get(name)
	if err != nil {
		return nil
	}
	return pod
}

// List returns the pods of the controller in every watched namespace, from
// the informer's cache. A pod terminating for longer than force_delete_after
// is force-deleted (see Delete) and left out.
func (p *Provider) List(ctx context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	if err := p.synced(ctx); err != nil {
		return nil, fmt.Errorf("kubernetes %s: list: %w", p.name, err)
	}
	var out []corral.ProviderInstance
	for _, ns := range p.cfg.namespaces() {
		pods, err := p.listers[ns].Pods(ns).List(labelsFor(controllerID))
		if err != nil {
			return nil, fmt.Errorf("kubernetes %s: list: %w", p.name, err)
		}
		for _, pod := range pods {
			if pod.Annotations[AnnotationController] != controllerID {
				continue
			}
			if p.overdue(pod) && p.sweepOverdue(ctx, pod) {
				continue // gone
			}
			out = append(out, corral.ProviderInstance{
				ProviderID: pod.Namespace + "/" + pod.Name,
				InstanceID: pod.Annotations[AnnotationInstance],
				PoolID:     pod.Annotations[AnnotationPool],
				Running:    p.status(pod).running,
				CreatedAt:  pod.CreationTimestamp.Time,
			})
		}
	}
	return out, nil
}

// Deleting a pod.
const (
	// deleteGrace is the grace period Delete gives the pod, in seconds:
	// the kubelet stops the runner (SIGTERM, SIGKILL after the grace
	// period) and only then removes the pod object, so a pod that is gone
	// has no container left on its node.
	deleteGrace = 1
	// deleteWait bounds how long Delete waits for the pod to be gone.
	deleteWait = 15 * time.Second
)

// Delete deletes the pod with a grace period of 1 s (the runner has
// finished, or corral gave up on it) and its secret (the garbage collector
// would too, by the owner reference, but a cluster without one, or a slow
// one, must not keep the credential), then waits, at most 15 s and within
// ctx, until the watch no longer shows the pod: its kubelet confirmed that
// the containers stopped. A pod that was never bound to a node goes at
// once. A pod still there after the wait is left terminating and Delete
// returns nil: once it has been terminating for force_delete_after (its
// node is down or gone), Delete, also during the wait, and List delete it
// with grace period 0.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	ns, name, ok := strings.Cut(inst.ProviderID, "/")
	if !ok || ns == "" || name == "" {
		// Not an id of this provider: nothing of ours can have it.
		return nil
	}
	if err := p.synced(ctx); err != nil {
		return fmt.Errorf("kubernetes %s: delete %s: %w", p.name, inst.ProviderID, err)
	}
	var err error
	if pod := p.cachedPod(ns, name); pod != nil && p.overdue(pod) {
		err = p.forceDelete(ctx, pod)
	} else {
		err = p.deletePod(ctx, ns, name)
	}
	if err = errors.Join(err, p.deleteSecret(ctx, ns, name+secretSuffix)); err != nil {
		return fmt.Errorf("kubernetes %s: delete %s: %w", p.name, inst.ProviderID, err)
	}
	if !p.awaitGone(ctx, ns, name) {
		p.log.Warn("the pod is still terminating (no kubelet confirmed that its containers stopped); it is deleted with grace period 0 once force_delete_after has passed",
			"pod", inst.ProviderID, "force_delete_after", p.cfg.ForceDeleteAfter)
	}
	return nil
}

// awaitGone waits, at most deleteWait and within ctx, until the cache no
// longer shows the pod, force-deleting it if it becomes overdue meanwhile.
func (p *Provider) awaitGone(ctx context.Context, ns, name string) bool {
	wctx, cancel := context.WithTimeout(ctx, deleteWait)
	defer cancel()
	forced := false
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		pod := p.cachedPod(ns, name)
		if pod == nil {
			return true
		}
		var due *time.Timer
		var dueC <-chan time.Time
		if !forced && pod.DeletionTimestamp != nil {
			if p.overdue(pod) {
				forced = true
				if err := p.forceDelete(wctx, pod); err != nil {
					p.log.Warn("force delete failed", "pod", ns+"/"+name, "err", err)
				}
				continue
			}
			due = time.NewTimer(pod.DeletionTimestamp.Add(p.cfg.ForceDeleteAfter).Sub(p.now()) + 10*time.Millisecond)
			dueC = due.C
		}
		select {
		case <-changed:
		case <-dueC:
		case <-wctx.Done():
		}
		if due != nil {
			due.Stop()
		}
		if wctx.Err() != nil {
			return p.cachedPod(ns, name) == nil
		}
	}
}

// overdue: the pod has been terminating for longer than force_delete_after
// (measured from its deletionTimestamp, the end of its grace period, on
// corral's clock).
func (p *Provider) overdue(pod *corev1.Pod) bool {
	dt := pod.DeletionTimestamp
	return dt != nil && p.now().Sub(dt.Time) > p.cfg.ForceDeleteAfter
}

// sweepOverdue force-deletes an overdue pod found by List, and its secret,
// and reports whether the pod is gone. Errors are logged: List still
// lists the pod (as not running), and the next List tries again.
func (p *Provider) sweepOverdue(ctx context.Context, pod *corev1.Pod) bool {
	id := pod.Namespace + "/" + pod.Name
	err := errors.Join(p.forceDelete(ctx, pod), p.deleteSecret(ctx, pod.Namespace, pod.Name+secretSuffix))
	if err != nil {
		p.log.Warn("could not force-delete a pod terminating past force_delete_after", "pod", id, "err", err)
		return false
	}
	p.log.Warn("force-deleted a pod terminating past force_delete_after: no kubelet confirmed that its containers stopped (node down or gone?)",
		"pod", id, "node", pod.Spec.NodeName, "deletion_timestamp", pod.DeletionTimestamp.Time, "force_delete_after", p.cfg.ForceDeleteAfter)
	return true
}

// deletePod deletes the pod with the grace period deleteGrace.
func (p *Provider) deletePod(ctx context.Context, ns, name string) error {
	err := p.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(deleteGrace))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("pod %s/%s: %w", ns, name, apiError(err))
	}
	return nil
}

// forceDelete deletes the pod with grace period 0: the API server removes
// the object at once, whatever its kubelet still runs. The precondition
// on its uid spares a new pod of the same name.
func (p *Provider) forceDelete(ctx context.Context, pod *corev1.Pod) error {
	uid := pod.UID
	err := p.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0)),
		Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("pod %s/%s: force delete: %w", pod.Namespace, pod.Name, apiError(err))
	}
	return nil
}

func (p *Provider) deleteSecret(ctx context.Context, ns, name string) error {
	err := p.cs.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("secret %s/%s: %w", ns, name, apiError(err))
	}
	return nil
}

// apiError maps an API error to corral's kinds, keeping its text (which
// names the object and the reason, never a secret's content).
func apiError(err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %v", corral.ErrNotFound, err)
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return fmt.Errorf("%w: %v", corral.ErrLimit, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: %v", corral.ErrForbidden, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: %v", corral.ErrUnauthorized, err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Errorf("%w: %v", corral.ErrBadInput, err)
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return fmt.Errorf("%w: %v", corral.ErrConflict, err)
	}
	return fmt.Errorf("%w: %v", corral.ErrUnavailable, err)
}

// labelsFor selects the pods of the controller (the annotation then
// decides: the label may be a hash).
func labelsFor(controllerID string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelManaged: "true", LabelController: labelValue(controllerID)})
}
