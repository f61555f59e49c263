package catalog

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// FuzzPoolPatch feeds arbitrary bodies of PATCH /api/v1/pools/{pool} to
// its decoding and to PoolPatch.Apply on a valid pool, with no store (so
// the fuzzing build instruments no database; FuzzPatchPool in internal/app
// takes the same bodies through the handler and a real store, its seeds
// run by go test). Whatever the body: no panic; every refusal wraps
// ErrBadInput; a refused body's pool check and an accepted one's never
// panic; an accepted body applied a second time changes nothing (a patch
// sets values, it does not add to them), and it never leaves a pool
// without labels.
func FuzzPoolPatch(f *testing.F) {
	for _, body := range []string{
		`{"max_instances": 7, "min_idle": 2, "labels": ["corral", "big"], "flavor": "4cpu8gb", "headroom": "25%", "boot_timeout": "3m", "concurrency": 16}`,
		`{"max_instances": -1}`, `{"flavor": "lots"}`, `{"headroom": "x%"}`, `{"boot_timeout": "soon"}`,
		`{"idle_timeout": "0s"}`, `{"max_lifetime": "1m", "max_job_runtime": "2m"}`, `{"labels": []}`,
		`{"provider": "other"}`, `{"max_instances": "7"}`, `{"max_instances": 7} {}`,
		`{"max_flavor": "8cpu16gb100gb", "priority": 2, "price_per_minute": 0.25}`, `{"max_flavor": ""}`,
		`{"image": "ghcr.io/acme/runner:1", "headroom": "2"}`, `{"min_idle": 3, "max_instances": 0}`,
		`{"headroom": "1001%"}`, `{}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(body))
	}
	base := corral.Pool{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "process",
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 10240, Arch: "x64"}, MaxInstances: 4,
		BootTimeout: 5 * time.Minute, MaxJobRuntime: time.Hour, IdleTimeout: 10 * time.Minute, MaxLifetime: 2 * time.Hour}
	if pr := base.Problems(); len(pr) > 0 {
		f.Fatalf("base pool has problems: %v", pr)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		pp, err := DecodePoolPatch(body)
		if err != nil {
			if !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("decode refusal %v does not wrap ErrBadInput", err)
			}
			return
		}
		p := base
		p.Labels = slices.Clone(base.Labels)
		if err := pp.Apply(&p); err != nil {
			if !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("apply refusal %v does not wrap ErrBadInput", err)
			}
			_ = p.Problems()
			return
		}
		if len(p.Labels) == 0 {
			t.Fatalf("an accepted patch %q left no label", body)
		}
		_ = p.Problems()
		again := p
		again.Labels = slices.Clone(p.Labels)
		if err := pp.Apply(&again); err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("the patch %q applied twice: err %v, %+v then %+v", body, err, p, again)
		}
	})
}
