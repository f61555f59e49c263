package kubetest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	corralk8s "github.com/corral-ci/corral/internal/provider/kubernetes"
)

// RESTConfig returns a client configuration with the token.
func (c *Cluster) RESTConfig(token string) *rest.Config {
	return &rest.Config{Host: c.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.CACert},
		QPS: 200, Burst: 400, Timeout: 30 * time.Second}
}

// Admin returns a clientset of a cluster administrator.
func (c *Cluster) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.RESTConfig(c.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Namespace creates a namespace with a unique name and its default service
// account (what kube-controller-manager, which does not run here, would
// create), deleted when t ends, and returns its name.
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	cs := c.Admin(t)
	ns, err := cs.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns.Name).Create(ctx(t), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// GrantCorral gives the user CorralUser, in the namespace, the rights the
// kubernetes provider needs (kubernetes.RoleRules, which docs/kubernetes.md
// lists) and nothing else.
func (c *Cluster) GrantCorral(t testing.TB, namespace string) {
	t.Helper()
	cs := c.Admin(t)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "corral"}, Rules: corralk8s.RoleRules()}
	if _, err := cs.RbacV1().Roles(namespace).Create(ctx(t), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "corral"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "corral"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: CorralUser}}}
	if _, err := cs.RbacV1().RoleBindings(namespace).Create(ctx(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// AddNode registers a Ready node object with the capacity and labels, so
// that kube-scheduler can bind pods to it (no kubelet backs it: the pods
// stay Pending). The node is deleted when t ends.
func (c *Cluster) AddNode(t testing.TB, name string, cpu, memory string, labels map[string]string) {
	t.Helper()
	cs := c.Admin(t)
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(memory),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	n, err := cs.CoreV1().Nodes().Create(ctx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status = corev1.NodeStatus{Capacity: res, Allocatable: res,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubetestNode",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
	if _, err = cs.CoreV1().Nodes().UpdateStatus(ctx(t), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The TaintNodesByCondition admission plugin taints a new node
	// not-ready; the node lifecycle controller (not running here) would
	// lift it once the node reports Ready.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cs.CoreV1().Nodes().Get(ctx(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Taints = nil
		_, err = cs.CoreV1().Nodes().Update(ctx(t), cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
}
