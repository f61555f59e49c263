package dockere2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// BenchmarkDocker_Concurrency: for each pool max N, N jobs that outlast the
// ramp are queued at once for a docker pool on a fresh private daemon. It
// reports, as means over runs:
//   - ms-all-running: first job queued to all N running at the forge;
//   - ms-per-runner: that divided by N (the inverse of the ramp's rate);
//   - ms-first-create: first job queued to the engine's Created time of the
//     first container (corral's own reaction);
//   - ms-engine-p50/p95: per container, the engine's Created to StartedAt
//     (this includes corral's attach and start calls in between);
//   - ms-probe-cold/-load: one create+start+remove that the benchmark makes
//     itself on the fresh engine, and while the N containers run.
//
// Run it once per level (corral keeps at most 8 provider calls under way
// per pool, so from N=16 the creates come in waves of 8):
//
//	go test -run '^$' -bench BenchmarkDocker_Concurrency -benchtime 1x -count 2 -timeout 20m ./test/dockere2e/
func BenchmarkDocker_Concurrency(b *testing.B) {
	for _, n := range []int{4, 8, 16, 32} {
		b.Run(fmt.Sprint("max=", n), func(b *testing.B) {
			var sum levelResult
			k := 0
			for b.Loop() {
				r := concurrencyLevel(b, n)
				sum.allRunning += r.allRunning
				sum.firstCreate += r.firstCreate
				sum.p50 += r.p50
				sum.p95 += r.p95
				sum.probeCold += r.probeCold
				sum.probeLoad += r.probeLoad
				k++
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(k) }
			b.ReportMetric(ms(sum.allRunning), "ms-all-running")
			b.ReportMetric(ms(sum.allRunning)/float64(n), "ms-per-runner")
			b.ReportMetric(ms(sum.firstCreate), "ms-first-create")
			b.ReportMetric(ms(sum.p50), "ms-engine-p50")
			b.ReportMetric(ms(sum.p95), "ms-engine-p95")
			b.ReportMetric(ms(sum.probeCold), "ms-probe-cold")
			b.ReportMetric(ms(sum.probeLoad), "ms-probe-load")
		})
	}
}

// levelResult is one run of a level; BenchmarkDocker_Concurrency reports
// the mean over runs.
type levelResult struct {
	allRunning, firstCreate, p50, p95, probeCold, probeLoad time.Duration
}

func concurrencyLevel(b *testing.B, n int) levelResult {
	d := dockertest.NewDaemon(b) // fresh engine per level, stopped (with its containers) at the end
	img := runnerImage(b, d.Host())
	eng := newEngine(b, "bench", d.Host())
	f := newRig(b, standin.Options{Seed: int64(n)}, setup{Image: img, PoolMax: n, Bench: true,
		Endpoints: []e2etest.Endpoint{{Name: "bench", Host: d.Host()}}})
	p := f.start(b)
	b.Cleanup(p.Kill) // before the daemon stops (cleanups run last first)

	probeCold := probeCreate(b, eng.c, img)
	start := time.Now()
	for i := range n {
		f.queue(i, 4*time.Minute)
	}
	running := func() int {
		k := 0
		for _, j := range f.Jobs() {
			if !j.StartedAt.IsZero() {
				k++
			}
		}
		return k
	}
	waitFor(b, 3*time.Minute, fmt.Sprintf("%d jobs running", n), func() bool { return running() == n })
	allRunning := time.Since(start)

	engineLat, firstCreated := engineCreateToStart(b, eng.c)
	probeLoad := probeCreate(b, eng.c, img)
	slices.Sort(engineLat)
	q := func(p float64) time.Duration { return engineLat[min(len(engineLat)-1, int(p*float64(len(engineLat))))] }
	r := levelResult{allRunning: allRunning, firstCreate: firstCreated.Sub(start), p50: q(0.5), p95: q(0.95),
		probeCold: probeCold, probeLoad: probeLoad}
	b.Logf("max=%d: all %d running after %v (first create at the engine after %v); engine create->start p50 %v p95 %v (%d containers); "+
		"probe create+start+remove on the fresh engine %v, under load %v",
		n, n, allRunning.Round(time.Millisecond), r.firstCreate.Round(time.Millisecond), r.p50.Round(time.Millisecond),
		r.p95.Round(time.Millisecond), len(engineLat), probeCold.Round(time.Millisecond), probeLoad.Round(time.Millisecond))
	p.Kill()
	return r
}

// engineCreateToStart is, per container of corral's, the engine's time
// from its creation to its start, and the earliest creation.
func engineCreateToStart(b *testing.B, c *client.Client) ([]time.Duration, time.Time) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "io.corral.controller="+controllerID)})
	if err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	var first time.Time
	for _, it := range res.Items {
		in, err := c.ContainerInspect(ctx, it.ID, client.ContainerInspectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		created, err1 := time.Parse(time.RFC3339Nano, in.Container.Created)
		started, err2 := time.Parse(time.RFC3339Nano, in.Container.State.StartedAt)
		if err1 != nil || err2 != nil || started.Before(created) {
			continue
		}
		out = append(out, started.Sub(created))
		if first.IsZero() || created.Before(first) {
			first = created
		}
	}
	if len(out) == 0 {
		b.Fatal("no started container of corral's on the engine")
	}
	return out, first
}

// probeCreate times one create, start and forced remove of a container
// that sleeps, made directly against the engine.
func probeCreate(b *testing.B, c *client.Client, img string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: img, Cmd: []string{"/bin/sleep", "60"}},
		HostConfig: &container.HostConfig{NetworkMode: "host"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}
