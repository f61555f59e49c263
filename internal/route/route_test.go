package route

import (
	"reflect"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

const g = 1024 // MiB per GiB

func fl(cpu, memGiB, diskGiB int, arch string) corral.Flavor {
	return corral.Flavor{CPU: cpu, MemoryMB: memGiB * g, DiskMB: diskGiB * g, Arch: arch}
}

// testPools: routing order is other (0), gpu (5), linux (10), arm (20).
func testPools() []corral.Pool {
	return []corral.Pool{
		{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "process", Image: "/opt/runner",
			Flavor: fl(2, 4, 20, "x64"), Max: fl(16, 64, 200, ""), Priority: 10},
		{ID: "arm", TenantID: "default", Labels: []string{"corral"}, Provider: "docker", Image: "runner:arm",
			Flavor: fl(2, 4, 20, "aarch64"), Max: fl(8, 32, 100, ""), Priority: 20},
		{ID: "gpu", TenantID: "default", Targets: []string{"acme"}, Labels: []string{"Corral", "gpu"}, Provider: "process",
			Flavor: fl(8, 32, 100, ""), Priority: 5, Sizes: map[string]corral.Flavor{"huge": fl(32, 128, 0, "")}},
		{ID: "other", TenantID: "t2", Labels: []string{"corral"}, Provider: "process", Priority: 0},
	}
}

func newTestMatcher(t testing.TB) *Matcher {
	t.Helper()
	m, err := New(testPools(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rt(id string, f corral.Flavor) corral.Route { return corral.Route{PoolID: id, Flavor: f} }

func TestMatcher_Route(t *testing.T) {
	m := newTestMatcher(t)
	linuxDef, armDef := rt("linux", fl(2, 4, 20, "x64")), rt("arm", fl(2, 4, 20, "arm64"))
	tests := []struct {
		name           string
		anyTenant      bool // route with an empty tenant id
		tenant, target string
		labels         []string
		want           []corral.Route
		reason         string            // substring of Decision.Reason when no route
		why            map[string]string // substring of a pool's check reason
	}{
		{name: "no labels", labels: nil, reason: "job has no labels", why: map[string]string{"linux": "no labels"}},
		{name: "blank labels", labels: []string{" ", ""}, reason: "job has no labels"},
		{name: "pool label", labels: []string{"corral"}, want: []corral.Route{linuxDef},
			why: map[string]string{"gpu": `job lacks pool label "gpu"`, "other": `tenant "t2"`, "arm": "job names no arch; pool is arm64"}},
		{name: "pool label case-insensitive", labels: []string{"CORRAL"}, want: []corral.Route{linuxDef}},
		{name: "lacks pool label", labels: []string{"self-hosted", "foo"}, reason: `job lacks pool label "corral"`},
		{name: "generic labels and x64", labels: []string{"self-hosted", "Linux", "X64", "corral"}, want: []corral.Route{linuxDef},
			why: map[string]string{"arm": "job asks for arch x64, pool is arm64"}},
		{name: "ARM64 word", labels: []string{"corral", "ARM64"}, want: []corral.Route{armDef}},
		{name: "aarch64 word", labels: []string{"corral", "aarch64"}, want: []corral.Route{armDef}},
		{name: "amd64 and x86_64 words agree", labels: []string{"corral", "amd64", "x86_64"}, want: []corral.Route{linuxDef}},
		{name: "arch key", labels: []string{"corral", "arch=arm64"}, want: []corral.Route{armDef}},
		{name: "arch key spelling", labels: []string{"corral", "arch=AMD64"}, want: []corral.Route{linuxDef}},
		{name: "arch key unknown", labels: []string{"corral", "arch=sparc"}, reason: `label "arch=sparc": unknown arch`},
		{name: "two archs", labels: []string{"corral", "x64", "arch=arm64"}, reason: "two archs: x64 and arm64"},
		{name: "other pool's label excludes", tenant: "default", target: "acme", labels: []string{"corral", "gpu"},
			want: []corral.Route{rt("gpu", fl(8, 32, 100, "x64"))},
			why:  map[string]string{"linux": `job label "gpu" belongs to another pool`}},
		{name: "target not served", tenant: "default", target: "zeta", labels: []string{"corral", "gpu"},
			reason: `does not serve target "zeta"`},
		{name: "pool key", labels: []string{"corral", "pool=arm"}, want: []corral.Route{armDef},
			why: map[string]string{"linux": `job asks for pool "arm"`}},
		{name: "pool key case-insensitive", labels: []string{"corral", "Pool=ARM"}, want: []corral.Route{armDef}},
		{name: "two pool keys", labels: []string{"corral", "pool=arm", "pool=linux"}, reason: "no pool accepts the job"},
		{name: "pool key empty", labels: []string{"corral", "pool="}, reason: `label "pool=" has no value`},
		{name: "provider key", labels: []string{"corral", "provider=docker", "arm64"}, want: []corral.Route{armDef},
			why: map[string]string{"linux": `job asks for provider "docker", pool uses "process"`}},
		{name: "runs-on key", labels: []string{"corral", "runs-on=docker", "arm64"}, want: []corral.Route{armDef}},
		{name: "image key", labels: []string{"corral", "image=/opt/runner"}, want: []corral.Route{linuxDef},
			why: map[string]string{"arm": `job asks for image "/opt/runner", pool uses "runner:arm"`}},
		{name: "size word", labels: []string{"corral", "large"},
			want: []corral.Route{rt("linux", fl(8, 16, 80, "x64"))}},
		{name: "size word arm", labels: []string{"corral", "large", "arm64"},
			want: []corral.Route{rt("arm", fl(8, 16, 80, "arm64"))}},
		{name: "size word above max", labels: []string{"corral", "XLarge", "arm64"}, reason: "asks 16 cpu, pool arm caps at 8"},
		{name: "size key", labels: []string{"corral", "size=medium"},
			want: []corral.Route{rt("linux", fl(4, 8, 40, "x64"))}},
		{name: "size key and word agree", labels: []string{"corral", "size=small", "small", "x64"}, want: []corral.Route{linuxDef}},
		{name: "two sizes", labels: []string{"corral", "small", "large"}, reason: `two sizes: "small" and "large"`},
		{name: "size key unknown", labels: []string{"corral", "size=tiny"}, reason: `no pool defines size "tiny"`},
		{name: "pool size word", target: "acme", labels: []string{"corral", "gpu", "huge"},
			want: []corral.Route{rt("gpu", corral.Flavor{CPU: 32, MemoryMB: 128 * g, DiskMB: 100 * g, Arch: "x64"})}},
		{name: "size word undefined in pool", labels: []string{"corral", "huge"}, reason: `pool does not define size "huge"`},
		{name: "capacity word", labels: []string{"corral", "4cpu8gb50gb", "x64"}, want: []corral.Route{rt("linux", fl(4, 8, 50, "x64"))}},
		{name: "capacity word cpu last", labels: []string{"corral", "16GiB4CPU", "x64"}, want: []corral.Route{rt("linux", fl(4, 16, 20, "x64"))}},
		{name: "capacity memory only", labels: []string{"corral", "8gb", "x64"}, want: []corral.Route{rt("linux", fl(2, 8, 20, "x64"))}},
		{name: "capacity over size word", labels: []string{"corral", "large", "4cpu", "x64"}, want: []corral.Route{rt("linux", fl(4, 16, 80, "x64"))}},
		{name: "capacity words conflict", labels: []string{"corral", "4cpu", "8cpu"}, reason: "capacity words ask for two cpu counts: 4 and 8"},
		{name: "capacity words agree", labels: []string{"corral", "4cpu", "4cpu8gb", "x64"}, want: []corral.Route{rt("linux", fl(4, 8, 20, "x64"))}},
		{name: "capacity malformed", labels: []string{"corral", "0cpu"}, reason: `label capacity "0cpu": cpu must be positive`},
		{name: "not a capacity word", labels: []string{"corral", "4cpu8xb", "1password", "x64"}, want: []corral.Route{linuxDef}},
		{name: "cpu key wins", labels: []string{"corral", "4cpu8gb", "cpu=6", "x64"}, want: []corral.Route{rt("linux", fl(6, 8, 20, "x64"))}},
		{name: "cpu keys conflict", labels: []string{"corral", "cpu=4", "cpu=8"}, reason: "labels ask for two cpu counts: 4 and 8"},
		{name: "ram and memory conflict", labels: []string{"corral", "ram=8", "memory=16gb"}, reason: "two memory sizes: 8 GiB and 16 GiB"},
		{name: "ram and memory agree", labels: []string{"corral", "ram=8gb", "memory=8192mb", "x64"}, want: []corral.Route{rt("linux", fl(2, 8, 20, "x64"))}},
		{name: "disk key", labels: []string{"corral", "disk=100", "x64"}, want: []corral.Route{rt("linux", fl(2, 4, 100, "x64"))}},
		{name: "cpu above max", labels: []string{"corral", "64cpu"},
			reason: "linux: asks 64 cpu, pool linux caps at 16; arm: job names no arch; pool is arm64, the default is x64"},
		{name: "memory above max", labels: []string{"corral", "ram=128", "x64"}, reason: "asks 128 GiB memory, pool linux caps at 64 GiB"},
		{name: "disk above max", labels: []string{"corral", "disk=1tb", "x64"}, reason: "asks 1024 GiB disk, pool linux caps at 200 GiB"},
		{name: "cpu key malformed", labels: []string{"corral", "cpu=abc"}, reason: `label "cpu=abc": cpu must be a positive whole number`},
		{name: "cpu key zero", labels: []string{"corral", "cpu=0"}, reason: "cpu must be a positive whole number"},
		{name: "cpu key signed", labels: []string{"corral", "cpu=+4"}, reason: "cpu must be a positive whole number"},
		{name: "ram key malformed", labels: []string{"corral", "ram=lots"}, reason: `label "ram=lots"`},
		{name: "disk key empty", labels: []string{"corral", "disk="}, reason: "has no value"},
		{name: "unknown keys pass through", labels: []string{"corral", "run-id=12345", "team=web", "x64"}, want: []corral.Route{linuxDef}},
		{name: "unique label passes through", labels: []string{"corral", "job-8f3a", "x64"}, want: []corral.Route{linuxDef}},
		{name: "tenant filter", tenant: "t2", labels: []string{"corral"}, want: []corral.Route{rt("other", fl(0, 0, 0, "x64"))},
			why: map[string]string{"linux": `pool belongs to tenant "default", not "t2"`}},
		{name: "tenant without pools", tenant: "t3", labels: []string{"corral"}, reason: `tenant "t3" has no pools`},
		{name: "no tenant checks every tenant", anyTenant: true, labels: []string{"corral", "x64", "pool=other"}, want: []corral.Route{rt("other", fl(0, 0, 0, "x64"))}},
		{name: "refusal of other tenants stays private", tenant: "default", labels: []string{"nope"},
			reason: `no pool accepts the job: gpu, linux, arm: job lacks pool label "corral"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant := tt.tenant
			if tenant == "" && !tt.anyTenant {
				tenant = "default"
			}
			d := m.Route(tenant, tt.target, tt.labels)
			if !reflect.DeepEqual(d.Routes, tt.want) {
				t.Fatalf("routes = %+v, want %+v\nreason: %s", d.Routes, tt.want, d.Reason)
			}
			if len(tt.want) == 0 && !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason = %q, want it to contain %q", d.Reason, tt.reason)
			}
			if len(tt.want) > 0 && d.Reason != "" {
				t.Errorf("reason %q set on a routed job", d.Reason)
			}
			if len(d.Checks) != 4 {
				t.Fatalf("%d checks, want 4", len(d.Checks))
			}
			for _, c := range d.Checks {
				if want, ok := tt.why[c.PoolID]; ok && !strings.Contains(c.Reason, want) {
					t.Errorf("pool %s: reason %q, want it to contain %q", c.PoolID, c.Reason, want)
				}
			}
		})
	}
}

func TestMatcher_RouteOrder(t *testing.T) {
	m := newTestMatcher(t)
	d := m.Route("", "acme", []string{"corral", "x64"})
	var ids []string
	for _, c := range d.Checks {
		ids = append(ids, c.PoolID)
	}
	if want := []string{"other", "gpu", "linux", "arm"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("check order %v, want %v", ids, want)
	}
	// Same priority: by id.
	pools := []corral.Pool{
		{ID: "b", Labels: []string{"x"}, Provider: "p"},
		{ID: "a", Labels: []string{"x"}, Provider: "p"},
	}
	m2, err := New(pools, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Route("", "", []string{"x"}).Routes; got[0].PoolID != "a" || got[1].PoolID != "b" {
		t.Fatalf("routes %v, want a before b", got)
	}
}

func TestMatcher_RouteOptions(t *testing.T) {
	pools := []corral.Pool{
		{ID: "linux", Labels: []string{"corral", "ubuntu-latest"}, Provider: "process", Flavor: fl(2, 4, 20, "x64")},
		{ID: "big", Labels: []string{"corral"}, Provider: "process", Flavor: fl(2, 4, 20, "x64")},
	}
	m, err := New(pools, Options{
		Generic: []string{"Ubuntu-Latest"},
		Sizes:   map[string]corral.Flavor{"armbig": {CPU: 8, Arch: "aarch64"}, "Tiny": {CPU: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("generic pool label is not exclusive", func(t *testing.T) {
		d := m.Route("", "", []string{"corral", "ubuntu-latest"})
		if len(d.Routes) != 2 {
			t.Fatalf("routes %v, want both pools; reason %s", d.Routes, d.Reason)
		}
	})
	t.Run("table replaces the defaults", func(t *testing.T) {
		d := m.Route("", "", []string{"corral", "large"}) // now a unique label
		if len(d.Routes) != 1 || d.Routes[0].Flavor != fl(2, 4, 20, "x64") {
			t.Fatalf("routes %v, want big with the default flavor", d.Routes)
		}
		d = m.Route("", "", []string{"corral", "tiny"})
		if len(d.Routes) != 1 || d.Routes[0].Flavor.CPU != 1 || d.Routes[0].Flavor.MemoryMB != 4*g {
			t.Fatalf("routes %v, want 1 cpu and the pool's memory", d.Routes)
		}
	})
	t.Run("size word of another arch", func(t *testing.T) {
		d := m.Route("", "", []string{"corral", "armbig"})
		if len(d.Routes) != 0 || !strings.Contains(d.Reason, `size "armbig" is arm64, pool is x64`) {
			t.Fatalf("routes %v reason %q", d.Routes, d.Reason)
		}
	})
}

func TestMatcher_RouteNoPools(t *testing.T) {
	m, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Route("", "", []string{"corral"}); d.Reason != "no pools are configured" || len(d.Routes) != 0 {
		t.Fatalf("decision %+v", d)
	}
}

func TestDecision_Explain(t *testing.T) {
	m := newTestMatcher(t)
	got := m.Route("default", "", []string{"corral", "large"}).Explain()
	for _, want := range []string{
		"labels: corral, large\n",
		"routes: linux (8 cpu, 16 GiB memory, 80 GiB disk, x64)\n",
		"  arm    refuses  job names no arch; pool is arm64, the default is x64",
		"pools, in routing order:\n",
		"  gpu    refuses  job lacks pool label \"gpu\"\n",
		"  linux  accepts  8 cpu, 16 GiB memory, 80 GiB disk, x64\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("explain lacks %q:\n%s", want, got)
		}
	}
	got = m.Route("default", "", []string{"corral", "64cpu"}).Explain()
	if !strings.Contains(got, "no route: no pool accepts the job: ") || !strings.Contains(got, "refuses  asks 64 cpu, pool linux caps at 16") {
		t.Errorf("explain of a refusal:\n%s", got)
	}
}

func BenchmarkRoute(b *testing.B) {
	var pools []corral.Pool
	for i := range 20 {
		pools = append(pools, corral.Pool{
			ID: "pool-" + string(rune('a'+i)), TenantID: "default", Labels: []string{"corral", "team-" + string(rune('a'+i%5))},
			Provider: "process", Flavor: fl(2, 4, 20, ""), Max: fl(16, 64, 200, ""), Priority: i % 3,
		})
	}
	m, err := New(pools, Options{})
	if err != nil {
		b.Fatal(err)
	}
	labels := []string{"self-hosted", "linux", "X64", "corral", "team-c", "4cpu16gb"}
	b.ReportAllocs()
	for b.Loop() {
		if d := m.Route("default", "acme", labels); len(d.Routes) != 4 {
			b.Fatalf("routes %v: %s", d.Routes, d.Reason)
		}
	}
}
