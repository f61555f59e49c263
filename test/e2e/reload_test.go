package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestReload changes a pool's max_instances and labels in a running
// `corral serve` (SIGHUP) while jobs flow: from the reload on, the pool
// never holds more live instances than the new limit once it got down to
// it, a job lacking the new label is refused with that reason, no job is
// lost, and the process never restarts.
func TestReload(t *testing.T) {
	const jobs, before, after = 40, 6, 2
	r := newRig(t, standin.Options{Seed: 11}, setup{PoolMax: before})
	cfg := e2etest.WriteConfig(t, r.cfg)
	p := e2etest.Start(t, e2etest.Serve{Bin: corralBin, Config: cfg, Listen: r.listen, Env: r.Env()})
	pid := p.Pid()
	dataDir, listen := r.dataDir, r.listen

	for i := 0; i < jobs; i++ {
		r.queue(i, []string{"corral", "batch", fmt.Sprint("run-", i)}, time.Second)
	}
	// Jobs flow above the limit to come before it changes.
	waitFor(t, 120*time.Second, "more runners than the new limit", func() bool { return r.Stats().PeakRunners > after+1 })

	// Rewrite the file: max 2, and pool labels [corral, batch].
	edit := r.cfg
	edit.Pools = append([]e2etest.Pool(nil), r.cfg.Pools...)
	edit.Pools[0].MaxInstances = after
	edit.Pools[0].Labels = []string{"corral", "batch"}
	b, err := os.ReadFile(e2etest.WriteConfig(t, edit))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload in the log", func() bool { return strings.Contains(p.Output(), "catalog changed") })

	// Watch the store: once the pool is down to the new limit, it must
	// stay within it (the next reservation obeys the new max).
	st, err := sqlite.Open(context.Background(), filepath.Join(dataDir, "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var reached atomic.Bool
	var overAfter atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ctx.Err() == nil {
			_ = st.View(ctx, func(tx corral.ReadTx) error {
				n, err := tx.CountInstances(ctx, corral.CountFilter{PoolID: "linux"})
				if err != nil {
					return err
				}
				if n <= after {
					reached.Store(true)
				} else if reached.Load() && int64(n) > overAfter.Load() {
					overAfter.Store(int64(n))
				}
				return nil
			})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// A job without the new label is refused with the reason.
	r.Queue("unlabelled", []string{"corral", "run-x"}, time.Millisecond)
	waitFor(t, 180*time.Second, "every labelled job completed", func() bool { return r.Count(standin.StatusCompleted) >= jobs })
	cancel()
	<-watched
	if !reached.Load() {
		t.Error("the pool never got down to the new limit")
	}
	if n := overAfter.Load(); n > 0 {
		t.Errorf("after reaching the new limit %d the pool held %d live instances", after, n)
	}
	code, body := httpGet(t, "http://"+listen+"/api/v1/jobs?state=unroutable")
	if code != 200 || !strings.Contains(body, `lacks pool label \"batch\"`) {
		t.Errorf("unlabelled job after the reload: %d %s", code, body)
	}
	select {
	case <-p.Done():
		t.Fatal("corral exited")
	default:
	}
	if p.Pid() != pid {
		t.Fatal("corral restarted")
	}
	if n := strings.Count(p.Output(), "corral serving"); n != 1 {
		t.Errorf("corral started %d times, want once (a reload restarts nothing)", n)
	}
	waitFor(t, 60*time.Second, "every registration removed and every runner process gone", func() bool {
		return r.Stats().Registered == 0 && len(runnerProcesses(dataDir)) == 0
	})
	p.Stop(t)
	t.Logf("%d jobs; limit %d -> %d by SIGHUP; peak at the forge %d", jobs, before, after, r.Stats().PeakRunners)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := e2etest.APIGet(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
