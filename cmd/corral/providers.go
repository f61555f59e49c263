package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	_ "github.com/corral-ci/corral/internal/provider/builtin" // the provider types corral has
	"github.com/corral-ci/corral/internal/provider/garm"
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
	env := provider.Env{DataDir: dataDir, Executable: exe, InstancesDir: cfg.InstancesDir,
		InstanceDiskMB: cfg.InstanceDiskMB, Logger: log}
	if m := instanceMetadata(); m != nil {
		env.Metadata = m
	}
	return env, nil
}

var (
	metaMu sync.Mutex
	meta   *garm.Metadata
)

// openMetadata makes this process's metadata endpoint for instances that
// fetch their own bootstrap (garm providers), on the store, at the
// address instance_url (or the scheme and host of runners.public_url)
// names; none when neither is set. providerEnv hands it to the providers.
func openMetadata(cfg *config.Config, st corral.Store, log *slog.Logger) (*garm.Metadata, error) {
	base := cfg.InstanceURL
	if base == "" && cfg.Runners.PublicURL != "" {
		if u, err := url.Parse(cfg.Runners.PublicURL); err == nil {
			base = u.Scheme + "://" + u.Host
		}
	}
	if base == "" {
		return nil, nil
	}
	m, err := garm.NewMetadata(garm.MetadataConfig{BaseURL: base, Store: st, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("instance_url: %w", err)
	}
	metaMu.Lock()
	meta = m
	metaMu.Unlock()
	return m, nil
}

// instanceMetadata is the endpoint openMetadata made, if any.
func instanceMetadata() *garm.Metadata {
	metaMu.Lock()
	defer metaMu.Unlock()
	return meta
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
