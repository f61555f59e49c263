// Package analytics sums up completed jobs (corral.JobRun, from the forges'
// completed events) per repository, workflow and job name, and per day:
// counts, conclusions, success rate, p50/p95 duration and queue time, step
// timings, and the slowest and most failing jobs. It is pure: the API reads
// the runs from the store and hands them here.
//
// Percentiles are nearest-rank: of n known values sorted ascending, the
// q-th percentile is the ceil(q*n)-th. A run whose start or end is unknown
// counts in the conclusions but not in the durations.
package analytics

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Report is the analytics of the runs completed in [Since, Until).
type Report struct {
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	Runs        int       `json:"runs"`
	Jobs        []Group   `json:"jobs"`         // by repository, workflow, job
	Slowest     []Group   `json:"slowest"`      // by p95 duration, longest first
	MostFailing []Group   `json:"most_failing"` // by failures, most first
	Days        []Day     `json:"days"`         // each UTC day of the window, oldest first
}

// Figures are the counts and timings of a set of runs. Timings are in
// seconds; nil when no run of the set has both ends known.
type Figures struct {
	Count       int      `json:"count"`
	Success     int      `json:"success"`
	Failure     int      `json:"failure"` // failure, timed_out, startup_failure
	Cancelled   int      `json:"cancelled"`
	Other       int      `json:"other"` // skipped, neutral, action_required, stale, ...
	SuccessRate float64  `json:"success_rate"`
	DurationP50 *float64 `json:"duration_p50_seconds"`
	DurationP95 *float64 `json:"duration_p95_seconds"`
	QueueP50    *float64 `json:"queue_p50_seconds"`
	QueueP95    *float64 `json:"queue_p95_seconds"`
}

// Group is one repository + workflow + job name.
type Group struct {
	Repository string `json:"repository"`
	Workflow   string `json:"workflow"`
	Job        string `json:"job"`
	Figures
	LastConclusion string     `json:"last_conclusion"`
	LastAt         time.Time  `json:"last_at"`
	Steps          []StepStat `json:"steps,omitempty"`
}

// StepStat is one step name of a group's runs, in step order.
type StepStat struct {
	Number      int      `json:"number"`
	Name        string   `json:"name"`
	Count       int      `json:"count"`
	Failure     int      `json:"failure"`
	DurationP50 *float64 `json:"duration_p50_seconds"`
	DurationP95 *float64 `json:"duration_p95_seconds"`
}

// Day is one UTC day of the window.
type Day struct {
	Date string `json:"date"` // YYYY-MM-DD
	Figures
}

// DefaultTop is how many slowest and most failing jobs a report lists.
const DefaultTop = 10

// Summarize makes the report of runs (completed in [since, until)); top
// bounds the slowest and most failing lists (0: DefaultTop).
func Summarize(runs []corral.JobRun, since, until time.Time, top int) Report {
	if top <= 0 {
		top = DefaultTop
	}
	rep := Report{Since: since, Until: until, Runs: len(runs), Jobs: []Group{}, Slowest: []Group{}, MostFailing: []Group{}, Days: []Day{}}
	type key struct{ repo, workflow, job string }
	// Pointers, not copies: a run is a large struct.
	groups := map[key][]*corral.JobRun{}
	days := map[string][]*corral.JobRun{}
	for i := range runs {
		r := &runs[i]
		k := key{r.Repo, r.Workflow, r.JobName}
		groups[k] = append(groups[k], r)
		d := r.CompletedAt.UTC().Format(time.DateOnly)
		days[d] = append(days[d], r)
	}
	for k, rs := range groups {
		g := Group{Repository: k.repo, Workflow: k.workflow, Job: k.job, Figures: figures(rs), Steps: steps(rs)}
		last := rs[0]
		for _, r := range rs {
			if r.CompletedAt.After(last.CompletedAt) {
				last = r
			}
		}
		g.LastConclusion, g.LastAt = last.Conclusion, last.CompletedAt.UTC()
		rep.Jobs = append(rep.Jobs, g)
	}
	slices.SortFunc(rep.Jobs, func(a, b Group) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Workflow, b.Workflow), cmp.Compare(a.Job, b.Job))
	})
	for _, g := range rep.Jobs {
		if g.DurationP95 != nil {
			rep.Slowest = append(rep.Slowest, g)
		}
		if g.Failure > 0 {
			rep.MostFailing = append(rep.MostFailing, g)
		}
	}
	// Stable sorts: ties keep the repository/workflow/job order.
	slices.SortStableFunc(rep.Slowest, func(a, b Group) int { return cmp.Compare(*b.DurationP95, *a.DurationP95) })
	slices.SortStableFunc(rep.MostFailing, func(a, b Group) int {
		return cmp.Or(cmp.Compare(b.Failure, a.Failure), cmp.Compare(1-b.SuccessRate, 1-a.SuccessRate))
	})
	rep.Slowest = rep.Slowest[:min(top, len(rep.Slowest))]
	rep.MostFailing = rep.MostFailing[:min(top, len(rep.MostFailing))]
	if !since.IsZero() && !until.IsZero() && until.Sub(since) <= 400*24*time.Hour {
		for d := since.UTC().Truncate(24 * time.Hour); d.Before(until); d = d.Add(24 * time.Hour) {
			day := d.Format(time.DateOnly)
			rep.Days = append(rep.Days, Day{Date: day, Figures: figures(days[day])})
			delete(days, day)
		}
	}
	for day, rs := range days { // runs outside the window's days (an open window)
		rep.Days = append(rep.Days, Day{Date: day, Figures: figures(rs)})
	}
	slices.SortFunc(rep.Days, func(a, b Day) int { return cmp.Compare(a.Date, b.Date) })
	return rep
}

func figures(rs []*corral.JobRun) Figures {
	f := Figures{Count: len(rs)}
	var dur, queue []time.Duration
	for _, r := range rs {
		switch r.Conclusion {
		case "success":
			f.Success++
		case "failure", "timed_out", "startup_failure":
			f.Failure++
		case "cancelled":
			f.Cancelled++
		default:
			f.Other++
		}
		if d := r.Duration(); d >= 0 {
			dur = append(dur, d)
		}
		if q := r.QueueTime(); q >= 0 {
			queue = append(queue, q)
		}
	}
	if f.Count > 0 {
		f.SuccessRate = float64(f.Success) / float64(f.Count)
	}
	f.DurationP50, f.DurationP95 = Percentile(dur, 0.50), Percentile(dur, 0.95)
	f.QueueP50, f.QueueP95 = Percentile(queue, 0.50), Percentile(queue, 0.95)
	return f
}

func steps(rs []*corral.JobRun) []StepStat {
	type acc struct {
		number  int
		count   int
		failure int
		dur     []time.Duration
	}
	by := map[string]*acc{}
	var order []string
	for _, r := range rs {
		for _, s := range r.Steps {
			a := by[s.Name]
			if a == nil {
				a = &acc{number: s.Number}
				by[s.Name] = a
				order = append(order, s.Name)
			}
			a.count++
			if s.Conclusion == "failure" {
				a.failure++
			}
			if d := s.Duration(); d >= 0 {
				a.dur = append(a.dur, d)
			}
		}
	}
	out := make([]StepStat, 0, len(order))
	for _, name := range order {
		a := by[name]
		out = append(out, StepStat{Number: a.number, Name: name, Count: a.count, Failure: a.failure,
			DurationP50: Percentile(a.dur, 0.50), DurationP95: Percentile(a.dur, 0.95)})
	}
	slices.SortStableFunc(out, func(a, b StepStat) int { return cmp.Compare(a.Number, b.Number) })
	return out
}

// Percentile is the nearest-rank q-th percentile of ds in seconds, or nil
// when ds is empty. It sorts ds.
func Percentile(ds []time.Duration, q float64) *float64 {
	if len(ds) == 0 {
		return nil
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	i = max(0, min(i, len(ds)-1))
	v := ds[i].Seconds()
	return &v
}
