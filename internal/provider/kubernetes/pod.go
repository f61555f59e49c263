package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/corral-ci/corral/internal/corral"
)

// Labels and annotations on corral's pods and secrets. Labels carry the ids
// when they are valid label values (else a hash), for selectors; the
// annotations carry them exactly, and are what List trusts.
const (
	LabelManaged    = "corral.dev/managed"    // "true" on everything corral makes; the informer's selector
	LabelController = "corral.dev/controller" // controller id (or its hash)
	LabelPool       = "corral.dev/pool"
	LabelInstance   = "corral.dev/instance"

	AnnotationController = "corral.dev/controller-id"
	AnnotationPool       = "corral.dev/pool-id"
	AnnotationInstance   = "corral.dev/instance-id"
)

// Reserved environment variables the provider sets itself.
const (
	envInstance  = "CORRAL_INSTANCE_ID"
	envName      = "CORRAL_INSTANCE_NAME"
	envPool      = "CORRAL_POOL_ID"
	envWorkspace = "CORRAL_WORKSPACE"
	envDeadline  = "CORRAL_DEADLINE"
)

var reservedEnv = []string{envInstance, envName, envPool, envWorkspace, envDeadline}

const (
	containerName = "runner"
	volWorkspace  = "workspace"
	volBootstrap  = "bootstrap"
	secretSuffix  = "-bootstrap"
	maxPodNameLen = validation.DNS1123LabelMaxLength - len(secretSuffix)
)

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// labelValue returns v when it is a valid label value, else "h-" and a hash.
func labelValue(v string) string {
	if len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "h-" + hex.EncodeToString(sum[:12])
}

// podName makes a DNS-1123 label out of the instance's name (or its id).
func podName(spec corral.InstanceSpec) string {
	for _, cand := range []string{spec.Name, "corral-" + spec.InstanceID} {
		n := strings.ToLower(cand)
		n = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '-'
		}, n)
		n = strings.Trim(n, "-")
		if n != "" && len(n) <= maxPodNameLen {
			return n
		}
	}
	sum := sha256.Sum256([]byte(spec.InstanceID))
	return "corral-" + hex.EncodeToString(sum[:12])
}

func checkSpec(spec corral.InstanceSpec) error {
	switch {
	case spec.InstanceID == "" || spec.ControllerID == "":
		return fmt.Errorf("%w: empty instance or controller id", corral.ErrBadInput)
	case spec.Image == "":
		return fmt.Errorf("%w: no image", corral.ErrBadInput)
	case len(spec.Bootstrap.Command) == 0 || spec.Bootstrap.Command[0] == "":
		return fmt.Errorf("%w: empty bootstrap command", corral.ErrBadInput)
	case spec.Flavor.CPU < 0 || spec.Flavor.MemoryMB < 0 || spec.Flavor.DiskMB < 0:
		return fmt.Errorf("%w: negative flavor %+v", corral.ErrBadInput, spec.Flavor)
	case spec.RunnerDir != "":
		return fmt.Errorf("%w: a host runner directory cannot be given to a pod (no host mounts): use an image with the runner", corral.ErrBadInput)
	}
	for k, v := range spec.Bootstrap.Env {
		switch {
		case !envNamePattern.MatchString(k):
			return fmt.Errorf("%w: environment variable name %q", corral.ErrBadInput, k)
		case slices.Contains(reservedEnv, k):
			return fmt.Errorf("%w: environment variable %s is reserved", corral.ErrBadInput, k)
		case strings.ContainsRune(v.Reveal(), 0):
			return fmt.Errorf("%w: environment variable %s holds a NUL byte", corral.ErrBadInput, k)
		}
	}
	for n := range spec.Bootstrap.Files {
		clean := path.Clean(n)
		if n == "" || path.IsAbs(n) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(n, 0) {
			return fmt.Errorf("%w: bootstrap file %q is not a relative path inside the workspace", corral.ErrBadInput, n)
		}
	}
	return nil
}

// objectMeta is the metadata of the instance's pod and secret.
func objectMeta(name, namespace string, spec corral.InstanceSpec) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: namespace,
		Labels: map[string]string{
			LabelManaged:    "true",
			LabelController: labelValue(spec.ControllerID),
			LabelPool:       labelValue(spec.PoolID),
			LabelInstance:   labelValue(spec.InstanceID),
		},
		Annotations: map[string]string{
			AnnotationController: spec.ControllerID,
			AnnotationPool:       spec.PoolID,
			AnnotationInstance:   spec.InstanceID,
		},
	}
}

// bootstrapSecret holds the bootstrap's environment and files: keys envN
// and fileN, in the sorted order of names.
func bootstrapSecret(meta metav1.ObjectMeta, b corral.Bootstrap) (*corev1.Secret, []corev1.EnvVar, []corev1.VolumeMount, []corev1.KeyToPath) {
	sec := &corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	sec.Name = meta.Name + secretSuffix
	var env []corev1.EnvVar
	for i, k := range sortedKeys(b.Env) {
		key := "env" + strconv.Itoa(i)
		sec.Data[key] = []byte(b.Env[k].Reveal())
		env = append(env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: sec.Name}, Key: key}}})
	}
	var mounts []corev1.VolumeMount
	var items []corev1.KeyToPath
	for i, n := range sortedKeys(b.Files) {
		key := "file" + strconv.Itoa(i)
		sec.Data[key] = []byte(b.Files[n].Reveal())
		items = append(items, corev1.KeyToPath{Key: key, Path: key})
		mounts = append(mounts, corev1.VolumeMount{Name: volBootstrap, SubPath: key, ReadOnly: true, MountPath: path.Clean(n)})
	}
	return sec, env, mounts, items
}

func sortedKeys(m map[string]corral.Secret) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// buildPod makes the instance's pod (see the package documentation) and
// its bootstrap secret; the secret's owner reference is set once the pod
// exists.
func (p *Provider) buildPod(spec corral.InstanceSpec, opts PoolOptions, now time.Time) (*corev1.Pod, *corev1.Secret) {
	ns := opts.Namespace
	if ns == "" {
		ns = p.cfg.Namespace
	}
	meta := objectMeta(podName(spec), ns, spec)
	sec, secretEnv, fileMounts, items := bootstrapSecret(meta, spec.Bootstrap)
	ws := p.cfg.Workspace
	for i := range fileMounts {
		fileMounts[i].MountPath = path.Join(ws, fileMounts[i].MountPath)
	}

	env := []corev1.EnvVar{
		{Name: envInstance, Value: spec.InstanceID},
		{Name: envName, Value: spec.Name},
		{Name: envPool, Value: spec.PoolID},
		{Name: envWorkspace, Value: ws},
	}
	var deadline *int64
	if !spec.Deadline.IsZero() {
		env = append(env, corev1.EnvVar{Name: envDeadline, Value: strconv.FormatInt(spec.Deadline.Unix(), 10)})
		secs := max(1, int64(math.Ceil(spec.Deadline.Sub(now).Seconds())))
		deadline = &secs
	}
	if _, set := spec.Bootstrap.Env["HOME"]; !set && opts.Home != HomeImage {
		env = append(env, corev1.EnvVar{Name: "HOME", Value: ws})
	}
	env = append(env, secretEnv...)

	res := corev1.ResourceList{}
	if spec.Flavor.CPU > 0 {
		res[corev1.ResourceCPU] = *resource.NewQuantity(int64(spec.Flavor.CPU), resource.DecimalSI)
	}
	if spec.Flavor.MemoryMB > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(int64(spec.Flavor.MemoryMB)<<20, resource.BinarySI)
	}
	wsVol := &corev1.EmptyDirVolumeSource{}
	if spec.Flavor.DiskMB > 0 {
		wsVol.SizeLimit = resource.NewQuantity(int64(spec.Flavor.DiskMB)<<20, resource.BinarySI)
		if opts.Workspace != WorkspaceMemory {
			res[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(spec.Flavor.DiskMB)<<20, resource.BinarySI)
		}
	}
	if opts.Workspace == WorkspaceMemory {
		wsVol.Medium = corev1.StorageMediumMemory
	}

	uid := int64(DefaultRunAsUser)
	if opts.RunAsUser != nil {
		uid = *opts.RunAsUser
	}
	podSec := &corev1.PodSecurityContext{
		RunAsUser:      &uid,
		FSGroup:        &uid, // the bootstrap files are readable by the runner
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if !opts.RunAsRoot {
		podSec.RunAsNonRoot = ptr(true)
	}
	mode := int32(0o440)
	vols := []corev1.Volume{{Name: volWorkspace, VolumeSource: corev1.VolumeSource{EmptyDir: wsVol}}}
	if len(items) > 0 {
		vols = append(vols, corev1.Volume{Name: volBootstrap, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: sec.Name, Items: items, DefaultMode: &mode}}})
	}
	pod := &corev1.Pod{
		ObjectMeta: meta,
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         deadline,
			AutomountServiceAccountToken:  ptr(false),
			EnableServiceLinks:            ptr(false),
			TerminationGracePeriodSeconds: ptr(int64(10)),
			SecurityContext:               podSec,
			NodeSelector:                  opts.NodeSelector,
			Volumes:                       vols,
			Containers: []corev1.Container{{
				Name:       containerName,
				Image:      spec.Image,
				Command:    slices.Clone(spec.Bootstrap.Command),
				WorkingDir: ws,
				Env:        env,
				Resources:  corev1.ResourceRequirements{Requests: res, Limits: res},
				VolumeMounts: append([]corev1.VolumeMount{{Name: volWorkspace, MountPath: ws}},
					fileMounts...),
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if opts.HostNetwork {
		pod.Spec.HostNetwork = true
		pod.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	if opts.RuntimeClass != "" {
		pod.Spec.RuntimeClassName = &opts.RuntimeClass
	}
	for _, t := range opts.Tolerations {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Key: t.Key,
			Operator: corev1.TolerationOperator(t.Operator), Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	for _, n := range p.cfg.ImagePullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
	}
	return pod, sec
}

func ptr[T any](v T) *T { return &v }
