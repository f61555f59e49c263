package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// BenchmarkServeRSS measures the resident memory of a real `corral serve`
// tracking 10,000 and 100,000 live instances through several reconcile
// passes. The instances are real process-provider records (state files)
// that all point at one long-lived process, so the provider lists them all
// running without as many processes on the machine. Run it with
// -benchtime=1x.
func BenchmarkServeRSS(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				rss, hwm := serveRSS(b, n)
				b.ReportMetric(rss, "RSS-MB")
				b.ReportMetric(hwm, "peak-RSS-MB")
			}
		})
	}
}

func serveRSS(b *testing.B, n int) (rss, hwm float64) {
	b.Helper()
	ctx := context.Background()
	dataDir := filepath.Join(b.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dataDir, "instances"), 0o700); err != nil {
		b.Fatal(err)
	}
	sleep := exec.Command("sleep", "600")
	if err := sleep.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
	ticks := startTicks(b, sleep.Process.Pid)

	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "corral.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	err = st.Update(ctx, func(tx corral.Tx) error {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("rss%07d", i)
			in := corral.Instance{ID: id, Name: "corral-e2e-" + id, PoolID: "linux", TenantID: "default", TargetID: "e2e",
				State: corral.InstBusy, Labels: []string{"self-hosted", "corral", "run-" + id}, ProviderID: id,
				CreatedAt: now, StartedAt: now, BusyAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := tx.PutInstance(ctx, &in); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		b.Fatal(err)
	}
	// The process provider's state file, version 1 (see
	// internal/provider/process/state.go).
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("rss%07d", i)
		dir := filepath.Join(dataDir, "instances", id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		rec, _ := json.Marshal(map[string]any{"version": 1, "instance_id": id, "name": "corral-e2e-" + id, "pool_id": "linux",
			"controller_id": "e2e", "pid": sleep.Process.Pid, "start_ticks": ticks, "created_at": now})
		if err := os.WriteFile(filepath.Join(dir, "instance.json"), rec, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	r := newRig(b, standin.Options{Seed: 1}, setup{PoolMax: 0, Reconcile: "1s"})
	r.dataDir = dataDir
	r.cfg.DataDir = dataDir
	p := r.start(b)
	defer p.Kill()
	time.Sleep(8 * time.Second) // several reconcile and scheduler passes
	if alive := e2etest.ProcState(strconv.Itoa(sleep.Process.Pid)); alive == "" || alive == "Z" {
		b.Fatal("corral killed the process behind the instances: the fleet was not steady")
	}
	ents, _ := os.ReadDir(filepath.Join(dataDir, "instances"))
	if len(ents) != n {
		b.Fatalf("%d instances left at the provider, want %d", len(ents), n)
	}
	return statusMB(b, p.Pid(), "VmRSS"), statusMB(b, p.Pid(), "VmHWM")
}

func startTicks(b *testing.B, pid int) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	v, err := strconv.ParseUint(fields[19], 10, 64) // field 22 overall
	if err != nil {
		b.Fatal(err)
	}
	return v
}

func statusMB(b *testing.B, pid int, key string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, key+":") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}
