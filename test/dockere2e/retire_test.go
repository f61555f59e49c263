package dockere2e

import (
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestDocker_ProviderRemoved removes a docker provider instance (and its
// pool) from the config while its containers run jobs, and restarts corral
// with the new file: corral opens the provider from the definition it kept
// in its store, in retired mode; the containers finish their jobs and are
// deleted, no registration is left, and once none of its instances is left
// the provider is forgotten (logged).
func TestDocker_ProviderRemoved(t *testing.T) {
	const jobs = 3
	host := dockertest.Socket(t)
	img := runnerImage(t, host)
	eng := newEngine(t, "local", host)
	f := newRig(t, standin.Options{Seed: 9}, setup{Image: img, PoolMax: 4})
	with := f.cfg
	with.Docker = nil
	with.Providers = []e2etest.Provider{{Name: "local", Type: "process"},
		{Name: "rack1", Type: "docker", Docker: &e2etest.Docker{Network: "host", Endpoints: []e2etest.Endpoint{{Name: "local", Host: host}}}}}
	with.Pools = []e2etest.Pool{{ID: "elsewhere", Labels: []string{"never-asked"}, Provider: "local", MaxInstances: 1},
		{ID: "containers", Labels: []string{"corral"}, Provider: "rack1", Image: img, Flavor: "1cpu1gb1gb", MaxInstances: 4}}
	without := with
	without.Providers = with.Providers[:1]
	without.Pools = with.Pools[:1]
	start := func(c e2etest.Config) *e2etest.Proc {
		return e2etest.Start(t, e2etest.Serve{Bin: bin.corral, Config: e2etest.WriteConfig(t, c), Listen: f.listen, Env: f.Env()})
	}
	p := start(with)
	for i := range jobs {
		f.queue(i, 6*time.Second)
	}
	waitFor(t, 60*time.Second, "every job running in a container", func() bool {
		return f.Count(standin.StatusInProgress) == jobs && eng.count(t) == jobs
	})
	p.Stop(t)

	p = start(without)
	if out := p.Output(); !strings.Contains(out, "provider gone from the config is retired") || !strings.Contains(out, "provider=rack1") {
		t.Error("corral did not say that it opened provider rack1 in retired mode")
	}
	if n := eng.count(t); n != jobs {
		t.Errorf("%d containers after the restart, want the %d still at work", n, jobs)
	}
	waitFor(t, 90*time.Second, "every job completed", func() bool { return f.Count(standin.StatusCompleted) == jobs })
	checkClean(t, f, []*engine{eng}, jobs, nil, nil)
	waitFor(t, 30*time.Second, "no live instance in corral's store", func() bool { return len(liveInstances(t, f.listen)) == 0 })
	waitFor(t, 30*time.Second, "the retired provider forgotten", func() bool {
		return strings.Contains(p.Output(), "retired provider forgotten: none of its instances is left")
	})
	p.Stop(t)
}
