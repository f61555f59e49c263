package app

import (
	"maps"
	"net/http"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/rightsize"
	"github.com/corral-ci/corral/internal/route"
)

// RightsizingRow is what the recorded jobs of one repository, workflow and
// job name used, and the smallest size of their pool that covers it.
type RightsizingRow struct {
	Tenant             string  `json:"tenant"`
	Repository         string  `json:"repository"`
	Workflow           string  `json:"workflow"`
	Job                string  `json:"job"`
	Pool               string  `json:"pool"`
	Jobs               int     `json:"jobs"`
	PeakCPU            float64 `json:"peak_cpu"`
	P95CPU             float64 `json:"p95_cpu"`
	PeakMemoryMB       float64 `json:"peak_memory_mb"`
	MaxDurationSeconds float64 `json:"max_duration_seconds"`
	CPU                int     `json:"cpu"`       // largest flavor it ran on
	MemoryMB           int     `json:"memory_mb"` // largest flavor it ran on
	AdviceSize         string  `json:"advice_size"`
	AdviceCPU          int     `json:"advice_cpu"`
	AdviceMemoryMB     int     `json:"advice_memory_mb"`
	Smaller            bool    `json:"smaller"`
	Advice             string  `json:"advice"`
	LastAt             string  `json:"last_at"`
}

// sizesOf is the size-word table of pool p: the configured (or default)
// table with the pool's own words over it.
func (a *App) sizesOf(p corral.Pool) map[string]corral.Flavor {
	out := maps.Clone(a.opt.Sizes)
	if out == nil {
		out = route.DefaultSizes()
	}
	maps.Copy(out, p.Sizes)
	return out
}

// rightsizing answers GET /api/v1/rightsizing: per repository and job
// name, the peaks recorded and the advice (tenant tokens see their own).
func (a *App) rightsizing(w http.ResponseWriter, r *http.Request) {
	var sums []corral.UsageSummary
	err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		sums, err = tx.UsageSummaries(r.Context(), auth.TenantOf(r.Context()))
		return err
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	pools := map[string]corral.Pool{}
	for _, p := range a.Catalog.Current().Pools {
		pools[p.ID] = p
	}
	rows := make([]RightsizingRow, 0, len(sums))
	for _, s := range sums {
		adv := rightsize.Advise(rightsize.Summary{PeakCPU: s.PeakCPU, P95CPU: s.P95CPU, PeakMemoryBytes: s.PeakMemoryBytes},
			a.sizesOf(pools[s.PoolID]), s.Flavor)
		rows = append(rows, RightsizingRow{
			Tenant: s.TenantID, Repository: s.Repo, Workflow: s.Workflow, Job: s.JobName, Pool: s.PoolID, Jobs: s.Jobs,
			PeakCPU: s.PeakCPU, P95CPU: s.P95CPU, PeakMemoryMB: float64(s.PeakMemoryBytes) / (1 << 20),
			MaxDurationSeconds: s.MaxDuration.Seconds(), CPU: s.Flavor.CPU, MemoryMB: s.Flavor.MemoryMB,
			AdviceSize: adv.Size, AdviceCPU: adv.Flavor.CPU, AdviceMemoryMB: adv.Flavor.MemoryMB, Smaller: adv.Smaller,
			Advice: adv.Text, LastAt: s.LastAt.UTC().Format(time.RFC3339),
		})
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"jobs": rows})
}
