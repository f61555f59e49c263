package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func TestNew(t *testing.T) {
	ok := func() corral.Pool {
		return corral.Pool{ID: "p", Labels: []string{"corral"}, Provider: "process", Flavor: fl(2, 4, 20, "x64"), Max: fl(8, 16, 80, "")}
	}
	tests := []struct {
		name  string
		pools func() []corral.Pool
		opt   Options
		field string // of the first PoolError
		msg   string
	}{
		{name: "missing id", pools: func() []corral.Pool { p := ok(); p.ID = ""; return []corral.Pool{p} }, field: "id", msg: "pool #1: id: required"},
		{name: "duplicate id", pools: func() []corral.Pool { p, q := ok(), ok(); q.ID = "P"; return []corral.Pool{p, q} }, field: "id", msg: `duplicate pool id "P"`},
		{name: "no provider", pools: func() []corral.Pool { p := ok(); p.Provider = ""; return []corral.Pool{p} }, field: "provider", msg: "required"},
		{name: "no labels", pools: func() []corral.Pool { p := ok(); p.Labels = nil; return []corral.Pool{p} }, field: "labels", msg: "at least one label"},
		{name: "empty label", pools: func() []corral.Pool { p := ok(); p.Labels = []string{" "}; return []corral.Pool{p} }, field: "labels", msg: "is empty"},
		{name: "label with space", pools: func() []corral.Pool { p := ok(); p.Labels = []string{"a b"}; return []corral.Pool{p} }, field: "labels", msg: "space"},
		{name: "label is a key", pools: func() []corral.Pool { p := ok(); p.Labels = []string{"cpu=4"}; return []corral.Pool{p} }, field: "labels", msg: "routing key"},
		{name: "label is a size word", pools: func() []corral.Pool { p := ok(); p.Labels = []string{"Large"}; return []corral.Pool{p} }, field: "labels", msg: "size word"},
		{name: "label is another pool's size word", pools: func() []corral.Pool {
			p, q := ok(), ok()
			q.ID, q.Sizes = "q", map[string]corral.Flavor{"huge": {CPU: 8}}
			p.Labels = []string{"huge"}
			return []corral.Pool{p, q}
		}, field: "labels", msg: "size word"},
		{name: "label is a capacity word", pools: func() []corral.Pool { p := ok(); p.Labels = []string{"4cpu"}; return []corral.Pool{p} }, field: "labels", msg: "capacity word"},
		{name: "label contradicts arch", pools: func() []corral.Pool { p := ok(); p.Labels = []string{"arm64"}; return []corral.Pool{p} }, field: "labels", msg: "contradicts the pool's arch x64"},
		{name: "unknown arch", pools: func() []corral.Pool { p := ok(); p.Flavor.Arch = "sparc"; return []corral.Pool{p} }, field: "arch", msg: `unknown arch "sparc"`},
		{name: "max arch differs", pools: func() []corral.Pool { p := ok(); p.Max.Arch = "arm64"; return []corral.Pool{p} }, field: "max_flavor", msg: "differs"},
		{name: "flavor above max", pools: func() []corral.Pool { p := ok(); p.Flavor.CPU = 32; return []corral.Pool{p} }, field: "flavor", msg: "32 cpu exceeds max_flavor 8 cpu"},
		{name: "memory above max", pools: func() []corral.Pool { p := ok(); p.Flavor.MemoryMB = 32 * g; return []corral.Pool{p} }, field: "flavor", msg: "32 GiB memory exceeds max_flavor 16 GiB"},
		{name: "negative flavor", pools: func() []corral.Pool { p := ok(); p.Flavor.DiskMB = -1; return []corral.Pool{p} }, field: "flavor", msg: "negative"},
		{name: "pool size word with =", pools: func() []corral.Pool {
			p := ok()
			p.Sizes = map[string]corral.Flavor{"a=b": {}}
			return []corral.Pool{p}
		}, field: "sizes", msg: "contains '='"},
		{name: "size word is generic", opt: Options{Sizes: map[string]corral.Flavor{"linux": {}}}, pools: func() []corral.Pool { return []corral.Pool{ok()} }, field: "sizes", msg: "sizes: size word \"linux\" is a generic label"},
		{name: "size word is a capacity word", opt: Options{Sizes: map[string]corral.Flavor{"8gb": {}}}, pools: func() []corral.Pool { return []corral.Pool{ok()} }, field: "sizes", msg: "capacity word"},
		{name: "size arch unknown", opt: Options{Sizes: map[string]corral.Flavor{"big": {Arch: "mips"}}}, pools: func() []corral.Pool { return []corral.Pool{ok()} }, field: "sizes", msg: "unknown arch"},
		{name: "generic with =", opt: Options{Generic: []string{"os=linux"}}, pools: func() []corral.Pool { return []corral.Pool{ok()} }, field: "generic", msg: "contains '='"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.pools(), tt.opt)
			if err == nil || m != nil {
				t.Fatal("New accepted an invalid pool")
			}
			if !errors.Is(err, corral.ErrBadInput) {
				t.Errorf("err %v does not match ErrBadInput", err)
			}
			var es Errors
			if !errors.As(err, &es) || es[0].Field != tt.field {
				t.Fatalf("err %#v, want first field %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err %q, want %q", err, tt.msg)
			}
		})
	}
}

func TestNew_ReportsEveryProblem(t *testing.T) {
	_, err := New([]corral.Pool{
		{ID: "a", Labels: []string{"x"}},
		{ID: "b", Provider: "p", Labels: []string{"x"}, Flavor: corral.Flavor{Arch: "sparc"}},
		{ID: "c", Provider: "p"},
	}, Options{})
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("err %v, want 3 problems", err)
	}
	for i, want := range []string{"a provider", "b arch", "c labels"} {
		if got := es[i].PoolID + " " + es[i].Field; got != want || es[i].Index != i {
			t.Errorf("problem %d: %s (index %d), want %s", i, got, es[i].Index, want)
		}
	}
}

func TestNew_NormalizesAndKeepsInput(t *testing.T) {
	pools := []corral.Pool{{ID: "p", Labels: []string{"corral", "x64"}, Provider: "process"}}
	m, err := New(pools, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Pools()[0].Flavor.Arch; got != "x64" {
		t.Errorf("arch %q, want x64 by default", got)
	}
	if pools[0].Flavor.Arch != "" {
		t.Error("New changed its input")
	}
}
