package doctor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/runners"
	"github.com/corral-ci/corral/internal/store"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// Config loads and validates the config file. On failure the result names
// file, line and reason (config's own errors) and cfg is nil.
func Config(path string, getenv func(string) string) (Result, *config.Config, config.Domain) {
	const check = "config"
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return fail(check, "correct the line named above", "%v", err), nil, config.Domain{}
	}
	dom, err := cfg.Domain()
	if err != nil {
		return fail(check, "correct the lines named above", "%v", err), nil, config.Domain{}
	}
	if len(cfg.Warnings) > 0 {
		return warn(check, "see the warnings", "%s: %d targets, %d pools; %s", path, len(dom.Targets), len(dom.Pools),
			strings.Join(cfg.Warnings, "; ")), cfg, dom
	}
	return ok(check, "%s: %d targets, %d pools, %d providers", path, len(dom.Targets), len(dom.Pools), len(dom.Providers)), cfg, dom
}

// Store checks that the store answers and that every migration of this
// build is applied. It opens the store read-only and never migrates.
func Store(ctx context.Context, cfg *config.Config) Result {
	const check = "store"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dsn := cfg.Store.Reveal()
	var (
		want    []store.Migration
		applied map[int]bool
		where   string
		err     error
	)
	switch {
	case dsn == "" || dsn == "sqlite":
		path := filepath.Join(cfg.DataDir, "corral.db")
		where = path
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return warn(check, "corral serve creates it at its first start", "SQLite %s does not exist yet", path)
		}
		want, err = sqlite.Migrations()
		if err == nil {
			applied, err = sqliteApplied(ctx, path)
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		where = "PostgreSQL"
		want, err = postgres.Migrations()
		if err == nil {
			applied, err = postgresApplied(ctx, dsn)
		}
	default:
		return fail(check, `set store to "sqlite" or a postgres:// DSN`, "store is neither sqlite nor a postgres:// DSN")
	}
	if err != nil {
		return fail(check, "check that the database runs, is reachable from here and that the DSN's user may read it",
			"%s: %s", where, scrub(err.Error(), dsn))
	}
	var missing []string
	for _, m := range want {
		if !applied[m.Version] {
			missing = append(missing, fmt.Sprintf("%04d_%s", m.Version, m.Name))
		}
	}
	if len(missing) > 0 {
		return warn(check, "corral serve applies them at its next start (back the store up first)",
			"%s answers; %d of %d migrations not applied: %s", where, len(missing), len(want), strings.Join(missing, ", "))
	}
	return ok(check, "%s answers; all %d migrations applied", where, len(want))
}

func sqliteApplied(ctx context.Context, path string) (map[int]bool, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	return scanVersions(rows.Next, rows.Scan, rows.Err, rows.Close)
}

func postgresApplied(ctx context.Context, dsn string) (map[int]bool, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return map[int]bool{}, nil
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	return scanVersions(rows.Next, func(dst ...any) error { return rows.Scan(dst...) }, rows.Err, func() error { rows.Close(); return nil })
}

func scanVersions(next func() bool, scan func(...any) error, errf func() error, closef func() error) (map[int]bool, error) {
	defer closef()
	out := map[int]bool{}
	for next() {
		var v int
		if err := scan(&v); err != nil {
			return nil, err
		}
		out[v] = true
	}
	return out, errf()
}

// healthChecker is implemented by providers that can say whether they can
// start instances now (the process provider).
type healthChecker interface {
	Health(context.Context) error
}

// Provider opens a provider instance and asks it whether it can work: a
// listing of corral's instances (which needs the engine or host to
// answer: FAIL otherwise), its Health where it has one (the process
// provider's degraded isolation: WARN) and its Capacity where it has one
// (the Docker provider's places taken per endpoint; an endpoint down while
// others answer: WARN). It starts nothing.
func Provider(ctx context.Context, def corral.ProviderDef, env provider.Env, controllerID string) Result {
	check := "provider " + def.Name
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := provider.Open(ctx, def, env)
	if err != nil {
		return fail(check, "correct the provider's settings", "%s: %v", def.Type, err)
	}
	if c, ok := p.(interface{ Close() }); ok {
		defer c.Close()
	}
	var notes []string
	if h, ok := p.(healthChecker); ok {
		if err := h.Health(ctx); err != nil {
			notes = append(notes, err.Error())
		}
	}
	insts, err := p.List(ctx, controllerID)
	if err != nil {
		return fail(check, hostFix(def.Type), "%s: cannot list instances: %v", def.Type, err)
	}
	running := 0
	for _, in := range insts {
		if in.Running {
			running++
		}
	}
	msg := fmt.Sprintf("%s answers; %d of corral's instances on it (%d running)", def.Type, len(insts), running)
	if c, ok := p.(capacityReporter); ok {
		summary, err := c.Capacity(ctx)
		msg += "; " + summary
		if err != nil {
			notes = append(notes, err.Error())
		}
	}
	if len(notes) > 0 {
		return warn(check, "see the reason: corral starts runners here, with less "+
			"isolation or on fewer engines than configured", "%s; %s", msg, strings.Join(notes, "; "))
	}
	return ok(check, "%s", msg)
}

// capacityReporter is implemented by providers that can say how much room
// they have (the Docker provider, per endpoint).
type capacityReporter interface {
	Capacity(context.Context) (string, error)
}

func hostFix(typ string) string {
	if typ == "docker" {
		return "start the Docker engine or correct endpoints[].host (and its TLS files); the user running corral must be allowed to use the socket"
	}
	return "make the provider's host reachable from corral"
}

// Runners checks the runner-release cache: for each kind the config keeps,
// a release for linux/x64 is unpacked and accepted. Nothing is downloaded.
func Runners(cfg *config.Config) Result {
	const check = "runner cache"
	rc := cfg.Runners
	if len(rc.Kinds) == 0 {
		return ok(check, "not used (no runners.kinds): pools bring their own runner")
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
			return fail(check, "correct runners.kinds", "%v", err)
		}
		sources[kind] = src
	}
	dir := filepath.Join(cfg.DataDir, "runners")
	cache, err := runners.New(runners.Config{Dir: dir, Sources: sources, Keep: rc.Keep, Interval: rc.RefreshInterval, BaseURL: rc.PublicURL})
	if err != nil {
		return fail(check, "correct the runners section", "%v", err)
	}
	var have, missing []string
	for _, k := range rc.Kinds {
		rel, _, err := cache.Current(runners.Kind(k), "linux", "x64")
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		have = append(have, k+" "+rel.Version)
	}
	if len(missing) > 0 {
		return warn(check, "corral serve downloads releases at start and every refresh_interval; check that it reaches the releases (or runners.mirror_url)",
			"in %s: %s", dir, strings.Join(missing, "; "))
	}
	return ok(check, "in %s: %s", dir, strings.Join(have, ", "))
}
