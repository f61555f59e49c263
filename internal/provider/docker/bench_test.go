package docker

import (
	"bufio"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// BenchmarkCreateToStarted measures, per instance, the time from the call
// to Create to the moment the runner process printed its first line (the
// engine's timestamp of that log line), and the time Create itself takes;
// it reports their median and 95th percentile:
//
//	go test -run '^$' -bench BenchmarkCreateToStarted -benchtime 30x ./internal/provider/docker/
func BenchmarkCreateToStarted(b *testing.B) {
	h := newHarness(b, dockertest.Socket(b))
	h.cfg.ReadOnlyRoot = true
	p := h.provider(b)
	img := runnerImage(b, h.host)
	ctl := providertest.Unique("ctl-")
	var toRunner, createCall []time.Duration
	for b.Loop() {
		id := providertest.Unique("bench-")
		spec := corral.InstanceSpec{
			InstanceID: id, Name: "corral-" + id, ControllerID: ctl, PoolID: "bench", Image: img,
			Flavor:    corral.Flavor{CPU: 1, MemoryMB: 256, DiskMB: 256},
			Bootstrap: corral.Bootstrap{Command: []string{runnerPath, providertest.RunnerArg}},
			Deadline:  time.Now().Add(time.Minute),
		}
		t0 := time.Now()
		inst, err := p.Create(b.Context(), spec)
		if err != nil {
			b.Fatalf("Create: %v", err)
		}
		createCall = append(createCall, time.Since(t0))
		toRunner = append(toRunner, firstLine(b, h.cli, inst).Sub(t0))
		if err := p.Delete(b.Context(), inst); err != nil {
			b.Fatalf("Delete: %v", err)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(quantile(toRunner, 0.5)), "ms-to-runner-p50")
	b.ReportMetric(ms(quantile(toRunner, 0.95)), "ms-to-runner-p95")
	b.ReportMetric(ms(quantile(createCall, 0.5)), "ms-create-call-p50")
	b.ReportMetric(ms(quantile(createCall, 0.95)), "ms-create-call-p95")
}

// firstLine follows the container's log to the runner's first line and
// returns the engine's timestamp of it.
func firstLine(b *testing.B, c *client.Client, inst corral.ProviderInstance) time.Time {
	_, id, _ := splitID(inst.ProviderID)
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	rc, err := c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, Follow: true, Timestamps: true})
	if err != nil {
		b.Fatalf("logs: %v", err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() { _, err := stdcopy.StdCopy(pw, io.Discard, rc); pw.CloseWithError(err) }()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		ts, rest, _ := strings.Cut(sc.Text(), " ")
		if strings.HasPrefix(rest, "corral-test-runner: pid=") {
			at, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				b.Fatalf("log timestamp %q: %v", ts, err)
			}
			cancel()
			return at
		}
	}
	b.Fatalf("runner did not start: %v", sc.Err())
	return time.Time{}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}
