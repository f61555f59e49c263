// Package k8snode runs the kubernetes provider against a one-node cluster
// whose pods run ("tier 2"): kube-apiserver, etcd, kube-scheduler and a
// kubelet 1.37.2 (scripts/k8s/build.sh) with Debian's containerd and runc,
// all inside private mount, network and PID namespaces (internal/testutil/
// kubetest, node.go). The whole test binary runs there (TestMain): nothing
// it starts is reachable from, or survives in, the host.
//
//	go test ./test/k8snode/                     # needs root, containerd, runc, iproute2
//	go test -run '^$' -bench BenchmarkCreateRunning -benchtime 10x -count 3 ./test/k8snode/
//
// Without a prerequisite the tests skip, saying which, except under
// CI=true, where they fail.
package k8snode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/corral-ci/corral/internal/testutil/kubetest"
)

func TestMain(m *testing.M) {
	code := kubetest.IsolatedMain(m)
	if node.n != nil {
		node.n.Stop()
	}
	os.Exit(code)
}

// node is the package's one node, started on first use.
var node struct {
	once sync.Once
	n    *kubetest.Node
	err  error
}

func getNode(t testing.TB) *kubetest.Node {
	t.Helper()
	if err := kubetest.NodeSupport(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the node tests must not be skipped)", err)
		}
		t.Skip(err)
	}
	node.once.Do(func() {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		node.n = kubetest.StartNode(ctx, t, kubetest.NodeOptions{})
		t.Logf("node up in %v", time.Since(t0).Round(time.Millisecond))
	})
	if node.n == nil {
		t.Fatal("the node did not start (see the first test's log)")
	}
	return node.n
}

// runner is the static test runner (providertest's, as the Docker
// provider's tests build it), built once.
var runner struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func runnerBinary(t testing.TB) string {
	t.Helper()
	runner.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if runner.dir, runner.err = os.MkdirTemp("", "corral-k8snode-runner-"); runner.err != nil {
			return
		}
		runner.bin = filepath.Join(runner.dir, "corral-test-runner")
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", runner.bin, "github.com/corral-ci/corral/internal/provider/docker/internal/testrunner")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			runner.err = fmt.Errorf("build test runner: %v\n%s", err, out)
		}
	})
	if runner.err != nil {
		t.Fatal(runner.err)
	}
	return runner.bin
}

// A host-network pod runs on the node and its log is read through the API
// server (which reaches the kubelet at the node address).
func TestNode_PodRuns(t *testing.T) {
	n := getNode(t)
	img := n.ImportImage(t, "busybox", nil, nil)
	cs := n.Admin(t)
	ns := n.Namespace(t, "smoke-")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hello"}, Spec: corev1.PodSpec{
		HostNetwork: true, RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: new(false),
		Containers: []corev1.Container{{Name: "c", Image: img, Command: []string{"sh", "-c", "echo hello; sleep 1"}}},
	}}
	t0 := time.Now()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubetest.PodRunning(ctx, cs, ns, "hello"); err != nil {
		b, _ := os.ReadFile(n.Log)
		t.Fatalf("%v\n%s", err, tail(b, 6000))
	}
	t.Logf("running %v after create", time.Since(t0).Round(time.Millisecond))
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodSucceeded {
			break
		}
		if p.Status.Phase == corev1.PodFailed || ctx.Err() != nil {
			t.Fatalf("pod %s: %+v", p.Status.Phase, p.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := cs.CoreV1().Pods(ns).GetLogs("hello", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("log %q, %v", out, err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func waitRunning(ctx context.Context, cs kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	return kubetest.PodRunning(ctx, cs, ns, name)
}
