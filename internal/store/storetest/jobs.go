package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func testJobRoundTrip(t *testing.T, s corral.Store) {
	want := putJob(t, s, SampleJob("gh-acme", BigForgeID))
	other := putJob(t, s, corral.Job{TargetID: "gh-acme", ForgeJobID: 1, State: corral.JobPending})
	if other.ID == want.ID {
		t.Fatalf("two jobs got the same ID %d", want.ID)
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Job(ctx, want.ID)
		if err != nil {
			return err
		}
		equal(t, "Job", got, want)
		got, err = tx.JobByForgeID(ctx, "gh-acme", BigForgeID)
		if err != nil {
			return err
		}
		equal(t, "JobByForgeID", got, want)
		// A bare job keeps its zero and nil fields.
		got, err = tx.Job(ctx, other.ID)
		if err != nil {
			return err
		}
		equal(t, "bare job", got, other)
		// A brief read fills the fields JobFilter.Brief names and nothing else.
		brief, err := tx.Jobs(ctx, corral.JobFilter{TargetID: "gh-acme", Repo: want.Repo, Brief: true})
		if err != nil {
			return err
		}
		if len(brief) != 1 {
			t.Fatalf("brief read: %d jobs, want 1", len(brief))
		}
		equal(t, "brief job", brief[0], corral.Job{ID: want.ID, TargetID: want.TargetID, ForgeJobID: want.ForgeJobID,
			RunID: want.RunID, Repo: want.Repo, State: want.State, CreatedAt: want.CreatedAt, UpdatedAt: want.UpdatedAt})
		return nil
	})

	// Update every field.
	want.State, want.Conclusion, want.Reason = corral.JobCompleted, "success", ""
	want.Labels, want.Routes = []string{"x"}, nil
	want.PoolID, want.InstanceID, want.RunnerName = "arm", "inst-2", "corral-arm-2"
	want.CompletedAt = T0.Add(time.Hour)
	want.StartedAt = time.Time{}
	want.UpdatedAt = T0.Add(time.Hour + time.Microsecond)
	want.RunAttempt++
	id := want.ID
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutJob(ctx, &want) })
	if want.ID != id {
		t.Fatalf("update changed the ID from %d to %d", id, want.ID)
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Job(ctx, id)
		if err != nil {
			return err
		}
		equal(t, "updated job", got, want)
		return nil
	})
}

func testJobConflict(t *testing.T, s corral.Store) {
	putJob(t, s, SampleJob("gh-acme", BigForgeID))
	ctx := testCtx(t)
	dup := SampleJob("gh-acme", BigForgeID)
	err := s.Update(ctx, func(tx corral.Tx) error { return tx.PutJob(ctx, &dup) })
	wantErr(t, "duplicate (target, forge job id)", err, corral.ErrConflict)
	if err != nil && !strings.Contains(err.Error(), "put job") {
		t.Errorf("error %q does not name the operation", err)
	}
	// The same forge id on another target is another job.
	putJob(t, s, SampleJob("gitea-acme", BigForgeID))
}

func testJobNotFound(t *testing.T, s corral.Store) {
	ctx := testCtx(t)
	err := s.View(ctx, func(tx corral.ReadTx) error {
		_, err := tx.Job(ctx, 404)
		wantErr(t, "Job(404)", err, corral.ErrNotFound)
		_, err = tx.JobByForgeID(ctx, "gh", 404)
		wantErr(t, "JobByForgeID", err, corral.ErrNotFound)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	missing := SampleJob("gh", 1)
	missing.ID = 404
	err = s.Update(ctx, func(tx corral.Tx) error { return tx.PutJob(ctx, &missing) })
	wantErr(t, "update of a missing job", err, corral.ErrNotFound)
}

func testJobFilters(t *testing.T, s corral.Store) {
	var all []corral.Job
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		for i := 0; i < 30; i++ {
			j := corral.Job{
				TargetID:   []string{"gh", "gitea"}[i%2],
				ForgeJobID: BigForgeID + int64(i),
				State:      []corral.JobState{corral.JobQueued, corral.JobRouted, corral.JobRunning, corral.JobCompleted, corral.JobUnroutable}[i%5],
				PoolID:     []string{"", "big", "small"}[i%3],
				Repo:       []string{"o/a", "o/b", "p/a", "o/c"}[i%4],
				CreatedAt:  jobsEpoch.Add(time.Duration(i) * time.Minute),
			}
			if err := tx.PutJob(ctx, &j); err != nil {
				return err
			}
			all = append(all, j)
		}
		return nil
	})
	ids := func(js []corral.Job) []int64 {
		var out []int64
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	expect := func(f corral.JobFilter) []int64 {
		var out []int64
		for _, j := range all {
			if len(f.States) > 0 && !contains(f.States, j.State) ||
				f.TargetID != "" && j.TargetID != f.TargetID ||
				f.PoolID != "" && j.PoolID != f.PoolID ||
				f.Repo != "" && j.Repo != f.Repo ||
				!f.CreatedFrom.IsZero() && j.CreatedAt.Before(f.CreatedFrom) ||
				!f.CreatedBefore.IsZero() && !j.CreatedAt.Before(f.CreatedBefore) ||
				j.ID <= f.AfterID {
				continue
			}
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
			out = append(out, j.ID)
		}
		return out
	}
	filters := map[string]corral.JobFilter{
		"all":            {},
		"open states":    {States: []corral.JobState{corral.JobQueued, corral.JobRouted, corral.JobRunning}},
		"one state":      {States: []corral.JobState{corral.JobUnroutable}},
		"target":         {TargetID: "gitea"},
		"pool":           {PoolID: "big"},
		"combined":       {TargetID: "gh", PoolID: "small", States: []corral.JobState{corral.JobQueued, corral.JobCompleted}},
		"limit":          {Limit: 7},
		"after":          {AfterID: all[12].ID},
		"after+limit":    {AfterID: all[3].ID, Limit: 4},
		"state+limit":    {States: []corral.JobState{corral.JobRouted}, Limit: 2},
		"nothing":        {TargetID: "nope"},
		"repo":           {Repo: "o/b"},
		"created from":   {CreatedFrom: jobsEpoch.Add(20 * time.Minute)},
		"created window": {CreatedFrom: jobsEpoch.Add(5 * time.Minute), CreatedBefore: jobsEpoch.Add(12 * time.Minute), Repo: "p/a"},
		"after the last": {AfterID: all[len(all)-1].ID},
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		for name, f := range filters {
			got, err := tx.Jobs(ctx, f)
			if err != nil {
				return err
			}
			equal(t, "Jobs "+name, ids(got), expect(f))
		}
		// Paging through everything, 7 at a time.
		var paged []int64
		f := corral.JobFilter{Limit: 7}
		for {
			page, err := tx.Jobs(ctx, f)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			f.AfterID = page[len(page)-1].ID
		}
		equal(t, "paged ids", paged, ids(all))
		// Listed jobs are whole.
		got, err := tx.Jobs(ctx, corral.JobFilter{Limit: 1})
		if err != nil {
			return err
		}
		equal(t, "listed job", got, all[:1])
		return nil
	})
}

func testJobStateAsWritten(t *testing.T, s corral.Store) {
	j := SampleJob("gh", 7)
	j.State = corral.JobCompleted
	j = putJob(t, s, j)
	// completed -> queued is illegal in the domain; the store writes it anyway.
	j.State = corral.JobQueued
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutJob(ctx, &j) })
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Job(ctx, j.ID)
		if err != nil {
			return err
		}
		equal(t, "state", got.State, corral.JobQueued)
		return nil
	})
}

func testTimelineOrder(t *testing.T, s corral.Store) {
	j := putJob(t, s, SampleJob("gh", 1))
	other := putJob(t, s, SampleJob("gh", 2))
	// Added out of order; two share an instant (then insertion order wins).
	added := []corral.Event{
		{JobID: j.ID, At: T0.Add(3 * time.Second), Kind: corral.EvInstanceCreated, InstanceID: "i-1", Detail: "docker"},
		{JobID: j.ID, At: T0, Kind: corral.EvQueued},
		{JobID: other.ID, At: T0.Add(time.Second), Kind: corral.EvQueued},
		{JobID: j.ID, At: T0.Add(time.Second), Kind: corral.EvRouted, Detail: "pool big"},
		{JobID: j.ID, At: T0.Add(time.Second), Kind: corral.EvInstanceRequested, InstanceID: "i-1"},
		{JobID: j.ID, At: T0.Add(2*time.Second + time.Microsecond), Kind: corral.EvNote, Detail: "retry 1"},
	}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		for _, e := range added {
			if err := tx.AddEvent(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	want := []corral.Event{added[1], added[3], added[4], added[5], added[0]}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Timeline(ctx, j.ID)
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			t.Fatalf("timeline has %d events, want %d: %+v", len(got), len(want), got)
		}
		for i := range got {
			if got[i].ID == 0 {
				t.Errorf("event %d has no ID", i)
			}
			if i > 0 && got[i].At.Equal(got[i-1].At) && got[i].ID <= got[i-1].ID {
				t.Errorf("events %d and %d at the same instant are not in id order", i-1, i)
			}
			got[i].ID = 0
		}
		equal(t, "timeline", got, want)
		none, err := tx.Timeline(ctx, 999)
		if err != nil {
			return err
		}
		if len(none) != 0 {
			t.Errorf("timeline of an unknown job has %d events", len(none))
		}
		return nil
	})
}

func testTimelineUnknownJob(t *testing.T, s corral.Store) {
	ctx := testCtx(t)
	err := s.Update(ctx, func(tx corral.Tx) error {
		return tx.AddEvent(ctx, corral.Event{JobID: 12345, At: T0, Kind: corral.EvNote})
	})
	wantErr(t, "AddEvent for an unknown job", err, corral.ErrNotFound)
}

func contains[T comparable](list []T, x T) bool {
	for _, y := range list {
		if x == y {
			return true
		}
	}
	return false
}

// jobsEpoch is the creation time of the first listed job.
var jobsEpoch = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
