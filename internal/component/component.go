// Package component runs corral's long-lived loops (scheduler, reconciler,
// catalog, runner cache, health probes, later listeners and pollers) as
// named components with one lifecycle: each runs under the manager until
// corral stops; a component that returns an error (or panics, or returns
// while corral runs) is logged with its name, shown in /readyz, and either
// restarted with backoff or, if it is marked fatal, stops corral with an
// error. Leader-only components run only during a leader term.
//
// Model: controller-runtime's manager (Runnable, NeedLeaderElection,
// named health checks), kept small.
package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Component is one loop of corral.
type Component interface {
	Name() string
	// Run works until ctx ends and then returns nil; an error means the
	// component failed.
	Run(ctx context.Context) error
}

// Func adapts a function to a Component.
func Func(name string, run func(ctx context.Context) error) Component {
	return funcComponent{name, run}
}

type funcComponent struct {
	name string
	run  func(context.Context) error
}

func (f funcComponent) Name() string                  { return f.name }
func (f funcComponent) Run(ctx context.Context) error { return f.run(ctx) }

// Options say how a component runs.
type Options struct {
	// LeaderOnly components run during leader terms only (RunTerm).
	LeaderOnly bool
	// Fatal: a failure stops corral (Run returns the error) instead of a
	// restart with backoff.
	Fatal bool
}

// Recorder observes component failures and restarts (metrics). The zero
// Manager uses a no-op.
type Recorder interface {
	ComponentFailed(name string)
}

type nopRecorder struct{}

func (nopRecorder) ComponentFailed(string) {}

// Status is what the manager knows of one component.
type Status struct {
	Name       string    `json:"name"`
	LeaderOnly bool      `json:"leader_only,omitempty"`
	Running    bool      `json:"running"`
	Failures   int       `json:"failures"`
	LastError  string    `json:"last_error,omitempty"`
	LastFailAt time.Time `json:"last_failure_at,omitzero"`
	// Degraded: the component failed within the last minute.
	Degraded bool `json:"degraded"`
}

// Manager runs components and answers health checks.
type Manager struct {
	log   *slog.Logger
	clock corral.Clock
	rec   Recorder
	// Backoff between restarts: Base doubling up to Max.
	Base, Max time.Duration

	mu     sync.Mutex
	comps  []*entry
	checks []check
}

type entry struct {
	c    Component
	opt  Options
	stat Status
}

// New makes a manager.
func New(log *slog.Logger, clock corral.Clock, rec Recorder) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = corral.SystemClock{}
	}
	if rec == nil {
		rec = nopRecorder{}
	}
	return &Manager{log: log, clock: clock, rec: rec, Base: time.Second, Max: 30 * time.Second}
}

// Add registers a component. Add before Run.
func (m *Manager) Add(c Component, opt Options) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.comps = append(m.comps, &entry{c: c, opt: opt, stat: Status{Name: c.Name(), LeaderOnly: opt.LeaderOnly}})
}

// Run runs every component that is not leader-only until ctx ends, and
// returns nil then; or returns the error of a fatal component that failed
// (after stopping the others).
func (m *Manager) Run(ctx context.Context) error {
	return m.run(ctx, false)
}

// RunTerm runs the leader-only components until ctx (the term) ends.
func (m *Manager) RunTerm(ctx context.Context) error {
	return m.run(ctx, true)
}

func (m *Manager) run(ctx context.Context, leaderOnly bool) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	m.mu.Lock()
	var mine []*entry
	for _, e := range m.comps {
		if e.opt.LeaderOnly == leaderOnly {
			mine = append(mine, e)
		}
	}
	m.mu.Unlock()
	for _, e := range mine {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.keep(ctx, e); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// keep runs e until ctx ends, restarting it after failures; it returns an
// error only for a fatal component's failure.
func (m *Manager) keep(ctx context.Context, e *entry) error {
	log := m.log.With("component", e.c.Name())
	delay := m.Base
	for {
		m.set(e, func(s *Status) { s.Running = true })
		start := m.clock.Now()
		err := runSafe(ctx, e.c)
		m.set(e, func(s *Status) { s.Running = false })
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("returned while corral runs")
		}
		m.rec.ComponentFailed(e.c.Name())
		m.set(e, func(s *Status) {
			s.Failures++
			s.LastError = err.Error()
			s.LastFailAt = m.clock.Now()
		})
		if e.opt.Fatal {
			log.Error("component failed; stopping corral", "err", err)
			return fmt.Errorf("component %s: %w", e.c.Name(), err)
		}
		if m.clock.Now().Sub(start) > 2*m.Max {
			delay = m.Base // it had run well for a while: start the backoff over
		}
		log.Error("component failed; restarting", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, m.Max)
	}
}

func runSafe(ctx context.Context, c Component) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return c.Run(ctx)
}

func (m *Manager) set(e *entry, fn func(*Status)) {
	m.mu.Lock()
	fn(&e.stat)
	m.mu.Unlock()
}

// Statuses returns every component's status, by name.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	out := make([]Status, 0, len(m.comps))
	for _, e := range m.comps {
		s := e.stat
		s.Degraded = !s.LastFailAt.IsZero() && now.Sub(s.LastFailAt) < time.Minute
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
