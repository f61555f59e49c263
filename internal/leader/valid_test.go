package leader_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/leader"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// Fenced.Valid: a term renewed by Run stays valid while renewals come;
// once they stop (the replica paused past its lease, simulated here by
// stopping Run's renewals while keeping the term set), Valid refuses
// without asking the store, within the lease.
func TestFenced_ValidLapsesWithoutRenewal(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := leader.NewFenced(st, "leader")
	if err := f.Valid(); !errors.Is(err, corral.ErrFenced) {
		t.Fatalf("Valid with no term: %v, want ErrFenced", err)
	}
	const ttl = 600 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	leading := make(chan int64, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		leader.Run(ctx, leader.Config{Store: st, Name: "leader", Holder: "a", TTL: ttl, Fence: f},
			func(ctx context.Context, term leader.Term) {
				f.Set(term.Token)
				leading <- term.Token
				<-ctx.Done()
			})
	}()
	tok := <-leading
	// Renewals every ttl/3 keep the term valid well past one lease.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if err := f.Valid(); err != nil {
			t.Fatalf("Valid while Run renews the lease: %v", err)
		}
	}
	// Renewals stop; the term is still set, as in a replica whose renewal
	// loop has not run since it was resumed.
	cancel()
	<-done
	f.Set(tok)
	stopped := time.Now()
	for f.Valid() == nil {
		if time.Since(stopped) > ttl {
			t.Fatalf("Valid still nil %s after the last renewal could have been sent (lease %s)", time.Since(stopped), ttl)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := f.Valid(); !errors.Is(err, corral.ErrFenced) {
		t.Fatalf("Valid after renewals stopped: %v, want ErrFenced", err)
	}
}
