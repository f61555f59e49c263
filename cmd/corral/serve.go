package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/reqid"
	"github.com/corral-ci/corral/internal/runners"
	"github.com/corral-ci/corral/internal/secretbox"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/webhook"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", flag.ContinueOnError)
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
	metadata, err := openMetadata(cfg, store, log)
	if err != nil {
		return err
	}
	providers, err := openProviders(ctx, cfg, dom, store, log)
	if err != nil {
		return err
	}
	defer func() {
		// Providers that run a process of their own (shoes plugins) stop it.
		for _, p := range providers {
			if c, ok := p.(io.Closer); ok {
				_ = c.Close()
			}
		}
	}()
	go forgetRetired(ctx, store, dom.Providers, cfg.ReconcileInterval, log)
	cache, runnerDir, err := openRunners(cfg, log)
	if err != nil {
		return err
	}
	// The key that seals targets' credentials written through the API: the
	// same on every replica (CORRAL_SECRET_KEY, or the data directory's
	// key file); without one such writes are refused.
	box, err := secretbox.Open(cfg.DataDir, os.Getenv, false)
	if err != nil {
		log.Info("no secret key: targets' credentials cannot be written through the API", "err", err)
		box = nil
	}
	opt := app.Options{
		SecretBox: box,
		Runners:   cache, RunnerDir: runnerDir,
		Store: store, Forges: forge.NewRegistry(nil, log), Providers: providers, ProviderConcurrency: providerConcurrency(dom),
		Tenants: dom.Tenants, Targets: dom.Targets, Pools: dom.Pools, Sizes: dom.Sizes, DefaultArch: dom.DefaultArch,
		MaxInstances: cfg.MaxInstances, ControllerID: controllerID, NoLeader: *noLeader,
		Holder:            replicaName(controllerID, cfg.Listen),
		ReconcileInterval: cfg.ReconcileInterval, LeaseTTL: cfg.LeaseTTL, Logger: log,
	}
	if metadata != nil {
		opt.Metadata = metadata
	}
	a, err := app.New(opt)
	if err != nil {
		return err
	}
	if err := a.Sync(ctx); err != nil {
		return err
	}
	srvs, addrs, err := listen(cfg, a, log)
	if err != nil {
		return err
	}
	serveErr := make(chan error, len(srvs))
	for _, srv := range srvs {
		go func() { serveErr <- srv.serve() }()
	}
	log.Info("corral serving", "listen", addrs[0], "api_listen", addrs[1], "controller", controllerID,
		"targets", len(dom.Targets), "pools", len(dom.Pools), "version", version())
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(runCtx) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var fatal error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-serveErr:
			break loop
		case fatal = <-runErr:
			runErr <- fatal
			break loop
		case <-hup:
			reload(ctx, a, *path, stderr, log)
		}
	}
	// Stopping leaves busy runners running: the next start adopts them.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range srvs {
		_ = srv.Shutdown(sctx)
	}
	stopRun()
	fatal = <-runErr
	log.Info("corral stopped; runners left running are adopted at the next start")
	if fatal != nil {
		return fmt.Errorf("corral stopped: %w", fatal)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// server is one listener and its HTTP server.
type server struct {
	*http.Server
	ln net.Listener
}

func (s server) serve() error { return s.Serve(s.ln) }

// listen opens corral's listeners: listen alone serves every route; with
// api_listen, listen serves webhooks, runner downloads and health and
// api_listen the API and metrics. Each is TLS when it has a certificate.
// addrs are the addresses bound (api_listen's "" when there is none).
func listen(cfg *config.Config, a *app.App, log *slog.Logger) ([]server, [2]string, error) {
	type spec struct {
		key, addr, cert, tlsKey string
		on                      app.Listener
	}
	specs := []spec{{"listen", cfg.Listen, cfg.TLSCert, cfg.TLSKey, app.OnBoth}}
	if cfg.APIListen != "" {
		specs[0].on = app.OnWebhooks
		specs = append(specs, spec{"api_listen", cfg.APIListen, cfg.APITLSCert, cfg.APITLSKey, app.OnAPI})
	}
	var srvs []server
	var addrs [2]string
	for i, sp := range specs {
		ln, err := net.Listen("tcp", sp.addr)
		if err == nil && sp.cert != "" {
			var pair tls.Certificate
			if pair, err = tls.LoadX509KeyPair(sp.cert, sp.tlsKey); err != nil {
				ln.Close()
			} else {
				ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
			}
		}
		if err != nil {
			for _, s := range srvs {
				s.ln.Close()
			}
			return nil, addrs, fmt.Errorf("%s %s: %w", sp.key, sp.addr, err)
		}
		addrs[i] = ln.Addr().String()
		h := reqid.Handler(log, webhook.AllowHosts(cfg.AllowedHosts, a.HandlerFor(sp.on)))
		srvs = append(srvs, server{&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second}, ln})
	}
	return srvs, addrs, nil
}

// reload re-reads the config file (SIGHUP) and applies its tenants,
// targets and pools to the live catalog: changed limits, labels and
// flavors hold from the next reservation; a removed pool drains. A file
// with errors is refused whole and the catalog in force stays. Top-level
// keys (listen, store, data_dir, providers, runners) need a restart.
func reload(ctx context.Context, a *app.App, path string, stderr io.Writer, log *slog.Logger) {
	log.Info("SIGHUP: reloading the config file", "config", path)
	cfg, dom, err := loadConfig(path, stderr)
	if err != nil {
		log.Error("config reload refused; the configuration in force stays", "config", path, "err", err)
		return
	}
	env, err := providerEnv(cfg, log)
	if err != nil {
		log.Error("config reload refused; the configuration in force stays", "config", path, "err", err)
		return
	}
	fillPoolImages(dom, env)
	ch, err := a.Apply(ctx, catalog.Desired{Tenants: dom.Tenants, Targets: dom.Targets, Pools: dom.Pools})
	if err != nil {
		log.Error("config reload refused; the configuration in force stays", "config", path, "err", err)
		return
	}
	if ch.Empty() {
		log.Info("config reloaded: nothing changed")
	}
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
		// A leader paused inside a fenced write must not hold the lease
		// row past its lease (docs/ha.md).
		return postgres.Open(ctx, dsn, postgres.Options{Logger: log, IdleTxTimeout: cfg.LeaseTTL})
	default:
		return nil, fmt.Errorf("store: want \"sqlite\" or a postgres:// DSN")
	}
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
