package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

var errCommitFailed = errors.New("injected: the commit failed after every write")

// failingStore is a real store whose next transaction that inserts a job
// fails at its very end, when armed: after all its writes, the leader's
// fence check included (the fenced store wraps this one). It also records,
// per committed transaction, the jobs it inserted and the jobs whose
// instances it wrote.
type failingStore struct {
	corral.Store
	armed atomic.Bool

	mu        sync.Mutex
	committed []txWrites
}

type txWrites struct {
	jobs      []int64 // forge job ids inserted
	instances []int64 // job ids of the instances written
}

type recordingTx struct {
	corral.Tx
	w *txWrites
}

func (t recordingTx) PutJob(ctx context.Context, j *corral.Job) error {
	insert := j.ID == 0
	if err := t.Tx.PutJob(ctx, j); err != nil {
		return err
	}
	if insert {
		t.w.jobs = append(t.w.jobs, j.ForgeJobID)
	}
	return nil
}

func (t recordingTx) PutInstance(ctx context.Context, in *corral.Instance) error {
	if err := t.Tx.PutInstance(ctx, in); err != nil {
		return err
	}
	if in.JobID != 0 {
		t.w.instances = append(t.w.instances, in.JobID)
	}
	return nil
}

func (s *failingStore) Update(ctx context.Context, fn func(corral.Tx) error) error {
	var w txWrites
	err := s.Store.Update(ctx, func(tx corral.Tx) error {
		w = txWrites{}
		if err := fn(recordingTx{Tx: tx, w: &w}); err != nil {
			return err
		}
		if len(w.jobs) > 0 && s.armed.CompareAndSwap(true, false) {
			return errCommitFailed
		}
		return nil
	})
	if err == nil {
		s.mu.Lock()
		s.committed = append(s.committed, w)
		s.mu.Unlock()
	}
	return err
}

// insertedWith returns the job ids of the instances written in the
// committed transaction that inserted forge job id, and whether one did.
func (s *failingStore) insertedWith(forgeID int64) ([]int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.committed {
		for _, id := range w.jobs {
			if id == forgeID {
				return w.instances, true
			}
		}
	}
	return nil, false
}

// The leader's webhook path commits the job, its delivery id and its
// instance's reservation in one transaction, and answers 202 only after
// that commit: when the commit fails at its very end, the forge gets no
// 202, nothing of the delivery is kept (no job, no instance, no delivery
// id: a redelivery is taken as new), and after reopening the store a job
// exists exactly for the deliveries answered 202, each reserved in the
// commit that recorded it.
func TestWebhook_MergedCommitNever202Undurable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	base, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := &failingStore{Store: base}
	forge, prov := fake.NewForge(), fake.NewProvider()
	forge.AssumeOpen = true
	var created sync.Map // job label -> true
	prov.OnCreate = func(s corral.InstanceSpec) {
		for _, l := range s.Labels {
			if strings.HasPrefix(l, "job-") {
				created.Store(l, true)
			}
		}
	}
	a, err := app.New(app.Options{Store: st, Forges: forge, Providers: map[string]corral.Provider{"noop": prov},
		Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}, MaxInstances: 100}},
		ControllerID: "test", SchedulerInterval: time.Hour, ReconcileInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			base.Close()
		}
	}
	defer stop()
	waitUntil(t, "the lead", a.Leading)

	h := a.Handler()
	post := func(forgeID int64, delivery string) int {
		body := jobPayload(forgeID, "queued", "")
		req := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
		req.Header = fake.Header("workflow_job", delivery, github.Sign(secret, body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	const n = 30
	accepted := map[int64]bool{}
	for i := int64(1); i <= n; i++ {
		fail := i%3 == 0
		st.armed.Store(fail)
		code := post(i, fmt.Sprint("d-", i))
		if fail && code == 202 {
			t.Fatalf("job %d: 202 for a delivery whose commit failed", i)
		}
		if !fail && code != 202 {
			t.Fatalf("job %d: %d, want 202", i, code)
		}
		if st.armed.Load() {
			t.Fatalf("job %d: the failure armed was never reached (no job inserted)", i)
		}
		if code == 202 {
			accepted[i] = true
			// One commit held the job and its reservation.
			ins, ok := st.insertedWith(i)
			if !ok || len(ins) != 1 {
				t.Fatalf("job %d: the commit that recorded it wrote %d instances (found %v), want its reservation", i, len(ins), ok)
			}
		}
	}
	// Every reserved instance is created (the claim reached the scheduler).
	waitUntil(t, "every accepted job's instance created", func() bool {
		for id := range accepted {
			if _, ok := created.Load(fmt.Sprint("job-", id)); !ok {
				return false
			}
		}
		return true
	})
	for i := int64(1); i <= n; i++ {
		if _, ok := created.Load(fmt.Sprint("job-", i)); ok != accepted[i] {
			t.Errorf("job %d: created %v, accepted %v", i, ok, accepted[i])
		}
	}
	stop()

	// Reopened: what is on disk is what was answered.
	re, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	err = re.View(ctx, func(tx corral.ReadTx) error {
		for i := int64(1); i <= n; i++ {
			j, err := tx.JobByForgeID(ctx, "acme", i)
			if exists := err == nil; exists != accepted[i] {
				t.Errorf("job %d: stored %v (err %v), answered 202 %v", i, exists, err, accepted[i])
				continue
			}
			if err != nil {
				continue
			}
			ins, err := tx.Instances(ctx, corral.InstanceFilter{JobID: j.ID})
			if err != nil {
				return err
			}
			if len(ins) != 1 {
				t.Errorf("job %d: %d instances, want 1", i, len(ins))
			}
		}
		all, err := tx.Instances(ctx, corral.InstanceFilter{})
		if err != nil {
			return err
		}
		if len(all) != len(accepted) {
			t.Errorf("%d instances stored, want %d (one per accepted job, none for the failed ones)", len(all), len(accepted))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The failed deliveries' ids were not kept: a redelivery is new.
	errProbe := errors.New("probe: roll back")
	for i := int64(1); i <= n; i++ {
		var fresh bool
		err := re.Update(ctx, func(tx corral.Tx) error {
			var err error
			fresh, err = tx.InsertDelivery(ctx, "acme", fmt.Sprint("d-", i), time.Now())
			if err != nil {
				return err
			}
			return errProbe
		})
		if !errors.Is(err, errProbe) {
			t.Fatal(err)
		}
		if fresh == accepted[i] {
			t.Errorf("delivery d-%d: new to the store %v, but answered 202 %v", i, fresh, accepted[i])
		}
	}
}
