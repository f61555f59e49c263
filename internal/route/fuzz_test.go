package route

import (
	"reflect"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// FuzzRoute feeds comma-separated label lists to the matcher of testPools
// and checks the invariants every decision must keep. The seed corpus is in
// testdata/fuzz/FuzzRoute (one label list per file, written by hand); run
// `go test -run '^$' -fuzz FuzzRoute ./internal/route` to explore further.
func FuzzRoute(f *testing.F) {
	f.Add("corral,4cpu8gb50gb")
	m, err := New(testPools(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	pools := map[string]corral.Pool{}
	for _, p := range m.Pools() {
		pools[p.ID] = p
	}
	f.Fuzz(func(t *testing.T, s string) {
		var labels []string
		if s != "" {
			labels = strings.Split(s, ",")
		}
		for _, who := range [][2]string{{"default", "acme"}, {"", ""}, {"t2", "x"}} {
			d := m.Route(who[0], who[1], labels)
			if again := m.Route(who[0], who[1], labels); !reflect.DeepEqual(d, again) {
				t.Fatalf("not deterministic:\n%+v\n%+v", d, again)
			}
			if (len(d.Routes) == 0) != (d.Reason != "") {
				t.Fatalf("routes %v with reason %q", d.Routes, d.Reason)
			}
			if len(d.Checks) != len(pools) {
				t.Fatalf("%d checks for %d pools", len(d.Checks), len(pools))
			}
			var accepted []corral.Route
			for _, c := range d.Checks {
				if c.Accepted {
					accepted = append(accepted, corral.Route{PoolID: c.PoolID, Flavor: c.Flavor})
				} else if c.Reason == "" {
					t.Fatalf("pool %s refused without a reason", c.PoolID)
				}
			}
			if !reflect.DeepEqual(accepted, d.Routes) {
				t.Fatalf("routes %v differ from accepted checks %v", d.Routes, accepted)
			}
			for _, r := range d.Routes {
				p := pools[r.PoolID]
				checkRoute(t, p, r, labels, who[0])
			}
		}
	})
}

func checkRoute(t *testing.T, p corral.Pool, r corral.Route, labels []string, tenant string) {
	t.Helper()
	f, mx := r.Flavor, p.Max
	if (mx.CPU > 0 && f.CPU > mx.CPU) || (mx.MemoryMB > 0 && f.MemoryMB > mx.MemoryMB) || (mx.DiskMB > 0 && f.DiskMB > mx.DiskMB) {
		t.Fatalf("pool %s: flavor %+v above max %+v", p.ID, f, mx)
	}
	if f.CPU < 0 || f.MemoryMB < 0 || f.DiskMB < 0 || f.Arch != p.Flavor.Arch {
		t.Fatalf("pool %s: bad flavor %+v", p.ID, f)
	}
	if !Covers(labels, p.Labels) {
		t.Fatalf("pool %s accepted %q without its labels %q", p.ID, labels, p.Labels)
	}
	if tenant != "" && p.TenantID != tenant {
		t.Fatalf("pool %s of tenant %s accepted a job of %s", p.ID, p.TenantID, tenant)
	}
	if rl := RunnerLabels(p, labels); !Covers(rl, labels) {
		t.Fatalf("runner labels %q do not cover the job %q", rl, labels)
	}
}
