package app

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
)

// Usage for billing (GET /api/v1/usage): runner time of completed jobs,
// measured on each job's timeline from its first job_started stamp to its
// first job_completed stamp (both written by corral when it records the
// forge's in_progress and completed events). A job counts in the window
// [from, to) of its job_completed stamp. Jobs still running are not
// counted until they complete, nor are jobs that no instance of corral ran
// (no pool: cancelled before a runner took them, or another runner took
// them).

// UsageRow is one group of the usage report: a group key and a flavor.
type UsageRow struct {
	Key           string   `json:"key"`
	CPU           int      `json:"cpu"`
	MemoryMB      int      `json:"memory_mb"`
	Jobs          int      `json:"jobs"`
	RunnerSeconds float64  `json:"runner_seconds"`
	RunnerMinutes float64  `json:"runner_minutes"`
	Cost          *float64 `json:"cost,omitempty"`

	dur  time.Duration
	cost float64
	cpm  bool // some job of the row has a price
}

// UsageReport is the usage answer.
type UsageReport struct {
	From    time.Time  `json:"from"`
	To      time.Time  `json:"to"`
	GroupBy string     `json:"group_by"`
	Rows    []UsageRow `json:"rows"`
	Total   UsageRow   `json:"total"`
}

var usageGroups = map[string]func(j corral.Job, day time.Time) string{
	"tenant":     func(j corral.Job, _ time.Time) string { return j.TenantID },
	"pool":       func(j corral.Job, _ time.Time) string { return j.PoolID },
	"target":     func(j corral.Job, _ time.Time) string { return j.TargetID },
	"repository": func(j corral.Job, _ time.Time) string { return j.Repo },
	"day":        func(_ corral.Job, day time.Time) string { return day.UTC().Format(time.DateOnly) },
}

// parseUsageTime takes RFC 3339 or a date (UTC midnight).
func parseUsageTime(name, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s=%q is neither an RFC 3339 time nor a date (2006-01-02): %w", name, s, corral.ErrBadInput)
}

func (a *App) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := a.opt.Clock.Now()
	rep := UsageReport{GroupBy: q.Get("group_by"), To: now}
	if rep.GroupBy == "" {
		rep.GroupBy = "tenant"
	}
	group, ok := usageGroups[rep.GroupBy]
	if !ok {
		httperr.Write(w, fmt.Errorf("group_by=%q: want tenant, pool, target, repository or day: %w", rep.GroupBy, corral.ErrBadInput))
		return
	}
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "csv" {
		httperr.Write(w, fmt.Errorf("format=%q: want json or csv: %w", format, corral.ErrBadInput))
		return
	}
	var err error
	if s := q.Get("to"); s != "" {
		if rep.To, err = parseUsageTime("to", s); err != nil {
			httperr.Write(w, err)
			return
		}
	}
	rep.From = rep.To.AddDate(0, 0, -30)
	if s := q.Get("from"); s != "" {
		if rep.From, err = parseUsageTime("from", s); err != nil {
			httperr.Write(w, err)
			return
		}
	}
	if !rep.From.Before(rep.To) {
		httperr.Write(w, fmt.Errorf("from %s is not before to %s: %w", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), corral.ErrBadInput))
		return
	}
	pools := map[string]corral.Pool{}
	for _, p := range a.Catalog.Current().Pools {
		pools[p.ID] = p
	}
	rows := map[[3]string]*UsageRow{}
	err = a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		clear(rows)
		jobs, err := tx.Jobs(r.Context(), corral.JobFilter{States: []corral.JobState{corral.JobCompleted}, TenantID: auth.TenantOf(r.Context())})
		if err != nil {
			return err
		}
		for _, j := range jobs {
			tl, err := tx.Timeline(r.Context(), j.ID)
			if err != nil {
				return err
			}
			started, completed := RunnerSpan(tl)
			if j.PoolID == "" || completed.IsZero() || completed.Before(rep.From) || !completed.Before(rep.To) {
				continue
			}
			var d time.Duration
			if !started.IsZero() && completed.After(started) {
				d = completed.Sub(started)
			}
			fl := a.jobFlavor(r, tx, j, pools)
			key := group(j, completed)
			k := [3]string{key, strconv.Itoa(fl.CPU), strconv.Itoa(fl.MemoryMB)}
			row := rows[k]
			if row == nil {
				row = &UsageRow{Key: key, CPU: fl.CPU, MemoryMB: fl.MemoryMB}
				rows[k] = row
			}
			row.Jobs++
			row.dur += d
			if p, ok := pools[j.PoolID]; ok && p.PricePerMinute > 0 {
				row.cpm = true
				row.cost += d.Minutes() * p.PricePerMinute
			}
		}
		return nil
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	rep.Rows = make([]UsageRow, 0, len(rows))
	for _, row := range rows {
		rep.Rows = append(rep.Rows, *row)
	}
	sort.Slice(rep.Rows, func(i, k int) bool {
		a, b := rep.Rows[i], rep.Rows[k]
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		if a.CPU != b.CPU {
			return a.CPU < b.CPU
		}
		return a.MemoryMB < b.MemoryMB
	})
	rep.Total.Key = "total"
	for i := range rep.Rows {
		row := &rep.Rows[i]
		rep.Total.Jobs += row.Jobs
		rep.Total.dur += row.dur
		rep.Total.cost += row.cost
		rep.Total.cpm = rep.Total.cpm || row.cpm
		row.finish()
	}
	rep.Total.finish()
	if format == "csv" {
		writeUsageCSV(w, rep)
		return
	}
	httperr.WriteJSON(w, http.StatusOK, rep)
}

func (row *UsageRow) finish() {
	row.RunnerSeconds = row.dur.Seconds()
	row.RunnerMinutes = row.dur.Minutes()
	if row.cpm {
		c := row.cost
		row.Cost = &c
	}
}

// RunnerSpan returns the stamps usage measures on a job's timeline: the
// first job_started and the first job_completed (zero when absent).
func RunnerSpan(tl []corral.Event) (started, completed time.Time) {
	for _, e := range tl {
		switch {
		case e.Kind == corral.EvJobStarted && started.IsZero():
			started = e.At
		case e.Kind == corral.EvJobCompleted && completed.IsZero():
			completed = e.At
		}
	}
	return started, completed
}

// jobFlavor is the flavor the job ran with: its instance's, else the
// flavor its pool's route gave it, else the pool's default.
func (a *App) jobFlavor(r *http.Request, tx corral.ReadTx, j corral.Job, pools map[string]corral.Pool) corral.Flavor {
	if j.InstanceID != "" {
		if in, err := tx.Instance(r.Context(), j.InstanceID); err == nil && (in.Flavor.CPU != 0 || in.Flavor.MemoryMB != 0) {
			return in.Flavor
		}
	}
	for _, rt := range j.Routes {
		if rt.PoolID == j.PoolID && (rt.Flavor.CPU != 0 || rt.Flavor.MemoryMB != 0) {
			return rt.Flavor
		}
	}
	return pools[j.PoolID].Flavor
}

func writeUsageCSV(w http.ResponseWriter, rep UsageReport) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{rep.GroupBy, "cpu", "memory_mb", "jobs", "runner_seconds", "runner_minutes", "cost"})
	for _, row := range append(rep.Rows, rep.Total) {
		cost := ""
		if row.Cost != nil {
			cost = strconv.FormatFloat(*row.Cost, 'f', 4, 64)
		}
		_ = cw.Write([]string{row.Key, strconv.Itoa(row.CPU), strconv.Itoa(row.MemoryMB), strconv.Itoa(row.Jobs),
			strconv.FormatFloat(row.RunnerSeconds, 'f', -1, 64), strconv.FormatFloat(row.RunnerMinutes, 'f', -1, 64), cost})
	}
	cw.Flush()
}
