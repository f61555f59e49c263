package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/corral-ci/corral/internal/route"
)

// runRoute prints the pool and flavor a job with the given runs-on labels
// gets, and why, using the same config as serve. It exits 1 when no pool
// accepts the job, so it can guard a workflow change in CI.
func runRoute(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("route", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("CORRAL_CONFIG"), "config file (env CORRAL_CONFIG)")
	targetID := fs.String("target", "", "the target the job comes from (default: the first target)")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *path == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: corral route -config FILE [-target ID] LABEL...")
		return exitError(2)
	}
	_, dom, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	m, err := route.New(dom.Pools, route.Options{Sizes: dom.Sizes, DefaultArch: dom.DefaultArch})
	if err != nil {
		return err
	}
	tenant, target := "", *targetID
	for _, t := range dom.Targets {
		if target == "" || t.ID == target {
			tenant, target = t.TenantID, t.ID
			break
		}
	}
	if tenant == "" {
		return fmt.Errorf("no target %q in %s", *targetID, *path)
	}
	d := m.Route(tenant, target, fs.Args())
	fmt.Fprint(stdout, d.Explain())
	if len(d.Routes) == 0 {
		return exitError(1)
	}
	return nil
}
