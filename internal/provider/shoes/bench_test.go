package shoes

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

// BenchmarkShoes_Start measures starting a shoes plugin: the process,
// go-plugin's handshake and the gRPC connection (then it is killed).
//
//	go test -run '^$' -bench BenchmarkShoes_Start -benchtime 30x ./internal/provider/shoes/
func BenchmarkShoes_Start(b *testing.B) {
	h := newHarness(b, "off")
	p := h.provider(b, h.settings())
	for b.Loop() {
		c, err := p.connect()
		if err != nil {
			b.Fatal(err)
		}
		p.kill(c)
	}
}

// BenchmarkShoes_AddInstance measures Create through the test shoes
// plugin (its process already started): the time to Create's return (the
// AddInstance round trip, corral's records written) and to the moment the
// runner the setup script starts runs (it writes its start time first
// thing).
//
//	go test -run '^$' -bench BenchmarkShoes_AddInstance -benchtime 30x ./internal/provider/shoes/
func BenchmarkShoes_AddInstance(b *testing.B) {
	for _, ns := range []string{"auto", "off"} {
		b.Run("namespaces_"+ns, func(b *testing.B) {
			h := newHarness(b, ns)
			p := h.provider(b, h.settings())
			if err := p.Health(b.Context()); err != nil {
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
				startLat = append(startLat, started(b, filepath.Join(h.dir, id, "work", "tmp", "corral-runner.*", "started")).Sub(t0))
				if err := p.Delete(b.Context(), inst); err != nil {
					b.Fatalf("Delete: %v", err)
				}
			}
			slices.Sort(startLat)
			slices.Sort(createLat)
			at := func(d []time.Duration, q float64) float64 {
				return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(at(startLat, 0.5), "ms-to-runner-p50")
			b.ReportMetric(at(startLat, 0.9), "ms-to-runner-p90")
			b.ReportMetric(at(createLat, 0.5), "ms-create-call-p50")
			b.ReportMetric(at(createLat, 0.9), "ms-create-call-p90")
		})
	}
}

// started waits for the runner's start file (a glob: the setup script
// makes a directory of a random name) and returns the time in it.
func started(b *testing.B, glob string) time.Time {
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if m, _ := filepath.Glob(glob); len(m) == 1 {
			if s, err := os.ReadFile(m[0]); err == nil && len(s) > 0 {
				if ns, err := strconv.ParseInt(string(s), 10, 64); err == nil {
					return time.Unix(0, ns)
				}
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	b.Fatalf("runner did not start: no %s", glob)
	return time.Time{}
}
