package leader_test

import (
	"context"
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
	lead := func(name string) func(context.Context) {
		return func(ctx context.Context) {
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
	waitUntil(t, func() bool { return led["b"].Load() })
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
