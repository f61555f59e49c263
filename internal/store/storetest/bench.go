package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// BenchIngest measures the webhook-ingest transaction: InsertDelivery +
// JobByForgeID + PutJob + AddEvent in one Update, from b.RunParallel
// goroutines (16 per GOMAXPROCS: a webhook server has many requests in
// flight, which is what group commit feeds on). It reports ops/s.
func BenchIngest(b *testing.B, s corral.Store) {
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			err := s.Update(ctx, func(tx corral.Tx) error {
				fresh, err := tx.InsertDelivery(ctx, "gh", fmt.Sprintf("d-%d", n), T0)
				if err != nil || !fresh {
					return err
				}
				j, err := tx.JobByForgeID(ctx, "gh", BigForgeID+n)
				switch {
				case err == nil:
				case errors.Is(err, corral.ErrNotFound):
					j = SampleJob("gh", BigForgeID+n)
				default:
					return err
				}
				if err := tx.PutJob(ctx, &j); err != nil {
					return err
				}
				return tx.AddEvent(ctx, corral.Event{JobID: j.ID, At: T0, Kind: corral.EvQueued})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

// BenchListInstances measures listing n live instances (the reconciler's
// query) among as many deleted ones.
func BenchListInstances(b *testing.B, s corral.Store, n int) {
	ctx := context.Background()
	for base := 0; base < 2*n; base += 1000 {
		err := s.Update(ctx, func(tx corral.Tx) error {
			for i := base; i < base+1000 && i < 2*n; i++ {
				in := SampleInstance(fmt.Sprintf("i-%06d", i), fmt.Sprintf("pool-%d", i%10), corral.LiveInstanceStates[i%5])
				if i%2 == 1 {
					in.State = corral.InstDeleted
				}
				if err := tx.PutInstance(ctx, &in); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := s.View(ctx, func(tx corral.ReadTx) error {
			got, err := tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
			if err == nil && len(got) != n {
				err = fmt.Errorf("listed %d live instances, want %d", len(got), n)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchReadModifyWrite measures the core's read-modify-write of an
// existing row: Instance + PutInstance in one Update, from b.RunParallel
// goroutines (16 per GOMAXPROCS) spread over 64 instances, so that some
// contend for a row. It reports ops/s.
func BenchReadModifyWrite(b *testing.B, s corral.Store) {
	ctx := context.Background()
	const rows = 64
	err := s.Update(ctx, func(tx corral.Tx) error {
		for i := 0; i < rows; i++ {
			in := SampleInstance(fmt.Sprintf("i-%02d", i), "big", corral.InstIdle)
			if err := tx.PutInstance(ctx, &in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("i-%02d", seq.Add(1)%rows)
			err := s.Update(ctx, func(tx corral.Tx) error {
				in, err := tx.Instance(ctx, id)
				if err != nil {
					return err
				}
				in.Attempts++
				return tx.PutInstance(ctx, &in)
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}
