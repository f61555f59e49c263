package app

import (
	"context"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/metrics"
)

// Counts implements metrics.StateReader: open jobs by state and live
// instances by state, pool and provider, read from the store.
func (a *App) Counts(ctx context.Context) (map[corral.JobState]int, []metrics.InstanceCount, error) {
	var jobs []corral.Job
	var ins []corral.Instance
	err := a.opt.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		var open []corral.JobState
		for _, s := range corral.JobStates {
			if s.Open() {
				open = append(open, s)
			}
		}
		if jobs, err = tx.Jobs(ctx, corral.JobFilter{States: open}); err != nil {
			return err
		}
		ins, err = tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	byState := map[corral.JobState]int{}
	for _, j := range jobs {
		byState[j.State]++
	}
	snap := a.Catalog.Current()
	type key struct {
		state          corral.InstanceState
		pool, provider string
	}
	n := map[key]int{}
	for _, in := range ins {
		prov := ""
		if p, ok := snap.Pool(in.PoolID); ok {
			prov = p.Provider
		}
		n[key{in.State, in.PoolID, prov}]++
	}
	out := make([]metrics.InstanceCount, 0, len(n))
	for k, v := range n {
		out = append(out, metrics.InstanceCount{State: k.state, Pool: k.pool, Provider: k.provider, N: v})
	}
	return byState, out, nil
}

// Leader implements metrics.StateReader.
func (a *App) Leader() (bool, int64) {
	if a.opt.NoLeader {
		return a.Leading(), 0
	}
	s := a.Lead.Get()
	return s.Leading, s.Token
}

// Budgets implements metrics.StateReader: the forge API budget of every
// target whose forge client knows one (GitHub), as GET /api/v1/targets
// shows it.
func (a *App) Budgets() []metrics.Budget {
	var out []metrics.Budget
	for _, t := range a.Catalog.Current().Targets {
		f, err := a.opt.Forges.Forge(t)
		if err != nil {
			continue
		}
		if b, ok := f.(budgeter); ok {
			if n, reset := b.Budget(); n >= 0 {
				out = append(out, metrics.Budget{Target: t.ID, Remaining: n, Reset: reset})
			}
		}
	}
	return out
}
