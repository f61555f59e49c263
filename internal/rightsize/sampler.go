package rightsize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// DefaultInterval is how often the sampler reads busy instances' usage.
const DefaultInterval = 10 * time.Second

// SamplerConfig configures a Sampler.
type SamplerConfig struct {
	Store     corral.Store // the leader's (fenced) store
	Providers map[string]corral.Provider
	Interval  time.Duration // default DefaultInterval
	Clock     corral.Clock
	Logger    *slog.Logger
}

// Sampler samples the CPU and memory use of busy instances whose provider
// can measure it (corral.StatsReader) and, when an instance is about to be
// deleted, takes a last sample and records what its job used.
type Sampler struct {
	cfg SamplerConfig
	log *slog.Logger
	mu  sync.Mutex
	tr  map[string]*Tracker // instance id -> samples
}

// NewSampler returns a Sampler; Run drives it.
func NewSampler(cfg SamplerConfig) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sampler{cfg: cfg, log: cfg.Logger.With("component", "rightsizing"), tr: map[string]*Tracker{}}
}

// Run samples at once and then every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("sampling pass had errors", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pass samples every busy instance once and forgets the samples of
// instances that are no longer live.
func (s *Sampler) Pass(ctx context.Context) error {
	var ins []corral.Instance
	if err := s.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		// Brief: a sample needs the instance's ids, pool and provider.
		ins, err = tx.Instances(ctx, corral.InstanceFilter{States: []corral.InstanceState{
			corral.InstBusy, corral.InstDraining}, Brief: true})
		return err
	}); err != nil {
		return err
	}
	live := make(map[string]bool, len(ins))
	var errs []error
	for _, in := range ins {
		live[in.ID] = true
		if in.State != corral.InstBusy {
			continue
		}
		if err := s.sample(ctx, in); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	for id := range s.tr {
		if !live[id] {
			delete(s.tr, id)
		}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// sample adds one sample of in, if its provider measures.
func (s *Sampler) sample(ctx context.Context, in corral.Instance) error {
	p, ok := s.cfg.Providers[in.Provider]
	if !ok || in.ProviderID == "" {
		return nil
	}
	sr, ok := p.(corral.StatsReader)
	if !ok {
		return nil
	}
	u, err := sr.Stats(ctx, corral.ProviderInstance{ProviderID: in.ProviderID, InstanceID: in.ID, PoolID: in.PoolID})
	if err != nil {
		return fmt.Errorf("stats of instance %s: %w", in.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tr := s.tr[in.ID]
	if tr == nil {
		tr = &Tracker{}
		s.tr[in.ID] = tr
	}
	tr.Add(s.cfg.Clock.Now(), u)
	return nil
}

// BeforeDelete takes a last sample of in, which is about to be deleted,
// and records what its job used (when it ran one and was sampled busy).
func (s *Sampler) BeforeDelete(ctx context.Context, in corral.Instance) {
	s.mu.Lock()
	_, seen := s.tr[in.ID]
	s.mu.Unlock()
	if !seen || in.JobID == 0 {
		s.forget(in.ID)
		return
	}
	if err := s.sample(ctx, in); err != nil {
		s.log.Debug("last sample before delete", "instance", in.ID, "err", err)
	}
	s.mu.Lock()
	tr := s.tr[in.ID]
	delete(s.tr, in.ID)
	s.mu.Unlock()
	sum := tr.Summary()
	if sum.Samples < 2 {
		return // no CPU rate without two samples
	}
	err := s.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		j, err := tx.Job(ctx, in.JobID)
		if err != nil {
			return err
		}
		return tx.PutJobUsage(ctx, corral.JobUsage{
			JobID: j.ID, TenantID: j.TenantID, PoolID: in.PoolID, Repo: j.Repo, JobName: j.Name, Flavor: in.Flavor,
			PeakCPU: sum.PeakCPU, P95CPU: sum.P95CPU, PeakMemoryBytes: sum.PeakMemoryBytes, CPUSeconds: sum.CPUSeconds,
			Duration: sum.Duration, Samples: sum.Samples, RecordedAt: s.cfg.Clock.Now(),
		})
	})
	if err != nil {
		s.log.Warn("record job usage", "instance", in.ID, "job", in.JobID, "err", err)
		return
	}
	s.log.Info("job usage recorded", "job", in.JobID, "peak_cpu", sum.PeakCPU, "p95_cpu", sum.P95CPU,
		"peak_memory_mib", sum.PeakMemoryBytes>>20, "samples", sum.Samples)
}

func (s *Sampler) forget(id string) {
	s.mu.Lock()
	delete(s.tr, id)
	s.mu.Unlock()
}
