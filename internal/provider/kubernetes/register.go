package kubernetes

import (
	"context"
	"fmt"
	"path"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// TypeName is the kubernetes provider type's name in the config.
const TypeName = "kubernetes"

func init() {
	provider.Register(provider.Type{
		Name:           TypeName,
		NewSettings:    func() provider.Settings { return &Settings{} },
		NewPoolOptions: func() provider.PoolOptions { return &PoolOptions{} },
		Open: func(_ context.Context, name string, s provider.Settings, env provider.Env) (corral.Provider, error) {
			return Open(name, *s.(*Settings), env.Logger)
		},
	})
}

// Defaults.
const (
	DefaultNamespace      = "default"
	DefaultPendingTimeout = 5 * time.Minute
	DefaultResync         = time.Minute
	DefaultWorkspace      = "/workspace"
	DefaultRunAsUser      = 1001 // the user of GitHub's and Gitea's runner images
	// DefaultForceDeleteAfter: see Settings.ForceDeleteAfter.
	DefaultForceDeleteAfter = 30 * time.Second
)

// Settings is a kubernetes provider instance as the config file writes it:
//
//	providers:
//	  - name: cluster-a
//	    type: kubernetes
//	    kubeconfig: /etc/corral/cluster-a.kubeconfig   # empty: in-cluster
//	    namespace: ci-runners
//	    namespaces: [ci-gpu]          # further namespaces pools may name
//	    pending_timeout: 5m
//	    force_delete_after: 30s
//
// Several clusters are several provider instances. The kubeconfig is a
// file reference: its credentials never enter corral's store.
type Settings struct {
	Kubeconfig string `yaml:"kubeconfig" json:"kubeconfig,omitempty"`
	Context    string `yaml:"context" json:"context,omitempty"` // a context of the kubeconfig; empty: its current one
	// Namespace holds the pods of pools that name none (default "default");
	// Namespaces are the others pools may name. corral watches exactly
	// these, so it finds its pods there after a restart.
	Namespace  string   `yaml:"namespace" json:"namespace,omitempty"`
	Namespaces []string `yaml:"namespaces" json:"namespaces,omitempty"`
	// PendingTimeout: a pod still Pending this long after its creation
	// (no node fits, image pull failing, ...) is a provider error with the
	// reason Kubernetes gives; it is listed as not running, so corral
	// deletes it, and the next create of its pool fails with that reason
	// (the pool backs off). Default 5m.
	PendingTimeout time.Duration `yaml:"pending_timeout" json:"pending_timeout,omitempty"`
	// Resync is the informer's resync period (default 1m): pod status
	// comes from a watch; the resync re-checks pending timeouts.
	Resync time.Duration `yaml:"resync" json:"resync,omitempty"`
	// ForceDeleteAfter: a pod of corral's still there this long past its
	// deletionTimestamp (its node is down or gone, so no kubelet confirms
	// that its containers stopped) is deleted with grace period 0, by
	// Delete and by List. Default 30s.
	ForceDeleteAfter time.Duration `yaml:"force_delete_after" json:"force_delete_after,omitempty"`
	// Workspace is where the runner's emptyDir is mounted and its
	// working directory (default /workspace).
	Workspace        string   `yaml:"workspace" json:"workspace,omitempty"`
	ImagePullSecrets []string `yaml:"image_pull_secrets" json:"image_pull_secrets,omitempty"`
}

// Validate reports every problem at once, by key.
func (s *Settings) Validate() error {
	var es provider.FieldErrors
	bad := func(field, format string, args ...any) {
		es = append(es, provider.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if s.Kubeconfig != "" && !path.IsAbs(s.Kubeconfig) {
		bad("kubeconfig", "want an absolute path, got %q", s.Kubeconfig)
	}
	if s.Namespace != "" && len(validation.IsDNS1123Label(s.Namespace)) > 0 {
		bad("namespace", "want a namespace name (DNS-1123 label), got %q", s.Namespace)
	}
	for i, n := range s.Namespaces {
		if len(validation.IsDNS1123Label(n)) > 0 {
			bad(fmt.Sprintf("namespaces[%d]", i), "want a namespace name (DNS-1123 label), got %q", n)
		}
	}
	if s.PendingTimeout < 0 {
		bad("pending_timeout", "want a positive duration, got %v", s.PendingTimeout)
	}
	if s.Resync < 0 {
		bad("resync", "want a positive duration, got %v", s.Resync)
	}
	if s.ForceDeleteAfter < 0 {
		bad("force_delete_after", "want a positive duration, got %v", s.ForceDeleteAfter)
	}
	if s.Workspace != "" && (!path.IsAbs(s.Workspace) || path.Clean(s.Workspace) == "/") {
		bad("workspace", "want an absolute path other than /, got %q", s.Workspace)
	}
	for i, n := range s.ImagePullSecrets {
		if len(validation.IsDNS1123Subdomain(n)) > 0 {
			bad(fmt.Sprintf("image_pull_secrets[%d]", i), "want a secret name, got %q", n)
		}
	}
	return es.Err()
}

// withDefaults fills the zero settings.
func (s Settings) withDefaults() Settings {
	if s.Namespace == "" {
		s.Namespace = DefaultNamespace
	}
	if s.PendingTimeout == 0 {
		s.PendingTimeout = DefaultPendingTimeout
	}
	if s.Resync == 0 {
		s.Resync = DefaultResync
	}
	if s.Workspace == "" {
		s.Workspace = DefaultWorkspace
	}
	if s.ForceDeleteAfter == 0 {
		s.ForceDeleteAfter = DefaultForceDeleteAfter
	}
	return s
}

// namespaces lists every namespace the instance watches.
func (s Settings) namespaces() []string {
	out := []string{s.Namespace}
	for _, n := range s.Namespaces {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Workspace media of PoolOptions.Workspace.
const (
	WorkspaceDisk   = "disk"   // the node's disk (default)
	WorkspaceMemory = "memory" // tmpfs: counts against the pod's memory limit
)

// PoolOptions is what a pool asks of the kubernetes provider (pool key
// options:).
type PoolOptions struct {
	Namespace string `yaml:"namespace" json:"namespace,omitempty"` // one of the settings' namespaces
	// Workspace: disk (default) or memory (emptyDir medium Memory).
	Workspace    string            `yaml:"workspace" json:"workspace,omitempty"`
	NodeSelector map[string]string `yaml:"node_selector" json:"node_selector,omitempty"`
	Tolerations  []Toleration      `yaml:"tolerations" json:"tolerations,omitempty"`
	// RuntimeClass names a RuntimeClass of the cluster (gVisor, Kata, ...).
	RuntimeClass string `yaml:"runtime_class" json:"runtime_class,omitempty"`
	// RunAsUser is the runner's uid (default 1001); RunAsRoot allows an
	// image that must run as root (runAsNonRoot is then not set).
	RunAsUser *int64 `yaml:"run_as_user" json:"run_as_user,omitempty"`
	RunAsRoot bool   `yaml:"run_as_root" json:"run_as_root,omitempty"`
	// HostNetwork runs the pod in the node's network namespace (dnsPolicy
	// ClusterFirstWithHostNet): for clusters without a CNI, or to reach
	// services on the node's loopback. It weakens the isolation between
	// jobs on the same node: they share its interfaces and ports, so a job
	// reaches whatever another job or the node listens on (127.0.0.1
	// too), and NetworkPolicies do not apply. The baseline and restricted
	// Pod Security Standards refuse such pods.
	HostNetwork bool `yaml:"host_network" json:"host_network,omitempty"`
	// Home is the runner's $HOME: workspace (default) sets HOME to the
	// workspace, which the runner's uid can write and which goes with the
	// pod; image keeps what the image's user database says (with no entry
	// for the uid that is /, which a non-root runner cannot write).
	Home string `yaml:"home" json:"home,omitempty"`
}

// Values of PoolOptions.Home.
const (
	HomeWorkspace = "workspace"
	HomeImage     = "image"
)

// Toleration is a pod toleration.
type Toleration struct {
	Key      string `yaml:"key" json:"key,omitempty"`
	Operator string `yaml:"operator" json:"operator,omitempty"` // Equal (default) or Exists
	Value    string `yaml:"value" json:"value,omitempty"`
	Effect   string `yaml:"effect" json:"effect,omitempty"` // NoSchedule, PreferNoSchedule, NoExecute; empty: all
}

// Validate checks the options against the provider instance's settings.
func (o *PoolOptions) Validate(s provider.Settings) error {
	var es provider.FieldErrors
	bad := func(field, format string, args ...any) {
		es = append(es, provider.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if ks, ok := s.(*Settings); ok && o.Namespace != "" {
		if ns := ks.withDefaults().namespaces(); !slices.Contains(ns, o.Namespace) {
			bad("namespace", "%q is not among the provider's namespaces %v (settings namespace and namespaces)", o.Namespace, ns)
		}
	}
	switch o.Workspace {
	case "", WorkspaceDisk, WorkspaceMemory:
	default:
		bad("workspace", "want disk or memory, got %q", o.Workspace)
	}
	for k, v := range o.NodeSelector {
		if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			bad("node_selector", "%q: %q is not a valid label", k, v)
		}
	}
	for i, t := range o.Tolerations {
		f := fmt.Sprintf("tolerations[%d]", i)
		switch corev1.TolerationOperator(t.Operator) {
		case "", corev1.TolerationOpEqual:
		case corev1.TolerationOpExists:
			if t.Value != "" {
				bad(f+".value", "must be empty with operator Exists")
			}
		default:
			bad(f+".operator", "want Equal or Exists, got %q", t.Operator)
		}
		switch corev1.TaintEffect(t.Effect) {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			bad(f+".effect", "want NoSchedule, PreferNoSchedule or NoExecute, got %q", t.Effect)
		}
	}
	switch o.Home {
	case "", HomeWorkspace, HomeImage:
	default:
		bad("home", "want workspace or image, got %q", o.Home)
	}
	if o.RuntimeClass != "" && len(validation.IsDNS1123Subdomain(o.RuntimeClass)) > 0 {
		bad("runtime_class", "want a RuntimeClass name, got %q", o.RuntimeClass)
	}
	if o.RunAsUser != nil && (*o.RunAsUser < 0 || (*o.RunAsUser == 0 && !o.RunAsRoot)) {
		bad("run_as_user", "want a uid above 0 (or run_as_root: true for 0), got %d", *o.RunAsUser)
	}
	return es.Err()
}

// poolOptions decodes an instance's options.
func poolOptions(spec corral.InstanceSpec) (PoolOptions, error) {
	var o PoolOptions
	return o, provider.DecodePoolOptions(spec.Options, &o)
}
