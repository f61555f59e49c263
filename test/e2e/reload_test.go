package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// TestReload changes a pool's max_instances and labels in a running
// `corral serve` (SIGHUP) while jobs flow: from the reload on, the pool
// never holds more live instances than the new limit once it got down to
// it, a job lacking the new label is refused with that reason, no job is
// lost, and the process never restarts.
func TestReload(t *testing.T) {
	const jobs, before, after = 40, 6, 2
	f := newForge(t, sim.Options{Seed: 11})
	listen := freePort(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	f.AddTarget("e2e", "http://"+listen+"/webhooks/e2e", f.secret)
	cfg := writeConfig(t, setup{Listen: listen, DataDir: dataDir, ForgeURL: f.URL, PoolMax: before})
	p := startCorral(t, cfg, f, listen)
	pid := p.cmd.Process.Pid

	for i := 0; i < jobs; i++ {
		f.QueueJob("e2e", sim.JobSpec{Name: fmt.Sprint("job-", i), Labels: []string{"corral", "batch", fmt.Sprint("run-", i)},
			Duration: 400 * time.Millisecond})
	}
	waitFor(t, 60*time.Second, "the pool to fill up to its first limit", func() bool { return f.Stats().PeakRunners >= before })

	// Rewrite the file: max 2, and pool labels [corral, batch].
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), fmt.Sprintf("max_instances: %d", before), fmt.Sprintf("max_instances: %d", after), 1)
	edited = strings.Replace(edited, "labels: [corral]", "labels: [corral, batch]", 1)
	if edited == string(b) {
		t.Fatal("config edit changed nothing")
	}
	if err := os.WriteFile(cfg, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload in the log", func() bool {
		l, _ := os.ReadFile(p.log)
		return strings.Contains(string(l), "catalog changed")
	})

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
	f.QueueJob("e2e", sim.JobSpec{Name: "unlabelled", Labels: []string{"corral", "run-x"}, Duration: time.Millisecond})
	waitFor(t, 180*time.Second, "every labelled job completed", func() bool { return f.Stats().JobsCompleted >= jobs })
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
	case <-p.done:
		t.Fatal("corral exited")
	default:
	}
	if p.cmd.Process.Pid != pid {
		t.Fatal("corral restarted")
	}
	l, _ := os.ReadFile(p.log)
	if n := strings.Count(string(l), "corral serving"); n != 1 {
		t.Errorf("corral started %d times, want once (a reload restarts nothing)", n)
	}
	p.stop(t)
	t.Logf("%d jobs; limit %d -> %d by SIGHUP; peak at the forge %d", jobs, before, after, f.Stats().PeakRunners)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
