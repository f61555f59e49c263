package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

const applyUsage = `Usage:
  corral diff -f FILE [-store DSN]    print what apply would change in the store's catalog
  corral apply -f FILE [-store DSN]   make the store's catalog (tenants, targets, pools) match FILE

FILE is a corral config file. The store is FILE's own (its store key and
data_dir) unless -store names another (sqlite:PATH or a postgres:// DSN).
apply writes every change in one transaction and bumps the catalog version,
so every running replica picks it up within a poll interval; a second apply
of the same file writes nothing. A broken file writes nothing.
`

// runApply implements corral diff and corral apply (cmd is which).
func runApply(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, applyUsage) }
	file := fs.String("f", "", "the config file to apply")
	dsn := fs.String("store", "", "the store to compare with (default: the file's own)")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, applyUsage)
		return exitError(2)
	}
	// Any error in the file stops here, with its file:line, before the
	// store is opened.
	cfg, dom, err := loadConfig(*file, stderr)
	if err != nil {
		return err
	}
	if _, err := route.New(dom.Pools, route.Options{Sizes: dom.Sizes, DefaultArch: dom.DefaultArch}); err != nil {
		return fmt.Errorf("%s: pools: %w", *file, err)
	}
	switch {
	case *dsn == "":
	case len(*dsn) > len("sqlite:") && (*dsn)[:len("sqlite:")] == "sqlite:":
		p := (*dsn)[len("sqlite:"):]
		cfg.Store, cfg.DataDir = "sqlite", filepath.Dir(p)
		if filepath.Base(p) != "corral.db" {
			return fmt.Errorf("-store sqlite:PATH: the file must be named corral.db (corral's data dir layout), got %s", p)
		}
	default:
		cfg.Store = corral.Secret(*dsn)
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := openStore(ctx, cfg, newLogger(cfg.Log, io.Discard))
	if err != nil {
		return err
	}
	defer st.Close()
	d := catalog.Desired{Tenants: dom.Tenants, Targets: dom.Targets, Pools: dom.Pools}
	lines, err := catalog.Diff(ctx, st, d)
	if err != nil {
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	if len(lines) == 0 {
		fmt.Fprintln(stdout, "no changes")
		return nil
	}
	if cmd == "diff" {
		return nil
	}
	// The same Apply that serve runs at start and on SIGHUP.
	c := catalog.New(catalog.Config{Store: st, Route: route.Options{Sizes: dom.Sizes, DefaultArch: dom.DefaultArch}})
	ch, err := c.Apply(ctx, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied: %d added, %d changed, %d removed; catalog version %d\n",
		len(ch.Added), len(ch.Changed), len(ch.Removed), c.Current().Version)
	return nil
}
