package kubetest_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

// TestCluster starts the control plane without a scheduler, checks that
// RBAC holds (the corral user can do nothing until granted, then what its
// Role allows) and that Stop ends every component.
func TestCluster(t *testing.T) {
	s := &kubetest.Shared{Options: kubetest.Options{NoScheduler: true}}
	defer s.Stop()
	start := time.Now()
	c := s.Get(t)
	t.Logf("API server ready in %s", time.Since(start).Round(time.Millisecond))
	ns := c.Namespace(t, "kubetest-")
	cs, err := kubernetes.NewForConfig(c.RESTConfig(c.CorralToken))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("corral lists pods before any grant: %v, want forbidden", err)
	}
	c.GrantCorral(t, ns)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("corral lists pods after the grant: %v", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("corral lists secrets: %v, want forbidden (its Role only creates and deletes them)", err)
	}
	pids := c.Pids()
	s.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("component pid %d still exists after Stop (%v)", pid, err)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s left: %v", c.Dir, err)
	}
}
