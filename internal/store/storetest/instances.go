package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func testInstanceRoundTrip(t *testing.T, s corral.Store) {
	want := SampleInstance("i-1", "big", corral.InstBusy)
	bare := corral.Instance{ID: "i-0", State: corral.InstPending}
	putInstances(t, s, want, bare)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Instance(ctx, "i-1")
		if err != nil {
			return err
		}
		equal(t, "Instance", got, want)
		got, err = tx.InstanceByName(ctx, want.Name)
		if err != nil {
			return err
		}
		equal(t, "InstanceByName", got, want)
		got, err = tx.Instance(ctx, "i-0")
		if err != nil {
			return err
		}
		equal(t, "bare instance", got, bare)
		// A brief read fills the fields InstanceFilter.Brief names and nothing else.
		brief, err := tx.Instances(ctx, corral.InstanceFilter{States: []corral.InstanceState{corral.InstBusy}, Brief: true})
		if err != nil {
			return err
		}
		if len(brief) != 1 {
			t.Fatalf("brief read: %d instances, want 1", len(brief))
		}
		equal(t, "brief instance", brief[0], corral.Instance{ID: want.ID, Name: want.Name, PoolID: want.PoolID,
			TenantID: want.TenantID, TargetID: want.TargetID, State: want.State, JobID: want.JobID, Provider: want.Provider,
			ProviderID: want.ProviderID, RunnerID: want.RunnerID, CreatedAt: want.CreatedAt, StartedAt: want.StartedAt,
			OnlineAt: want.OnlineAt, BusyAt: want.BusyAt, DrainAt: want.DrainAt, ExpiresAt: want.ExpiresAt, UpdatedAt: want.UpdatedAt})
		return nil
	})
	// Upsert by ID replaces every field.
	want.State, want.Reason = corral.InstDraining, "job done"
	want.Name = "renamed"
	want.Labels, want.Flavor = nil, corral.Flavor{}
	want.JobID, want.RunnerID = 0, 0
	want.DrainAt, want.BusyAt = T0.Add(time.Hour), time.Time{}
	putInstances(t, s, want)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Instance(ctx, "i-1")
		if err != nil {
			return err
		}
		equal(t, "updated instance", got, want)
		_, err = tx.InstanceByName(ctx, "corral-i-1")
		wantErr(t, "old name", err, corral.ErrNotFound)
		return nil
	})
}

func testInstanceNameConflict(t *testing.T, s corral.Store) {
	putInstances(t, s, SampleInstance("i-1", "big", corral.InstIdle))
	ctx := testCtx(t)
	dup := SampleInstance("i-2", "big", corral.InstPending)
	dup.Name = "corral-i-1"
	err := s.Update(ctx, func(tx corral.Tx) error { return tx.PutInstance(ctx, &dup) })
	wantErr(t, "second instance with the same name", err, corral.ErrConflict)
	if err != nil && !strings.Contains(err.Error(), "put instance") {
		t.Errorf("error %q does not name the operation", err)
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		_, err := tx.Instance(ctx, "i-2")
		wantErr(t, "conflicting instance", err, corral.ErrNotFound)
		return nil
	})
	// Instances without a name yet do not conflict with each other.
	putInstances(t, s, corral.Instance{ID: "n-1", State: corral.InstPending}, corral.Instance{ID: "n-2", State: corral.InstPending})
}

func testInstanceNotFound(t *testing.T, s corral.Store) {
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		_, err := tx.Instance(ctx, "nope")
		wantErr(t, "Instance", err, corral.ErrNotFound)
		_, err = tx.InstanceByName(ctx, "nope")
		wantErr(t, "InstanceByName", err, corral.ErrNotFound)
		_, err = tx.InstanceByName(ctx, "")
		wantErr(t, "InstanceByName(\"\")", err, corral.ErrNotFound)
		return nil
	})
}

func testInstanceFilters(t *testing.T, s corral.Store) {
	var all []corral.Instance
	for i := 0; i < 40; i++ {
		in := corral.Instance{
			ID:     fmt.Sprintf("i-%03d", i),
			Name:   fmt.Sprintf("r-%03d", i),
			PoolID: []string{"big", "small", "arm"}[i%3],
			State:  corral.InstanceStates[i%len(corral.InstanceStates)],
			JobID:  int64(i % 4),
		}
		all = append(all, in)
	}
	// Inserted in a shuffled order: listings are ordered by id.
	shuffled := make([]corral.Instance, 0, len(all))
	for i := range all {
		shuffled = append(shuffled, all[(i*7)%len(all)])
	}
	putInstances(t, s, shuffled...)
	ids := func(ins []corral.Instance) []string {
		var out []string
		for _, in := range ins {
			out = append(out, in.ID)
		}
		return out
	}
	expect := func(f corral.InstanceFilter) []string {
		var out []string
		for _, in := range all {
			if len(f.States) > 0 && !contains(f.States, in.State) ||
				f.PoolID != "" && in.PoolID != f.PoolID ||
				f.JobID != 0 && in.JobID != f.JobID ||
				in.ID <= f.AfterID {
				continue
			}
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
			out = append(out, in.ID)
		}
		return out
	}
	filters := map[string]corral.InstanceFilter{
		"all":         {},
		"live":        {States: corral.LiveInstanceStates},
		"idle":        {States: []corral.InstanceState{corral.InstIdle}},
		"pool":        {PoolID: "small"},
		"job":         {JobID: 3},
		"combined":    {PoolID: "big", States: []corral.InstanceState{corral.InstPending, corral.InstBusy}, JobID: 2},
		"limit":       {Limit: 5},
		"after":       {AfterID: "i-017"},
		"after+limit": {AfterID: "i-005", Limit: 3, States: corral.LiveInstanceStates},
		"nothing":     {PoolID: "nope"},
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		for name, f := range filters {
			got, err := tx.Instances(ctx, f)
			if err != nil {
				return err
			}
			equal(t, "Instances "+name, ids(got), expect(f))
		}
		var paged []string
		f := corral.InstanceFilter{Limit: 6}
		for {
			page, err := tx.Instances(ctx, f)
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
		got, err := tx.Instances(ctx, corral.InstanceFilter{Limit: 1})
		if err != nil {
			return err
		}
		equal(t, "listed instance", got, all[:1])
		return nil
	})
}

func testInstanceStateAsWritten(t *testing.T, s corral.Store) {
	in := SampleInstance("i-1", "big", corral.InstDeleted)
	putInstances(t, s, in)
	// deleted -> busy is illegal in the domain; the store writes it anyway.
	in.State = corral.InstBusy
	putInstances(t, s, in)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Instance(ctx, "i-1")
		if err != nil {
			return err
		}
		equal(t, "state", got.State, corral.InstBusy)
		return nil
	})
}

func testInstanceCount(t *testing.T, s corral.Store) {
	var ins []corral.Instance
	add := func(tenant, pool string, state corral.InstanceState) {
		id := fmt.Sprintf("i-%d", len(ins))
		ins = append(ins, corral.Instance{ID: id, Name: id, TenantID: tenant, PoolID: pool, State: state})
	}
	for _, st := range corral.InstanceStates { // 5 live + 1 deleted
		add("acme", "big", st)
	}
	add("acme", "small", corral.InstIdle)
	add("acme", "small", corral.InstDeleted)
	add("zeta", "z", corral.InstBusy)
	add("zeta", "z", corral.InstDeleted)
	add("zeta", "z", corral.InstDeleted)
	putInstances(t, s, ins...)
	cases := []struct {
		f    corral.CountFilter
		want int
	}{
		{corral.CountFilter{}, 7},
		{corral.CountFilter{PoolID: "big"}, 5},
		{corral.CountFilter{PoolID: "small"}, 1},
		{corral.CountFilter{TenantID: "acme"}, 6},
		{corral.CountFilter{TenantID: "zeta"}, 1},
		{corral.CountFilter{TenantID: "acme", PoolID: "small"}, 1},
		{corral.CountFilter{TenantID: "zeta", PoolID: "big"}, 0},
		{corral.CountFilter{PoolID: "none"}, 0},
	}
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		for _, c := range cases {
			n, err := tx.CountInstances(ctx, c.f)
			if err != nil {
				return err
			}
			if n != c.want {
				t.Errorf("CountInstances(%+v) = %d, want %d", c.f, n, c.want)
			}
		}
		// By pool and state, live only, in pool and state order.
		got, err := tx.InstanceCounts(ctx)
		if err != nil {
			return err
		}
		c := func(pool string, st corral.InstanceState) corral.InstanceCount {
			return corral.InstanceCount{PoolID: pool, State: st, N: 1}
		}
		want := []corral.InstanceCount{c("big", corral.InstBusy), c("big", corral.InstDraining), c("big", corral.InstIdle),
			c("big", corral.InstPending), c("big", corral.InstStarting), c("small", corral.InstIdle), c("z", corral.InstBusy)}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("InstanceCounts = %v, want %v", got, want)
		}
		return nil
	})
}
