package garm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// BenchmarkGarm_List measures one ListInstances through garm's protocol
// end to end: start the provider executable, its answer read and checked
// (one pool, one running instance).
//
//	go test -run '^$' -bench BenchmarkGarm_List -benchtime 100x ./internal/provider/garm/
func BenchmarkGarm_List(b *testing.B) {
	h := newHarness(b)
	p := h.provider(b)
	sp := spec(h, "pool-bench")
	inst, err := p.Create(b.Context(), sp)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Delete(context.Background(), inst) })
	for b.Loop() {
		list, err := p.List(b.Context(), sp.ControllerID)
		if err != nil || len(list) != 1 {
			b.Fatalf("List = %v, %v", list, err)
		}
	}
}

// BenchmarkGarm_Create measures, through garm's protocol and the test
// provider, the time from the call to Create to its return, and to the
// moment the runner runs (after the instance's userdata fetched its
// bootstrap from the metadata endpoint with its token).
//
//	go test -run '^$' -bench BenchmarkGarm_Create -benchtime 30x ./internal/provider/garm/
func BenchmarkGarm_Create(b *testing.B) {
	h := newHarness(b)
	p := h.provider(b)
	ctl := providertest.Unique("ctl-")
	var startLat, createLat []time.Duration
	for b.Loop() {
		id := providertest.Unique("bench-")
		sp := corral.InstanceSpec{InstanceID: id, Name: id, ControllerID: ctl, PoolID: "bench", Image: h.exe,
			Bootstrap: corral.Bootstrap{Command: h.Command(), Env: map[string]corral.Secret{providertest.EnvStartedFile: "started"}},
			Deadline:  time.Now().Add(time.Minute)}
		t0 := time.Now()
		inst, err := p.Create(b.Context(), sp)
		if err != nil {
			b.Fatalf("Create: %v", err)
		}
		createLat = append(createLat, time.Since(t0))
		startLat = append(startLat, waitStarted(b, filepath.Join(h.dir, id, "work", "started")).Sub(t0))
		if err := p.Delete(b.Context(), inst); err != nil {
			b.Fatalf("Delete: %v", err)
		}
	}
	b.ReportMetric(float64(quantile(startLat, 0.5).Microseconds())/1000, "ms-to-runner-p50")
	b.ReportMetric(float64(quantile(startLat, 0.9).Microseconds())/1000, "ms-to-runner-p90")
	b.ReportMetric(float64(quantile(createLat, 0.5).Microseconds())/1000, "ms-create-call-p50")
}

func waitStarted(b *testing.B, path string) time.Time {
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if s, err := os.ReadFile(path); err == nil && len(s) > 0 {
			if ns, err := strconv.ParseInt(string(s), 10, 64); err == nil {
				return time.Unix(0, ns)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	b.Fatalf("runner did not start: no %s", path)
	return time.Time{}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}
