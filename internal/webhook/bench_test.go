package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/testutil/fake"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// benchIngest posts signed workflow_job "queued" webhooks, each a new job
// with its own delivery id, from parallel senders over real HTTP on
// 127.0.0.1, and reports webhooks/s. Every 202 came after the commit.
func benchIngest(b *testing.B, ts string) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	var seq atomic.Int64
	b.SetParallelism(16) // 16 senders per core
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			body := payload(1_000_000_000+n, "queued")
			req, _ := http.NewRequest("POST", ts+"/webhooks/acme", bytes.NewReader(body))
			req.Header = fake.Header("workflow_job", fmt.Sprint("delivery-", n), github.Sign(secret, body))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			// Read the answer whole before closing it, so that the
			// connection is reused: otherwise every request pays for a
			// new TCP connection and the figure measures that.
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
	// CPU time of this process (senders and server) per webhook: unlike
	// the rate, it hardly changes with what else the machine runs.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/webhook")
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkIngest(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		ts, _ := server(b, 0)
		benchIngest(b, ts.URL)
	})
	b.Run("postgres", func(b *testing.B) {
		st, err := postgres.Open(context.Background(), pgtest.DSN(b), postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		ts := serverOn(b, st, 0)
		benchIngest(b, ts.URL)
	})
}
