package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/corral-ci/corral/internal/doctor"
)

// runDoctor checks a setup and prints one line per check (or JSON); it
// exits 1 when a check fails. It only reads: no migration, no instance,
// no runner, no redelivery, and no secret in its output.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("CORRAL_CONFIG"), "config file (env CORRAL_CONFIG)")
	format := fs.String("o", "text", "output: text (one line per check) or json")
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	if *path == "" || (*format != "text" && *format != "json") {
		fmt.Fprintln(stderr, "corral doctor: -config FILE is required (or set CORRAL_CONFIG); -o is text or json")
		return exitError(2)
	}
	rs := doctorChecks(ctx, *path)
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			OK     bool            `json:"ok"`
			Checks []doctor.Result `json:"checks"`
		}{!doctor.Failed(rs), rs}); err != nil {
			return err
		}
	} else if err := doctor.Print(stdout, rs); err != nil {
		return err
	}
	if doctor.Failed(rs) {
		return exitError(1)
	}
	return nil
}

func doctorChecks(ctx context.Context, path string) []doctor.Result {
	res, cfg, dom := doctor.Config(path, os.Getenv)
	rs := []doctor.Result{res}
	if cfg == nil {
		return rs
	}
	if abs, err := filepath.Abs(cfg.DataDir); err == nil {
		cfg.DataDir = abs
	}
	rs = append(rs, doctor.Store(ctx, cfg))
	log := slog.New(slog.DiscardHandler)
	env, err := providerEnv(cfg, log)
	if err != nil {
		rs = append(rs, doctor.Result{Check: "providers", Status: doctor.Fail, Message: err.Error()})
	} else {
		id := doctorControllerID(cfg.DataDir, cfg.ControllerID)
		for _, def := range dom.Providers {
			rs = append(rs, doctor.Provider(ctx, def, env, id))
		}
	}
	for _, t := range dom.Targets {
		rs = append(rs, doctor.Target(ctx, t, doctor.ForgeOptions{})...)
	}
	return append(rs, doctor.Runners(cfg))
}

// doctorControllerID is the controller id corral serve uses, read without
// creating it (doctor writes nothing).
func doctorControllerID(dataDir, configured string) string {
	if configured != "" {
		return configured
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "controller-id")); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	return "corral-doctor"
}
