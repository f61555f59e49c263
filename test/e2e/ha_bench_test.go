package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
	"github.com/corral-ci/corral/internal/testutil/fake"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

// BenchmarkIngestReplicas measures webhook ingest by real `corral serve`
// replicas (1, then 3) on one PostgreSQL server with fsync on: 32 parallel
// senders post signed workflow_job "queued" webhooks over HTTP on
// 127.0.0.1, each a new job with its own delivery id, spread round-robin
// over the replicas; every answer must be a 202, which corral sends after
// the job's commit. The jobs' labels match no pool (they are recorded as
// unroutable), so that the leader creates no runner meanwhile: the figure
// is the webhook path alone (signature, dedup, parse, route, one durable
// commit). Run it with a fixed count:
//
//	go test -run '^$' -bench BenchmarkIngestReplicas -benchtime 3000x ./test/e2e/
func BenchmarkIngestReplicas(b *testing.B) {
	srv := ownPostgres(b, true)
	var seq atomic.Int64
	for _, n := range []int{1, 3} {
		r := newRig(b, standin.Options{Seed: 20}, setup{Store: pgtest.DSNOn(b, srv), PoolMax: 1, Reconcile: "1h"})
		var addrs []string
		var procs []*e2etest.Proc
		for range n {
			a := e2etest.FreePort(b)
			addrs = append(addrs, a)
			procs = append(procs, r.startOn(b, a))
		}
		for _, a := range addrs {
			e2etest.WaitFor(b, 30*time.Second, "replica "+a+" ready", func() bool { return ready(a) })
		}
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
			b.SetParallelism(16) // 16 senders per core
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					body := unroutedJob(r.GitHub, i)
					req, _ := http.NewRequest("POST", "http://"+addrs[int(i)%len(addrs)]+"/webhooks/e2e", bytes.NewReader(body))
					req.Header = fake.Header("workflow_job", fmt.Sprint("bench-", i), github.Sign(r.Secret, body))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						b.Errorf("webhook %d: status %d, want 202", i, resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
		})
		for _, p := range procs {
			p.Stop(b)
		}
	}
}

// unroutedJob is a workflow_job "queued" payload for job id i whose labels
// match no pool of the rig.
func unroutedJob(g *e2etest.GitHub, i int64) []byte {
	body, _ := json.Marshal(map[string]any{
		"action": "queued",
		"workflow_job": map[string]any{"id": 2_000_000_000 + i, "run_id": i, "name": "bench", "labels": []string{"self-hosted", "bench-no-pool"},
			"status": "queued", "created_at": "2026-12-05T07:00:00Z", "runner_name": nil},
		"repository":   map[string]any{"id": 1, "name": "app", "full_name": g.Org + "/app"},
		"organization": map[string]any{"login": g.Org},
		"sender":       map[string]any{"login": "octocat"},
	})
	return body
}
