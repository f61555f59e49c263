package github

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestClient_RateLimit(t *testing.T) {
	t.Run("sweeps stop at the reserve, minting goes on", func(t *testing.T) {
		e := newEnv(t)
		reset := t0.Add(30 * time.Minute)
		e.f.on("GET /repos/o/r/actions/runners", func(w http.ResponseWriter, r *http.Request) {
			rateHeaders(w, 5000, 400, reset) // under the default reserve of 500
			writeJSON(w, 200, map[string]any{"total_count": 0, "runners": []any{}})
		})
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
			rateHeaders(w, 5000, 399, reset)
			jitOK(1)(w, r)
		})
		c := e.client(t, e.target(corral.ScopeRepo, "o/r"))
		if _, err := c.Probe(ctxT(t)); err != nil { // learns the budget
			t.Fatal(err)
		}
		if rem, rs := c.Budget(); rem != 400 || !rs.Equal(reset) {
			t.Fatalf("budget = %d %v", rem, rs)
		}
		before := e.f.total()
		_, err := c.OpenJobs(ctxT(t))
		var rl *RateLimitError
		if !errors.Is(err, corral.ErrRateLimited) || !errors.As(err, &rl) || !rl.Reserve {
			t.Fatalf("sweep under the reserve: %v", err)
		}
		if e.f.total() != before {
			t.Fatal("a refused sweep still called GitHub")
		}
		if _, err := c.MintRunner(ctxT(t), spec1); err != nil {
			t.Fatalf("mint under the reserve: %v", err)
		}
		// After the reset the window is full again.
		e.clock.Set(reset.Add(time.Second))
		if rem, _ := c.Budget(); rem != 5000 {
			t.Fatalf("budget after reset = %d", rem)
		}
	})

	t.Run("Retry-After is honoured: sweeps fail fast, nothing is sent early", func(t *testing.T) {
		e := newEnv(t)
		n := 0
		e.f.on("GET /repos/o/r/actions/runners", func(w http.ResponseWriter, r *http.Request) {
			n++
			if n == 2 { // the probe's call passes; the sweep's is refused
				w.Header().Set("Retry-After", "30")
				writeJSON(w, 403, map[string]any{"message": "You have exceeded a secondary rate limit",
					"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"})
				return
			}
			writeJSON(w, 200, map[string]any{"total_count": 0, "runners": []any{}})
		})
		c := e.client(t, e.target(corral.ScopeRepo, "o/r"))
		_, err := c.Runners(ctxT(t))
		var ce *corral.CallError
		if !errors.Is(err, corral.ErrRateLimited) || !errors.As(err, &ce) || ce.Status != 403 {
			t.Fatalf("err = %v", err)
		}
		before := e.f.total()
		e.clock.Advance(29 * time.Second)
		if _, err := c.Runners(ctxT(t)); !errors.Is(err, corral.ErrRateLimited) {
			t.Fatalf("before Retry-After: %v", err)
		}
		if _, err := c.MintRunner(ctxT(t), spec1); !errors.Is(err, corral.ErrNotFound) {
			// Minting waits out the last second (fake sleep), then goes.
			t.Fatalf("mint: %v", err)
		}
		e.f.mu.Lock()
		for _, h := range e.f.hits[before:] {
			if h.At.Before(t0.Add(30 * time.Second)) {
				t.Errorf("%s %s sent at %v, before Retry-After", h.Method, h.Path, h.At.Sub(t0))
			}
		}
		e.f.mu.Unlock()
	})

	t.Run("short 429 on a mint is waited out and retried", func(t *testing.T) {
		e := newEnv(t)
		n := 0
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
			n++
			if n == 1 {
				w.Header().Set("Retry-After", "5")
				writeJSON(w, 429, map[string]any{"message": "slow down"})
				return
			}
			jitOK(4)(w, r)
		})
		b, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), spec1)
		if err != nil || b.RunnerID != 4 {
			t.Fatalf("mint = %+v %v", b, err)
		}
		if at := e.f.last("POST /repos/o/r/actions/runners/generate-jitconfig").At; at.Sub(t0) < 5*time.Second {
			t.Fatalf("retried after %v, before Retry-After", at.Sub(t0))
		}
	})

	t.Run("exhausted budget: even a mint fails fast until the reset", func(t *testing.T) {
		e := newEnv(t)
		reset := t0.Add(10 * time.Minute)
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
			rateHeaders(w, 5000, 0, reset)
			writeJSON(w, 403, map[string]any{"message": "API rate limit exceeded"})
		})
		c := e.client(t, e.target(corral.ScopeRepo, "o/r"))
		if _, err := c.MintRunner(ctxT(t), spec1); !errors.Is(err, corral.ErrRateLimited) {
			t.Fatalf("err = %v", err)
		}
		before := e.f.total()
		if err := c.RemoveRunner(ctxT(t), corral.Runner{ID: 1}); !errors.Is(err, corral.ErrRateLimited) {
			t.Fatalf("remove: %v", err)
		}
		if e.f.total() != before {
			t.Fatal("called GitHub with no budget left")
		}
		e.clock.Set(reset.Add(time.Second))
		if err := c.RemoveRunner(ctxT(t), corral.Runner{ID: 1}); err != nil { // 404: gone
			t.Fatalf("after reset: %v", err)
		}
	})
}

func TestClient_Retries(t *testing.T) {
	t.Run("5xx is retried with backoff", func(t *testing.T) {
		e := newEnv(t)
		n := 0
		e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
			n++
			if n < 3 {
				writeJSON(w, 502, map[string]any{"message": "Server Error"})
				return
			}
			jitOK(8)(w, r)
		})
		b, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), spec1)
		if err != nil || b.RunnerID != 8 || n != 3 {
			t.Fatalf("mint = %+v %v after %d tries", b, err, n)
		}
		if e.clock.Now().Sub(t0) < 1500*time.Millisecond {
			t.Fatalf("no backoff: %v", e.clock.Now().Sub(t0))
		}
	})
	t.Run("bounded", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("GET /repos/o/r/actions/jobs/1", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 503, map[string]any{"message": "unavailable"})
		})
		_, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).Job(ctxT(t), 1, "")
		if !errors.Is(err, corral.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
		if n := e.f.count("GET /repos/o/r/actions/jobs/1"); n != 3 {
			t.Fatalf("%d tries, want 3", n)
		}
	})
}
