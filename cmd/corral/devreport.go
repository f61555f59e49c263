package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// reporter prints each job's path through corral once it is done (or
// refused), and a running summary.
type reporter struct {
	store   corral.Store
	out     io.Writer
	printed map[int64]bool
	waits   []time.Duration // queued -> running
	done    int
}

func newReporter(s corral.Store, out io.Writer) *reporter {
	return &reporter{store: s, out: out, printed: map[int64]bool{}}
}

// poll prints what finished since the last call and returns how many jobs
// are still open.
func (r *reporter) poll(ctx context.Context) int {
	var jobs []corral.Job
	timelines := map[int64][]corral.Event{}
	open := 0
	_ = r.store.View(ctx, func(tx corral.ReadTx) error {
		all, err := tx.Jobs(ctx, corral.JobFilter{})
		if err != nil {
			return err
		}
		for _, j := range all {
			if j.State.Open() && j.State != corral.JobUnroutable {
				open++
			}
			if r.printed[j.ID] || (j.State != corral.JobCompleted && j.State != corral.JobUnroutable) {
				continue
			}
			tl, err := tx.Timeline(ctx, j.ID)
			if err != nil {
				return err
			}
			timelines[j.ID] = tl
			jobs = append(jobs, j)
		}
		return nil
	})
	sort.Slice(jobs, func(i, k int) bool { return jobs[i].ID < jobs[k].ID })
	for _, j := range jobs {
		r.printed[j.ID] = true
		fmt.Fprintln(r.out, r.line(j, timelines[j.ID]))
	}
	return open
}

func (r *reporter) line(j corral.Job, tl []corral.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %-4d [%s] ", j.ForgeJobID, strings.Join(j.Labels, " "))
	if j.State == corral.JobUnroutable {
		fmt.Fprintf(&b, "refused: %s", j.Reason)
		return b.String()
	}
	t0 := j.CreatedAt
	seen := map[corral.EventKind]bool{}
	for _, e := range tl {
		if seen[e.Kind] && e.Kind != corral.EvNote {
			continue
		}
		seen[e.Kind] = true
		d := e.At.Sub(t0)
		switch e.Kind {
		case corral.EvQueued:
			fmt.Fprintf(&b, "queued (%s)", e.Detail)
		case corral.EvRouted:
			fmt.Fprintf(&b, " > routed %s +%s", firstPool(e.Detail), short(d))
		case corral.EvInstanceRequested:
			fmt.Fprintf(&b, " > instance requested +%s", short(d))
		case corral.EvInstanceCreated:
			fmt.Fprintf(&b, " > created +%s", short(d))
		case corral.EvJobStarted:
			fmt.Fprintf(&b, " > running +%s", short(d))
			r.waits = append(r.waits, d)
		case corral.EvJobCompleted:
			fmt.Fprintf(&b, " > done +%s %s", short(d), e.Detail)
		}
	}
	if j.PoolID != "" {
		fmt.Fprintf(&b, " (pool %s, runner %s)", j.PoolID, j.RunnerName)
	}
	r.done++
	return b.String()
}

func firstPool(detail string) string {
	if i := strings.Index(detail, ","); i > 0 {
		return detail[:i] + " +fallbacks"
	}
	return detail
}

func short(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

func (r *reporter) summary(ctx context.Context) {
	counts := map[corral.JobState]int{}
	inst := map[corral.InstanceState]int{}
	_ = r.store.View(ctx, func(tx corral.ReadTx) error {
		jobs, err := tx.Jobs(ctx, corral.JobFilter{})
		if err != nil {
			return err
		}
		for _, j := range jobs {
			counts[j.State]++
		}
		ins, err := tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
		if err != nil {
			return err
		}
		for _, in := range ins {
			inst[in.State]++
		}
		return nil
	})
	p50, p95 := pct(r.waits, 50), pct(r.waits, 95)
	fmt.Fprintf(r.out, "-- %d done, %d running, %d waiting, %d refused | instances: %d starting, %d idle, %d busy, %d deleting | queued->running p50 %s p95 %s\n",
		counts[corral.JobCompleted], counts[corral.JobRunning], counts[corral.JobRouted]+counts[corral.JobQueued]+counts[corral.JobPending],
		counts[corral.JobUnroutable], inst[corral.InstPending]+inst[corral.InstStarting], inst[corral.InstIdle], inst[corral.InstBusy],
		inst[corral.InstDraining], short(p50), short(p95))
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}
