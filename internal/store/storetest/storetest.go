// Package storetest is the one conformance suite of corral.Store: every
// backend (sqlite, postgres) runs Run against a real database, so that the
// two cannot drift apart.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Run runs the suite. open must return a fresh, empty store and close it
// when t ends (t.Cleanup). replicas must return two stores on one fresh,
// empty database (two handles, as two replicas would open), both closed
// when t ends.
func Run(t *testing.T, open func(t *testing.T) corral.Store, replicas func(t *testing.T) (corral.Store, corral.Store)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s corral.Store)
	}{
		{"Config/RoundTrip", testConfigRoundTrip},
		{"Config/Replace", testConfigReplace},
		{"Providers/RoundTripReplaceDelete", testProviderDefs},
		{"Job/RoundTrip", testJobRoundTrip},
		{"Job/Conflict", testJobConflict},
		{"Job/NotFound", testJobNotFound},
		{"Job/FiltersAndPaging", testJobFilters},
		{"Job/StateAsWritten", testJobStateAsWritten},
		{"Timeline/Order", testTimelineOrder},
		{"Timeline/UnknownJob", testTimelineUnknownJob},
		{"Instance/RoundTrip", testInstanceRoundTrip},
		{"Instance/NameConflict", testInstanceNameConflict},
		{"Instance/NotFound", testInstanceNotFound},
		{"Instance/FiltersAndPaging", testInstanceFilters},
		{"Instance/StateAsWritten", testInstanceStateAsWritten},
		{"Instance/Count", testInstanceCount},
		{"Delivery/Dedup", testDeliveryDedup},
		{"Delivery/Prune", testDeliveryPrune},
		{"Lease/AcquireRenewExpireSteal", testLease},
		{"Lease/ReleaseHandsOver", testLeaseRelease},
		{"Lease/Fence", testLeaseFence},
		{"Catalog/VersionAndDelete", testCatalogVersion},
		{"Backoff/RoundTrip", testBackoffRoundTrip},
		{"PoolState/SetAndForget", testPoolStates},
		{"TargetState/PauseAndResume", testTargetStates},
		{"JobUsage/RecordAndSummarize", testJobUsage},
		{"JobRuns/RecordAndList", testJobRuns},
		{"Token/RoundTripRevokeTouch", testTokens},
		{"InstanceGrant/UseOnceReplaceSweep", testInstanceGrants},
		{"Filters/Tenant", testTenantFilters},
		{"Update/RollbackOnError", testRollbackOnError},
		{"Update/ConcurrentMixed", testConcurrentMixed},
		{"Update/Canceled", testUpdateCanceled},
		{"Update/GoOnAfterExpectedErrors", testGoOnAfterExpectedErrors},
		{"Update/ReadsOwnWrites", testReadsOwnWrites},
		{"LockLimits/ConcurrentReservations", testConcurrentReservations},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			tc.fn(t, s)
		})
	}
	twoReplicas := []struct {
		name string
		fn   func(t *testing.T, a, b corral.Store)
	}{
		{"Replicas/NoLostUpdate", testReplicasLostUpdate},
		{"Replicas/FirstInsertConflict", testReplicasFirstInsert},
		{"Replicas/FencedLeaderCannotWrite", testReplicasFence},
		{"Replicas/StaleTermRefusedCountedNowhere", testReplicasStaleTermCounted},
	}
	for _, tc := range twoReplicas {
		t.Run(tc.name, func(t *testing.T) {
			a, b := replicas(t)
			tc.fn(t, a, b)
		})
	}
}

// T0 is a fixed instant with microsecond precision, the precision every
// backend keeps.
var T0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// Big ids exceed 2^31 (real GitHub job ids do) and 2^32.
const (
	BigForgeID int64 = 1<<33 + 12345
	BigRunID   int64 = 1<<32 + 7
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func update(t testing.TB, s corral.Store, fn func(ctx context.Context, tx corral.Tx) error) {
	t.Helper()
	ctx := testCtx(t)
	if err := s.Update(ctx, func(tx corral.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t testing.TB, s corral.Store, fn func(ctx context.Context, tx corral.ReadTx) error) {
	t.Helper()
	ctx := testCtx(t)
	if err := s.View(ctx, func(tx corral.ReadTx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func equal(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

// SampleJob returns a job with every field set (ID 0: to be inserted).
func SampleJob(target string, forgeID int64) corral.Job {
	return corral.Job{
		TargetID:   target,
		TenantID:   "acme",
		ForgeJobID: forgeID,
		RunID:      BigRunID,
		RunAttempt: 2,
		Repo:       "acme/widgets",
		Name:       "build (linux)",
		Labels:     []string{"self-hosted", "corral", "4cpu8gb"},
		State:      corral.JobQueued,
		Conclusion: "",
		Routes: []corral.Route{
			{PoolID: "big", Flavor: corral.Flavor{CPU: 4, MemoryMB: 8192, DiskMB: 51200, Arch: "x64"}},
			{PoolID: "arm", Flavor: corral.Flavor{CPU: 4, MemoryMB: 8192, Arch: "arm64"}},
		},
		Reason:     "waiting for a runner",
		PoolID:     "big",
		InstanceID: "inst-1",
		RunnerName: "corral-big-1",
		CreatedAt:  T0,
		QueuedAt:   T0.Add(-time.Second),
		StartedAt:  T0.Add(time.Minute),
		UpdatedAt:  T0.Add(2 * time.Minute),
		// CompletedAt stays zero: zero must round-trip as zero.
	}
}

// SampleInstance returns an instance with every field set.
func SampleInstance(id, pool string, state corral.InstanceState) corral.Instance {
	return corral.Instance{
		ID:         id,
		Name:       "corral-" + id,
		PoolID:     pool,
		TenantID:   "acme",
		TargetID:   "gh-acme",
		State:      state,
		Labels:     []string{"self-hosted", "linux", "corral"},
		Flavor:     corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "arm64"},
		JobID:      BigForgeID,
		Provider:   "rack1",
		ProviderID: "docker-" + id,
		RunnerID:   BigRunID,
		Attempts:   3,
		LastError:  "create: quota exceeded",
		Reason:     "scale-down",
		CreatedAt:  T0,
		StartedAt:  T0.Add(time.Second),
		OnlineAt:   T0.Add(2 * time.Second),
		BusyAt:     T0.Add(3 * time.Second),
		ExpiresAt:  T0.Add(time.Hour),
		UpdatedAt:  T0.Add(4 * time.Second),
		// DrainAt, DeletedAt stay zero.
	}
}

func putJob(t testing.TB, s corral.Store, j corral.Job) corral.Job {
	t.Helper()
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutJob(ctx, &j) })
	if j.ID == 0 {
		t.Fatal("PutJob did not set the job's ID")
	}
	return j
}

func putInstances(t testing.TB, s corral.Store, ins ...corral.Instance) {
	t.Helper()
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		for i := range ins {
			if err := tx.PutInstance(ctx, &ins[i]); err != nil {
				return fmt.Errorf("instance %s: %w", ins[i].ID, err)
			}
		}
		return nil
	})
}
