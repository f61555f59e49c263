package plugin

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// BenchmarkPlugin_List measures one plugin invocation end to end: start
// the example plugin, send the request, read and check the answer (a list
// of an empty directory; the handshake is done before the loop).
//
//	go test -run '^$' -bench BenchmarkPlugin_List -benchtime 100x ./internal/provider/plugin/
func BenchmarkPlugin_List(b *testing.B) {
	h := newHarness(b, "off")
	p := h.provider(b)
	if _, err := p.Handshake(b.Context()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := p.List(b.Context(), "ctl-bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlugin_Create measures, through the example plugin, the time
// from the call to Create to the moment the runner runs (it writes its
// start time first thing) and to Create's return, like the process
// provider's BenchmarkProvider_Create does without a plugin.
//
//	go test -run '^$' -bench BenchmarkPlugin_Create -benchtime 30x ./internal/provider/plugin/
func BenchmarkPlugin_Create(b *testing.B) {
	for _, ns := range []string{"auto", "off"} {
		b.Run("namespaces_"+ns, func(b *testing.B) {
			h := newHarness(b, ns)
			p := h.provider(b)
			if _, err := p.Handshake(b.Context()); err != nil {
				b.Fatal(err)
			}
			ctl := providertest.Unique("ctl-")
			var startLat, createLat []time.Duration
			for b.Loop() {
				id := providertest.Unique("bench-")
				spec := corral.InstanceSpec{
					InstanceID: id, Name: id, ControllerID: ctl, PoolID: "bench", Image: h.exe,
					Bootstrap: corral.Bootstrap{Command: h.Command(), Env: map[string]corral.Secret{providertest.EnvStartedFile: "started"}},
					Deadline:  time.Now().Add(time.Minute),
				}
				t0 := time.Now()
				inst, err := p.Create(b.Context(), spec)
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
		})
	}
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
