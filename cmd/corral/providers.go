package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	_ "github.com/corral-ci/corral/internal/provider/builtin" // the provider types corral has
)

// openProviders opens every provider instance the config declares (or its
// pools imply) through the provider registry, records them in the store,
// and opens the retired ones: gone from the config, with live instances
// left to delete. A pool without an image gets its provider type's
// default image (the process provider: corral's own simulated runner).
func openProviders(ctx context.Context, cfg *config.Config, dom config.Domain, st corral.Store, log *slog.Logger) (map[string]corral.Provider, error) {
	env, err := providerEnv(cfg, log)
	if err != nil {
		return nil, err
	}
	out := map[string]corral.Provider{}
	for _, def := range dom.Providers {
		p, err := provider.Open(ctx, def, env)
		if err != nil {
			return nil, err
		}
		out[def.Name] = p
	}
	fillPoolImages(dom, env)
	retired, err := provider.OpenRetired(ctx, st, dom.Providers, env, time.Now())
	if err != nil {
		return nil, err
	}
	for name, p := range retired {
		out[name] = p
	}
	return out, nil
}

func providerEnv(cfg *config.Config, log *slog.Logger) (provider.Env, error) {
	exe, err := os.Executable()
	if err != nil {
		return provider.Env{}, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return provider.Env{}, err
	}
	return provider.Env{DataDir: dataDir, Executable: exe, InstancesDir: cfg.InstancesDir,
		InstanceDiskMB: cfg.InstanceDiskMB, Logger: log}, nil
}

// fillPoolImages gives each pool without an image its provider type's
// default image, at start and on every reload alike.
func fillPoolImages(dom config.Domain, env provider.Env) {
	types := map[string]string{}
	for _, def := range dom.Providers {
		types[def.Name] = def.Type
	}
	for i := range dom.Pools {
		p := &dom.Pools[i]
		if t, ok := provider.Lookup(types[p.Provider]); ok && p.Image == "" && t.PoolImage != nil {
			p.Image = t.PoolImage(env)
		}
	}
}

// forgetRetired forgets, every interval until ctx ends, the retired
// provider instances that have no instance left.
func forgetRetired(ctx context.Context, st corral.Store, configured []corral.ProviderDef, every time.Duration, log *slog.Logger) {
	names := map[string]bool{}
	for _, d := range configured {
		names[d.Name] = true
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := provider.ForgetRetired(ctx, st, names, log); err != nil && ctx.Err() == nil {
				log.Warn("forget retired providers", "err", err)
			}
		}
	}
}

// providerConcurrency gives each declared provider instance's cap on calls
// under way (config key concurrency); those without one are absent.
func providerConcurrency(dom config.Domain) map[string]int {
	out := map[string]int{}
	for _, d := range dom.Providers {
		if d.Concurrency > 0 {
			out[d.Name] = d.Concurrency
		}
	}
	return out
}
