package component_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/component"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A failing component is restarted, and its error shows in the log and in
// /readyz (503, with the component's name and error), never vanishes.
func TestManager_FailureVisibleAndRestarted(t *testing.T) {
	var logs syncBuf
	m := component.New(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil)
	m.Base, m.Max = 10*time.Millisecond, 20*time.Millisecond
	var runs atomic.Int32
	m.Add(component.Func("flaky", func(ctx context.Context) error {
		if runs.Add(1) <= 2 {
			return errors.New("disk on fire")
		}
		<-ctx.Done()
		return nil
	}), component.Options{})
	m.Add(component.Func("steady", func(ctx context.Context) error { <-ctx.Done(); return nil }), component.Options{})
	m.AddCheck("store", true, func(context.Context) (string, error) { return "ok", nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, "a third run", func() bool { return runs.Load() >= 3 })

	if !strings.Contains(logs.String(), "component=flaky") || !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("log lacks the component and its error:\n%s", logs.String())
	}
	rec := httptest.NewRecorder()
	m.ReadyHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d after a component failed, want 503", rec.Code)
	}
	var rd component.Readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
		t.Fatal(err)
	}
	var flaky *component.Status
	for i := range rd.Components {
		if rd.Components[i].Name == "flaky" {
			flaky = &rd.Components[i]
		}
	}
	if flaky == nil || flaky.Failures != 2 || flaky.LastError != "disk on fire" || !flaky.Degraded || !flaky.Running {
		t.Errorf("flaky in /readyz = %+v, want 2 failures, its error, degraded, running again", flaky)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after ctx ended, want nil", err)
	}
}

// A fatal component's failure stops the others and Run returns it.
func TestManager_FatalStopsCorral(t *testing.T) {
	m := component.New(nil, nil, nil)
	stopped := make(chan struct{})
	m.Add(component.Func("other", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }), component.Options{})
	m.Add(component.Func("vital", func(ctx context.Context) error { panic("boom") }), component.Options{Fatal: true})
	err := m.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "vital") || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("Run = %v, want the fatal component's panic", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the other component was not stopped")
	}
}

// Leader-only components run in RunTerm only; a component returning nil
// while corral runs counts as a failure.
func TestManager_LeaderOnly(t *testing.T) {
	m := component.New(nil, nil, nil)
	m.Base = time.Millisecond
	var lead, always atomic.Int32
	m.Add(component.Func("sched", func(ctx context.Context) error { lead.Add(1); <-ctx.Done(); return nil }), component.Options{LeaderOnly: true})
	m.Add(component.Func("quitter", func(ctx context.Context) error { always.Add(1); return nil }), component.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = m.Run(ctx) }()
	waitFor(t, "quitter restarted", func() bool { return always.Load() >= 2 })
	if lead.Load() != 0 {
		t.Fatal("a leader-only component ran outside a term")
	}
	tctx, end := context.WithCancel(ctx)
	go func() { _ = m.RunTerm(tctx) }()
	waitFor(t, "sched in the term", func() bool { return lead.Load() == 1 })
	end()
	cancel()
	for _, s := range m.Statuses() {
		if s.Name == "quitter" && (s.Failures < 1 || !strings.Contains(s.LastError, "returned while corral runs")) {
			t.Errorf("quitter status %+v", s)
		}
	}
}

// A failing critical check makes /readyz 503; a failing report-only check
// does not.
func TestManager_Checks(t *testing.T) {
	m := component.New(nil, nil, nil)
	m.AddCheck("provider docker", false, func(context.Context) (string, error) { return "", errors.New("engine down") })
	rd := m.Ready(context.Background(), time.Second)
	if !rd.Ready || len(rd.Checks) != 1 || rd.Checks[0].Error != "engine down" {
		t.Errorf("report-only failure: %+v", rd)
	}
	m.AddCheck("store", true, func(context.Context) (string, error) { return "", errors.New("disk full") })
	if rd := m.Ready(context.Background(), time.Second); rd.Ready {
		t.Errorf("critical failure but ready: %+v", rd)
	}
}
