package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/provider/docker"
	"github.com/corral-ci/corral/internal/runners"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("CORRAL_CONFIG"), "config file (env CORRAL_CONFIG)")
	check := fs.Bool("check", false, "validate the config file and exit")
	noLeader := fs.Bool("no-leader", false, "schedule without the leader lease (tests that race replicas on purpose)")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *path == "" {
		fmt.Fprintln(stderr, "corral serve: -config FILE is required (or set CORRAL_CONFIG)")
		return exitError(2)
	}
	cfg, dom, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: OK (%d targets, %d pools)\n", *path, len(dom.Targets), len(dom.Pools))
		return nil
	}
	log := newLogger(cfg.Log, stderr)
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	controllerID, err := loadControllerID(cfg.DataDir, cfg.ControllerID)
	if err != nil {
		return err
	}
	providers, err := openProviders(cfg, dom.Pools, log)
	if err != nil {
		return err
	}
	cache, runnerDir, err := openRunners(cfg, log)
	if err != nil {
		return err
	}
	opt := app.Options{
		Runners: cache, RunnerDir: runnerDir,
		Store: store, Forges: forge.NewRegistry(nil, log), Providers: providers,
		Tenants: dom.Tenants, Targets: dom.Targets, Pools: dom.Pools, Sizes: dom.Sizes,
		MaxInstances: cfg.MaxInstances, ControllerID: controllerID, NoLeader: *noLeader,
		Holder:            replicaName(controllerID, cfg.Listen),
		ReconcileInterval: cfg.ReconcileInterval, Logger: log,
	}
	a, err := app.New(opt)
	if err != nil {
		return err
	}
	if err := a.Sync(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("corral serving", "listen", ln.Addr().String(), "controller", controllerID,
		"targets", len(dom.Targets), "pools", len(dom.Pools), "version", version())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = a.Run(ctx) }()
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	// Stopping leaves busy runners running: the next start adopts them.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-runDone
	log.Info("corral stopped; runners left running are adopted at the next start")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// replicaName names this replica in the leader lease. It is stable across
// restarts, so a replica that was killed takes its lease back at once
// instead of waiting for it to expire; two replicas differ by host or
// listen address.
func replicaName(controllerID, listen string) string {
	host, _ := os.Hostname()
	return controllerID + "@" + host + "/" + listen
}

// loadConfig reads, validates and converts the config, printing every
// problem at once.
func loadConfig(path string, stderr io.Writer) (*config.Config, config.Domain, error) {
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		return nil, config.Domain{}, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	dom, err := cfg.Domain()
	if err != nil {
		return nil, config.Domain{}, err
	}
	return cfg, dom, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (corral.Store, error) {
	dsn := cfg.Store.Reveal()
	switch {
	case dsn == "" || dsn == "sqlite":
		return sqlite.Open(ctx, filepath.Join(cfg.DataDir, "corral.db"), sqlite.Options{Logger: log})
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(ctx, dsn, postgres.Options{Logger: log})
	default:
		return nil, fmt.Errorf("store: want \"sqlite\" or a postgres:// DSN")
	}
}

// openProviders makes the providers the pools name. A process pool without
// an image runs corral's own simulated runner.
func openProviders(cfg *config.Config, pools []corral.Pool, log *slog.Logger) (map[string]corral.Provider, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	out := map[string]corral.Provider{}
	for i := range pools {
		p := &pools[i]
		if out[p.Provider] != nil {
			if p.Provider == "process" && p.Image == "" {
				p.Image = exe
			}
			continue
		}
		var prov corral.Provider
		switch p.Provider {
		case "process":
			if p.Image == "" {
				p.Image = exe
			}
			prov, err = newProcessProvider(cfg.DataDir, cfg.InstancesDir, cfg.InstanceDiskMB, log)
		case "docker":
			prov, err = docker.New(dockerConfig(cfg.Providers.Docker, log))
		default:
			return nil, fmt.Errorf("pool %s: provider %q is not available (corral has: process, docker)", p.ID, p.Provider)
		}
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.Provider, err)
		}
		out[p.Provider] = prov
	}
	return out, nil
}

func dockerConfig(c config.Docker, log *slog.Logger) docker.Config {
	dc := docker.Config{Network: c.Network, ReadOnlyRoot: c.ReadOnlyRoot, LogDriver: c.LogDriver, Logger: log,
		DindImage: c.DindImage, DindCapabilities: c.DindCapabilities}
	for _, e := range c.Endpoints {
		dc.Endpoints = append(dc.Endpoints, docker.Endpoint{Name: e.Name, Host: e.Host, TLSCA: e.TLSCA,
			TLSCert: e.TLSCert, TLSKey: e.TLSKey, MaxInstances: e.MaxInstances})
	}
	if len(dc.Endpoints) == 0 {
		dc.Endpoints = []docker.Endpoint{{Name: "local", Host: "unix:///var/run/docker.sock"}}
	}
	return dc
}

// openRunners makes the runner-release cache when the config names runner
// kinds to keep, and the function that gives a pool its managed runner.
func openRunners(cfg *config.Config, log *slog.Logger) (app.RunnerCache, func(corral.Pool, corral.Target) (string, error), error) {
	rc := cfg.Runners
	if len(rc.Kinds) == 0 {
		return nil, nil, nil
	}
	sources := map[runners.Kind]runners.Source{}
	for _, k := range rc.Kinds {
		kind := runners.Kind(k)
		if rc.MirrorURL != "" {
			sources[kind] = &runners.Mirror{IndexURL: rc.MirrorURL, Kind: kind}
			continue
		}
		src, err := runners.DefaultReleasesAPI(kind)
		if err != nil {
			return nil, nil, err
		}
		sources[kind] = src
	}
	cache, err := runners.New(runners.Config{Dir: filepath.Join(cfg.DataDir, "runners"), Sources: sources, Keep: rc.Keep,
		Interval: rc.RefreshInterval, BaseURL: rc.PublicURL, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	dir := func(p corral.Pool, t corral.Target) (string, error) {
		kind := map[corral.TargetKind]runners.Kind{corral.KindGitHub: runners.KindGitHub,
			corral.KindGitea: runners.KindGitea, corral.KindForgejo: runners.KindForgejo}[t.Kind]
		if kind == "" {
			return "", fmt.Errorf("no managed runner for forge kind %q", t.Kind)
		}
		arch := p.Flavor.Arch
		if arch == "" {
			arch = "x64"
		}
		_, path, err := cache.Current(kind, "linux", arch)
		return path, err
	}
	return cache, dir, nil
}
