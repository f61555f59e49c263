package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/kubernetes"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

func getPod(t *testing.T, e *env, inst corral.ProviderInstance) *corev1.Pod {
	t.Helper()
	ns, name, _ := strings.Cut(inst.ProviderID, "/")
	pod, err := e.c.Admin(t).CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// TestKubernetes_PodSpec checks the pod and secret a create makes: flavor
// as requests and limits, workspace emptyDir (Memory on request) with the
// disk as size limit, security settings, scheduling options, the deadline,
// and the bootstrap in a secret owned by the pod.
func TestKubernetes_PodSpec(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings)
	h := harness{e: e}
	spec := providertest.Spec(t, h, providertest.Unique("ctl-"), map[string]corral.Secret{"RUNNER_TOKEN": "s3cret-env"})
	spec.Flavor = corral.Flavor{CPU: 2, MemoryMB: 1024, DiskMB: 2048}
	spec.Bootstrap.Files["conf/.runner"] = "s3cret-file"
	spec.Deadline = time.Now().Add(90 * time.Second)
	uid := int64(4242)
	opts, _ := json.Marshal(kubernetes.PoolOptions{Workspace: kubernetes.WorkspaceMemory, NodeSelector: map[string]string{"kubernetes.io/arch": "amd64"},
		Tolerations: []kubernetes.Toleration{{Key: "ci", Operator: "Exists", Effect: "NoSchedule"}}, RunAsUser: &uid})
	spec.Options = opts
	inst := providertest.Create(t, p, spec)
	pod := getPod(t, e, inst)

	c := pod.Spec.Containers[0]
	if c.Image != spec.Image || !slices.Equal(c.Command, spec.Bootstrap.Command) || c.WorkingDir != "/workspace" {
		t.Errorf("container %s %v in %s", c.Image, c.Command, c.WorkingDir)
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if rl.Cpu().Value() != 2 || rl.Memory().Value() != 1<<30 {
			t.Errorf("resources %v, want cpu 2 and memory 1Gi", rl)
		}
	}
	ws := pod.Spec.Volumes[0].EmptyDir
	if ws == nil || ws.Medium != corev1.StorageMediumMemory || ws.SizeLimit.Value() != 2<<30 {
		t.Errorf("workspace volume %+v, want a 2Gi Memory emptyDir", pod.Spec.Volumes[0])
	}
	sc, csc := pod.Spec.SecurityContext, c.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != uid || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		!slices.Contains(csc.Capabilities.Drop, "ALL") || csc.Privileged != nil {
		t.Errorf("security contexts %+v / %+v", sc, csc)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken || pod.Spec.HostNetwork || pod.Spec.HostPID {
		t.Errorf("pod gets a service account token or host namespaces")
	}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("host mount %+v", v)
		}
	}
	if d := pod.Spec.ActiveDeadlineSeconds; d == nil || *d < 80 || *d > 91 {
		t.Errorf("activeDeadlineSeconds %v, want about 90", d)
	}
	if pod.Spec.NodeSelector["kubernetes.io/arch"] != "amd64" || !slices.ContainsFunc(pod.Spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == "ci" && t.Operator == "Exists" }) || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("scheduling: %v %v %s", pod.Spec.NodeSelector, pod.Spec.Tolerations, pod.Spec.RestartPolicy)
	}
	if pod.Annotations[kubernetes.AnnotationInstance] != spec.InstanceID || pod.Labels[kubernetes.LabelController] != spec.ControllerID {
		t.Errorf("metadata %v %v", pod.Labels, pod.Annotations)
	}

	// The bootstrap: secret values reach the container only by reference.
	raw, _ := json.Marshal(pod)
	if strings.Contains(string(raw), "s3cret") {
		t.Errorf("a bootstrap secret is in the pod object")
	}
	i := slices.IndexFunc(c.Env, func(v corev1.EnvVar) bool { return v.Name == "RUNNER_TOKEN" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil {
		t.Fatalf("RUNNER_TOKEN not taken from the secret: %+v", c.Env)
	}
	ref := c.Env[i].ValueFrom.SecretKeyRef
	sec, err := e.c.Admin(t).CoreV1().Secrets(e.ns).Get(t.Context(), ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[ref.Key]) != "s3cret-env" {
		t.Errorf("secret key %s = %q", ref.Key, sec.Data[ref.Key])
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != pod.UID || sec.OwnerReferences[0].Kind != "Pod" {
		t.Errorf("secret owners %+v, want the pod %s", sec.OwnerReferences, pod.UID)
	}
	m := slices.IndexFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return v.MountPath == "/workspace/conf/.runner" })
	if m < 0 || !c.VolumeMounts[m].ReadOnly || string(sec.Data[c.VolumeMounts[m].SubPath]) != "s3cret-file" {
		t.Errorf("bootstrap file not mounted from the secret: %+v", c.VolumeMounts)
	}
}

// TestKubernetes_HostNetwork: the pool option host_network (JSON key
// host_network) puts the pod in the node's network namespace with the DNS
// policy for it; without the option the pod keeps its own. The restricted
// Pod Security Standard refuses such a pod.
func TestKubernetes_HostNetwork(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings)
	h := harness{e: e}
	ctl := providertest.Unique("ctl-")
	hostNet := json.RawMessage(`{"host_network":true}`)

	spec := providertest.Spec(t, h, ctl, nil)
	spec.Options = hostNet
	if _, err := p.Create(t.Context(), spec); !errors.Is(err, corral.ErrForbidden) || !strings.Contains(err.Error(), "host") {
		t.Errorf("host network pod in a restricted namespace: Create error %v, want ErrForbidden from PodSecurity", err)
	}

	podSecurity(t, e.c, e.ns, "privileged")
	// PodSecurity admission reads namespaces from a cache: wait until a
	// host network pod passes a dry run.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{HostNetwork: true,
		Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/x:1"}}}}
	providertest.Eventually(t, "the namespace to allow host network pods", func() bool {
		_, err := e.c.Admin(t).CoreV1().Pods(e.ns).Create(t.Context(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil
	})
	for _, c := range []struct {
		name    string
		options json.RawMessage
		want    bool
	}{{"unset", nil, false}, {"false", json.RawMessage(`{"host_network":false}`), false}, {"true", hostNet, true}} {
		spec := providertest.Spec(t, h, ctl, nil)
		spec.Options = c.options
		pod := getPod(t, e, providertest.Create(t, p, spec))
		wantDNS := corev1.DNSClusterFirst
		if c.want {
			wantDNS = corev1.DNSClusterFirstWithHostNet
		}
		if pod.Spec.HostNetwork != c.want || pod.Spec.DNSPolicy != wantDNS {
			t.Errorf("%s: hostNetwork %v, dnsPolicy %s; want %v, %s", c.name, pod.Spec.HostNetwork, pod.Spec.DNSPolicy, c.want, wantDNS)
		}
	}
}

// TestKubernetes_Home: by default the runner's HOME is the workspace (a
// non-root uid with no entry in the image's user database would get /,
// which it cannot write: act_runner then fails every job on mkdir
// /.cache); home: image leaves HOME to the image, and a HOME in the
// bootstrap wins over both.
func TestKubernetes_Home(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings)
	h := harness{e: e}
	ctl := providertest.Unique("ctl-")
	for _, c := range []struct {
		name    string
		options json.RawMessage
		env     map[string]corral.Secret
		want    string // the literal HOME in the pod; "" for none
		fromRef bool   // HOME comes from the bootstrap secret
	}{
		{"default", nil, nil, "/workspace", false},
		{"workspace", json.RawMessage(`{"home":"workspace"}`), nil, "/workspace", false},
		{"image", json.RawMessage(`{"home":"image"}`), nil, "", false},
		{"bootstrap", nil, map[string]corral.Secret{"HOME": "/srv/runner"}, "", true},
	} {
		spec := providertest.Spec(t, h, ctl, c.env)
		spec.Options = c.options
		pod := getPod(t, e, providertest.Create(t, p, spec))
		var homes []corev1.EnvVar
		for _, v := range pod.Spec.Containers[0].Env {
			if v.Name == "HOME" {
				homes = append(homes, v)
			}
		}
		switch {
		case c.fromRef && (len(homes) != 1 || homes[0].ValueFrom == nil || homes[0].ValueFrom.SecretKeyRef == nil):
			t.Errorf("%s: HOME %+v, want one, from the bootstrap secret", c.name, homes)
		case !c.fromRef && c.want == "" && len(homes) != 0:
			t.Errorf("%s: HOME %+v, want none", c.name, homes)
		case !c.fromRef && c.want != "" && (len(homes) != 1 || homes[0].Value != c.want):
			t.Errorf("%s: HOME %+v, want %s", c.name, homes, c.want)
		}
	}
}

// TestKubernetes_Refuses checks creates that must fail before anything is
// made: a reserved variable, a host runner directory, a namespace the
// settings do not name, and a user with no rights (the API's 403).
func TestKubernetes_Refuses(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, e.settings)
	h := harness{e: e}
	ctl := providertest.Unique("ctl-")
	for name, mut := range map[string]func(*corral.InstanceSpec){
		"reserved_env": func(s *corral.InstanceSpec) { s.Bootstrap.Env = map[string]corral.Secret{"CORRAL_INSTANCE_ID": "x"} },
		"runner_dir":   func(s *corral.InstanceSpec) { s.RunnerDir = "/opt/runner" },
		"namespace":    func(s *corral.InstanceSpec) { s.Options = json.RawMessage(`{"namespace":"elsewhere"}`) },
		"file_escape":  func(s *corral.InstanceSpec) { s.Bootstrap.Files = map[string]corral.Secret{"../x": "y"} },
	} {
		spec := providertest.Spec(t, h, ctl, nil)
		mut(&spec)
		if _, err := p.Create(t.Context(), spec); !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("%s: Create error %v, want ErrBadInput", name, err)
		}
	}
	// The namespace enforces the restricted Pod Security Standard: the
	// provider's pods pass it (the other tests), a root pod does not.
	root := providertest.Spec(t, h, ctl, nil)
	root.Options = json.RawMessage(`{"run_as_root":true,"run_as_user":0}`)
	if _, err := p.Create(t.Context(), root); !errors.Is(err, corral.ErrForbidden) || !strings.Contains(err.Error(), "restricted") {
		t.Errorf("root pod in a restricted namespace: Create error %v, want ErrForbidden from PodSecurity", err)
	}
	if list, err := p.List(t.Context(), ctl); err != nil || len(list) != 0 {
		t.Errorf("after refused creates List = %v, %v", list, err)
	}

	// A namespace where corral has no Role.
	other := e.c.Namespace(t, "corral-norole-")
	s := e.settings
	s.Namespaces = []string{other}
	p2 := e.provider(t, s)
	spec := providertest.Spec(t, h, ctl, nil)
	spec.Options = json.RawMessage(`{"namespace":"` + other + `"}`)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := p2.Create(ctx, spec); err == nil {
		t.Errorf("Create in a namespace without rights succeeded")
	}
}

func TestKubernetes_SettingsValidate(t *testing.T) {
	s := kubernetes.Settings{Kubeconfig: "relative/path", Namespace: "Bad_NS", Namespaces: []string{"ok", "-no"}, Workspace: "/"}
	var fe provider.FieldErrors
	if err := s.Validate(); !errors.As(err, &fe) || len(fe) != 4 {
		t.Errorf("Validate = %v, want 4 field errors", err)
	}
	o := kubernetes.PoolOptions{Namespace: "x", Workspace: "ssd", Tolerations: []kubernetes.Toleration{{Operator: "Exists", Value: "v"}}, Home: "/root"}
	if err := o.Validate(&kubernetes.Settings{Namespace: "ci"}); !errors.As(err, &fe) || len(fe) != 4 {
		t.Errorf("PoolOptions.Validate = %v, want 4 field errors", err)
	}
	if err := (&kubernetes.PoolOptions{Namespace: "gpu"}).Validate(&kubernetes.Settings{Namespace: "ci", Namespaces: []string{"gpu"}}); err != nil {
		t.Errorf("a listed namespace: %v", err)
	}
}
