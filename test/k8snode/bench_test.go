package k8snode

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// BenchmarkCreateRunning measures, on the one-node cluster, the time from
// Create to the pod Running (the provider lists it running and the
// kubelet reports phase Running), to the runner's first output line, and
// Delete (until the pod object is gone), one instance at a time.
//
//	go test -run '^$' -bench BenchmarkCreateRunning -benchtime 10x -count 3 ./test/k8snode/
func BenchmarkCreateRunning(b *testing.B) {
	e := newEnv(b)
	p := e.provider(b, e.settings())
	cs := e.n.Admin(b)
	var running, firstLine, del time.Duration
	for range b.N {
		spec := corral.InstanceSpec{InstanceID: providertest.Unique("bench-"), ControllerID: "ctl-bench", PoolID: "pool-bench",
			Image: e.img, Flavor: corral.Flavor{CPU: 1, MemoryMB: 128},
			Bootstrap: corral.Bootstrap{Command: []string{runnerPath, providertest.RunnerArg}}, Deadline: time.Now().Add(10 * time.Minute)}
		spec.Name = "corral-" + spec.InstanceID
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		t0 := time.Now()
		inst, err := p.Create(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := waitRunning(ctx, cs, e.ns, spec.Name); err != nil {
			b.Fatal(err)
		}
		running += time.Since(t0)
		for {
			out, _ := cs.CoreV1().Pods(e.ns).GetLogs(spec.Name, &corev1.PodLogOptions{Container: "runner"}).DoRaw(ctx)
			if strings.Contains(string(out), "corral-test-runner: pid=") {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("no runner output: %v", ctx.Err())
			}
			time.Sleep(5 * time.Millisecond)
		}
		firstLine += time.Since(t0)
		t1 := time.Now()
		if err := p.Delete(ctx, inst); err != nil {
			b.Fatal(err)
		}
		del += time.Since(t1)
		cancel()
	}
	b.ReportMetric(float64(running.Milliseconds())/float64(b.N), "ms-running/op")
	b.ReportMetric(float64(firstLine.Milliseconds())/float64(b.N), "ms-first-line/op")
	b.ReportMetric(float64(del.Milliseconds())/float64(b.N), "ms-delete/op")
}
