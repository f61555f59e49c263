package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// devJobs is the mix of runs-on labels `corral dev` queues: most go to the
// on-premises pool, some ask for more capacity or another architecture,
// and two show what a refused job looks like.
var devJobs = [][]string{
	{"self-hosted", "corral"},
	{"self-hosted", "corral"},
	{"self-hosted", "linux", "corral", "medium"},
	{"corral", "4cpu8gb"},
	{"self-hosted", "corral", "large"},
	{"corral", "arm64"},
	{"self-hosted", "corral"},
	{"self-hosted", "gpu"}, // lacks every pool's label: refused with a reason
	{"corral", "64cpu"},    // beyond every pool's bounds: refused, never shrunk
	{"self-hosted", "linux", "corral", "x64"},
}

func devPools(image string) []corral.Pool {
	return []corral.Pool{
		{ID: "onprem", TenantID: "default", Labels: []string{"corral"}, Provider: "process", Image: image,
			Flavor:   corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "x64"},
			Max:      corral.Flavor{CPU: 8, MemoryMB: 16384, DiskMB: 102400},
			Priority: 10, MaxInstances: 4, MinIdle: 1, HeadroomPercent: 25,
			BootTimeout: time.Minute, MaxJobRuntime: 10 * time.Minute, IdleTimeout: 30 * time.Second, MaxLifetime: 20 * time.Minute},
		{ID: "cloud-overflow", TenantID: "default", Labels: []string{"corral"}, Provider: "process", Image: image,
			Flavor:   corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "x64"},
			Max:      corral.Flavor{CPU: 16, MemoryMB: 65536, DiskMB: 204800},
			Priority: 20, MaxInstances: 4,
			BootTimeout: time.Minute, MaxJobRuntime: 10 * time.Minute, IdleTimeout: 30 * time.Second, MaxLifetime: 20 * time.Minute},
		{ID: "arm", TenantID: "default", Labels: []string{"corral"}, Provider: "process", Image: image,
			Flavor:   corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "arm64"},
			Max:      corral.Flavor{CPU: 4, MemoryMB: 8192, DiskMB: 40960},
			Priority: 30, MaxInstances: 2,
			BootTimeout: time.Minute, MaxJobRuntime: 10 * time.Minute, IdleTimeout: 30 * time.Second, MaxLifetime: 20 * time.Minute},
	}
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", filepath.Join(".data", "dev"), "data directory (SQLite database, runner working directories)")
	listen := fs.String("listen", "127.0.0.1:8080", "address of corral's HTTP endpoint (webhooks, API)")
	jobs := fs.Int("jobs", 0, "stop queueing after this many jobs (0: a steady stream until Ctrl-C)")
	every := fs.Duration("every", 700*time.Millisecond, "mean time between two queued jobs")
	drop := fs.Float64("drop", 0.1, "fraction of webhooks the stand-in GitHub drops (the forge sweep finds those jobs)")
	seed := fs.Uint64("seed", 0, "random seed (0: random)")
	verbose := fs.Bool("v", false, "log every component at info level")
	exitAfter := fs.Bool("exit-when-done", false, "with -jobs: stop once every job is done")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *seed == 0 {
		*seed = mrand.Uint64()
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find corral's own executable (the simulated runner): %w", err)
	}
	if *dataDir, err = filepath.Abs(*dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	store, err := sqlite.Open(ctx, filepath.Join(*dataDir, "corral.db"), sqlite.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()
	controllerID, err := loadControllerID(*dataDir, "")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s (try -listen 127.0.0.1:0): %w", *listen, err)
	}
	ghLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The real GitHub adapter, as a GitHub App installed on the
	// organization: its one webhook URL, installation tokens, and
	// redelivery of failed webhooks.
	secret := corral.Secret(randomHex(16))
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	gh := standin.New(standin.Options{Seed: int64(*seed), Logger: log, RateLimit: devRateLimit})
	defer gh.Close()
	gh.AddRepo(devOrg, "app")
	gh.AddApp(devAppID, &key.PublicKey, fmt.Sprintf("http://%s/webhooks/app/%d", ln.Addr(), devAppID), secret)
	gh.Install(devAppID, devAppID*100, devOrg)
	gh.SetFaults(standin.Faults{DropRate: *drop, DuplicateRate: 0.05, ReorderRate: 0.05, MaxDelay: 50 * time.Millisecond})
	target := corral.Target{ID: "dev", TenantID: "default", Kind: corral.KindGitHub, Scope: corral.ScopeOrg,
		Path: devOrg, URL: "http://" + ghLn.Addr().String(), WebhookSecret: secret, Token: corral.Secret(keyPEM),
		RunnerPrefix: "corral-dev", Settings: map[string]string{"app_id": fmt.Sprint(devAppID)}}
	image, err := devRunnerImage(*dataDir, exe)
	if err != nil {
		return err
	}

	prov, err := newProcessProvider(*dataDir, "", 0, log)
	if err != nil {
		return err
	}
	a, err := app.New(app.Options{
		Store: store, Forges: forge.NewRegistry(nil, log), Providers: map[string]corral.Provider{"process": prov},
		Tenants: []corral.Tenant{{ID: "default", MaxInstances: 10}}, Targets: []corral.Target{target},
		Pools: devPools(image), MaxInstances: 10, ControllerID: controllerID,
		SchedulerInterval: time.Second, ReconcileInterval: 3 * time.Second, LeaseTTL: 6 * time.Second, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := a.Sync(ctx); err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ghSrv := &http.Server{Handler: gh, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { _ = ghSrv.Serve(ghLn) }()

	// A newcomer can call the API at once: a fresh admin token, printed.
	apiToken, tk, err := auth.New("corral dev", corral.ScopeAdmin, "", 0, time.Now())
	if err == nil {
		err = store.Update(ctx, func(tx corral.Tx) error { return tx.PutToken(ctx, tk) })
	}
	if err != nil {
		return fmt.Errorf("dev admin token: %w", err)
	}
	fmt.Fprintf(stdout, "corral dev: data in %s, HTTP on http://%s (API: /api/v1/jobs), stand-in GitHub on %s (organization %s)\n", *dataDir, ln.Addr(), target.URL, devOrg)
	fmt.Fprintf(stdout, "API admin token (shown once): %s\n  e.g. curl -H 'Authorization: Bearer %s' http://%s/api/v1/jobs\n", apiToken, apiToken, ln.Addr())
	fmt.Fprintf(stdout, "pools: onprem (priority 10, max 4, 1 warm), cloud-overflow (priority 20, max 4), arm (arm64, max 2); %.0f%% of webhooks dropped on purpose, some duplicated, reordered and delayed. Ctrl-C stops and cleans up.\n", *drop*100)

	runCtx, stopRun := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(runCtx) }()

	rep := newReporter(store, stdout)
	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		rnd := mrand.New(mrand.NewPCG(*seed, 7))
		for i := 0; *jobs == 0 || i < *jobs; i++ {
			labels := devJobs[rnd.IntN(len(devJobs))]
			dur := time.Duration(500+rnd.IntN(2500)) * time.Millisecond
			gh.QueueJob(devOrg+"/app", standin.JobSpec{Name: fmt.Sprintf("build-%d", i+1), Labels: labels, Duration: dur})
			wait := time.Duration(rnd.Float64() * 2 * float64(*every))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastSummary := time.Now()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			open := rep.poll(ctx)
			if time.Since(lastSummary) >= 5*time.Second {
				rep.summary(ctx)
				lastSummary = time.Now()
			}
			select {
			case <-genDone:
				if *exitAfter && *jobs > 0 && open == 0 {
					break loop
				}
			default:
			}
		}
	}
	fmt.Fprintln(stdout, "corral dev: stopping; deleting every runner it started")
	stopRun()
	wg.Wait()
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = a.DeleteAll(cctx)
	_ = srv.Shutdown(cctx)
	_ = ghSrv.Shutdown(cctx)
	rep.poll(cctx)
	rep.summary(cctx)
	if err != nil {
		return fmt.Errorf("clean stop: %w", err)
	}
	fmt.Fprintln(stdout, "corral dev: stopped cleanly, no runner left")
	return nil
}

// devOrg is the stand-in GitHub's organization that `corral dev` serves.
const devOrg = "acme"

// devAppID is the GitHub App `corral dev` uses (installation devAppID*100).
const devAppID = 17

// devRateLimit is the stand-in's primary rate limit per hour: higher than
// GitHub's 5,000 so that a demo left running for hours keeps going.
const devRateLimit = 100_000

// devRunnerImage makes the process provider's runner image: a directory
// with a run.sh, like actions/runner's, that runs corral's own simulated
// actions runner of the stand-in (`corral github-sim-runner`).
func devRunnerImage(dataDir, exe string) (string, error) {
	// Readable and executable by every user: runners run as unprivileged
	// per-instance users (the process provider's isolation).
	dir := filepath.Join(dataDir, "actions-runner")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	script := "#!/bin/sh\nexec '" + strings.ReplaceAll(exe, "'", `'\''`) + "' github-sim-runner \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("write the runner image: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, "run.sh"), 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// loadControllerID returns the configured id, or the one kept in the data
// directory, creating it on first start.
func loadControllerID(dataDir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	p := filepath.Join(dataDir, "controller-id")
	b, err := os.ReadFile(p)
	if err == nil && len(b) > 0 {
		return string(b), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := "corral-" + randomHex(6)
	if err := os.WriteFile(p, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("keep controller id: %w", err)
	}
	return id, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
