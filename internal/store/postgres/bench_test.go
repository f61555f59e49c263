package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/leader"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/store/storetest"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

// go test -run '^$' -bench . -benchtime 3s ./internal/store/postgres/
func BenchmarkStore_Ingest(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.DSN(b), postgres.Options{MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchIngest(b, s)
}

func BenchmarkStore_ReadModifyWrite(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.DSN(b), postgres.Options{MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchReadModifyWrite(b, s)
}

func BenchmarkStore_ListInstances10k(b *testing.B) {
	storetest.BenchListInstances(b, open(b), 10000)
}

// BenchmarkFencedWrite is the cost of fencing and counting a leader's
// writes: 8 parallel writers each update an instance of their own, either
// straight (unfenced) or through leader.Fenced (the write, then the term
// check with the lease row FOR SHARE and the count in the server process's
// row of lease_term_writes). On a server with fsync on (durable), as in
// production:
//
//	go test -run '^$' -bench BenchmarkFencedWrite -benchtime 3s ./internal/store/postgres/
func BenchmarkFencedWrite(b *testing.B) {
	dir, err := os.MkdirTemp("", "corral-bench-pg-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv, err := pgtest.StartDurableServer(dir)
	if errors.Is(err, pgtest.ErrNoPostgres) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Stop() }) // after the database's drop
	s := openDSN(b, pgtest.DSNOn(b, srv))
	ctx := context.Background()
	var l corral.Lease
	if err := s.Update(ctx, func(tx corral.Tx) error {
		var err error
		l, _, err = tx.AcquireLease(ctx, "leader", "bench", time.Time{}, time.Hour)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	const writers = 8
	for w := range writers {
		in := storetest.SampleInstance(fmt.Sprint("i-", w), "big", corral.InstIdle)
		if err := s.Update(ctx, func(tx corral.Tx) error { return tx.PutInstance(ctx, &in) }); err != nil {
			b.Fatal(err)
		}
	}
	f := leader.NewFenced(s, "leader")
	f.Set(l.Token)
	for _, c := range []struct {
		name string
		st   corral.Store
	}{{"unfenced", s}, {"fenced", f}} {
		b.Run(c.name, func(b *testing.B) {
			var next atomic.Int64
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprint("i-", next.Add(1)%writers)
				for pb.Next() {
					err := c.st.Update(ctx, func(tx corral.Tx) error {
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
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
