package app

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/corral-ci/corral/internal/analytics"
	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
)

// maxAnalyticsRuns bounds the job runs one analytics answer reads; a
// window holding more says so (truncated) and counts the oldest ones.
const maxAnalyticsRuns = 200_000

// AnalyticsReport is the answer of GET /api/v1/analytics.
type AnalyticsReport struct {
	analytics.Report
	// Truncated: the window holds more runs than one answer reads; the
	// figures count the oldest maxAnalyticsRuns of them.
	Truncated bool `json:"truncated"`
}

// analyticsReport answers GET /api/v1/analytics: CI analytics of the jobs
// completed in [from, to) (default: the last 30 days), per repository,
// workflow and job name and per day, optionally for one repository,
// workflow or job name; tenant tokens see their own tenant.
func (a *App) analyticsReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	to := a.opt.Clock.Now()
	var err error
	if s := q.Get("to"); s != "" {
		if to, err = parseUsageTime("to", s); err != nil {
			httperr.Write(w, err)
			return
		}
	}
	from := to.AddDate(0, 0, -30)
	if s := q.Get("from"); s != "" {
		if from, err = parseUsageTime("from", s); err != nil {
			httperr.Write(w, err)
			return
		}
	}
	if !from.Before(to) {
		httperr.Write(w, fmt.Errorf("from %s is not before to %s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), corral.ErrBadInput))
		return
	}
	if to.Sub(from) > 400*24*time.Hour {
		httperr.Write(w, fmt.Errorf("from %s to %s spans more than 400 days: %w", from.Format(time.DateOnly), to.Format(time.DateOnly), corral.ErrBadInput))
		return
	}
	top := 0
	if s := q.Get("top"); s != "" {
		if top, err = strconv.Atoi(s); err != nil || top < 1 || top > 100 {
			httperr.Write(w, fmt.Errorf("top=%q: want a number from 1 to 100: %w", s, corral.ErrBadInput))
			return
		}
	}
	var runs []corral.JobRun
	err = a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		runs, err = tx.JobRuns(r.Context(), corral.JobRunFilter{TenantID: auth.TenantOf(r.Context()), Since: from, Until: to,
			Limit: maxAnalyticsRuns + 1})
		return err
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	rep := AnalyticsReport{Truncated: len(runs) > maxAnalyticsRuns}
	runs = runs[:min(len(runs), maxAnalyticsRuns)]
	repo, workflow, job := q.Get("repository"), q.Get("workflow"), q.Get("job")
	if repo != "" || workflow != "" || job != "" {
		kept := runs[:0]
		for _, jr := range runs {
			if (repo == "" || jr.Repo == repo) && (workflow == "" || jr.Workflow == workflow) && (job == "" || jr.JobName == job) {
				kept = append(kept, jr)
			}
		}
		runs = kept
	}
	rep.Report = analytics.Summarize(runs, from.UTC(), to.UTC(), top)
	httperr.WriteJSON(w, http.StatusOK, rep)
}
