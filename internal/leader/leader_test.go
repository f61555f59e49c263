package leader_test

import (
	"errors"

	"context"
	"github.com/corral-ci/corral/internal/corral"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/leader"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// Two replicas on one store: one leads at a time; when the leader stops,
// the other takes over once the lease expires.
func TestRun_FailOver(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var leaders, maxLeaders atomic.Int32
	led := map[string]*atomic.Bool{"a": {}, "b": {}}
	lead := func(name string) func(context.Context, leader.Term) {
		return func(ctx context.Context, _ leader.Term) {
			n := leaders.Add(1)
			for {
				m := maxLeaders.Load()
				if n <= m || maxLeaders.CompareAndSwap(m, n) {
					break
				}
			}
			led[name].Store(true)
			<-ctx.Done()
			leaders.Add(-1)
		}
	}
	const ttl = 3 * time.Second // renewals every second: room for a loaded machine
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		leader.Run(ctxA, leader.Config{Store: st, Name: "leader", Holder: "a", TTL: ttl}, lead("a"))
	}()
	time.Sleep(100 * time.Millisecond)
	go func() {
		defer wg.Done()
		leader.Run(ctxB, leader.Config{Store: st, Name: "leader", Holder: "b", TTL: ttl}, lead("b"))
	}()
	waitUntil(t, func() bool { return led["a"].Load() })
	time.Sleep(2 * ttl)
	if led["b"].Load() {
		t.Fatal("b led while a held the lease")
	}
	stopA()
	// a stops cleanly: it releases the lease and b leads at once, well
	// before a's lease would have expired.
	released := time.Now()
	waitUntil(t, func() bool { return led["b"].Load() })
	if took := time.Since(released); took > ttl {
		t.Errorf("b took over %v after a stopped cleanly, want < ttl %v (a released its lease)", took, ttl)
	}
	stopB()
	wg.Wait()
	if m := maxLeaders.Load(); m != 1 {
		t.Fatalf("%d replicas led at once", m)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A leader paused past its lease (here: its store handle keeps its old
// term) cannot write once another replica took the lease, even though it
// has not noticed yet.
func TestFenced_PausedLeaderCannotWrite(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	take := func(holder string, ttl time.Duration) corral.Lease {
		var l corral.Lease
		if err := st.Update(ctx, func(tx corral.Tx) error {
			var err error
			l, _, err = tx.AcquireLease(ctx, "leader", holder, time.Now(), ttl)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	write := func(f *leader.Fenced) error {
		return f.Update(ctx, func(tx corral.Tx) error { return tx.PutTenant(ctx, corral.Tenant{ID: "x"}) })
	}
	old := leader.NewFenced(st, "leader")
	if err := write(old); !errors.Is(err, corral.ErrFenced) {
		t.Fatalf("write with no term: %v, want ErrFenced", err)
	}
	la := take("a", 50*time.Millisecond)
	old.Set(la.Token)
	if err := write(old); err != nil {
		t.Fatalf("write in a's term: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // a is paused past its lease
	lb := take("b", time.Minute)
	if lb.Holder != "b" || lb.Token == la.Token {
		t.Fatalf("b did not take the expired lease: %+v", lb)
	}
	if err := write(old); !errors.Is(err, corral.ErrFenced) {
		t.Fatalf("a wrote after b took the lease: %v, want ErrFenced", err)
	}
	nb := leader.NewFenced(st, "leader")
	nb.Set(lb.Token)
	if err := write(nb); err != nil {
		t.Fatalf("write in b's term: %v", err)
	}
}
