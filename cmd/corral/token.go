package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
)

const tokenUsage = `Usage:
  corral token create -config FILE (-admin | -scope SCOPE [-tenant T]) [-name N] [-expires D]
                      prints the new token's secret once (the store keeps only its hash)
  corral token list -config FILE [-o json]
  corral token revoke -config FILE ID

Scopes: admin, tenant-admin, tenant-read (these two need -tenant), metrics.
Expiry: a duration such as 720h or 90d; none: never expires.
`

// runToken manages API tokens directly in the store named by the config
// file: it works before the first token exists and while corral is down.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return exitError(2)
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage) }
	path := fs.String("config", os.Getenv("CORRAL_CONFIG"), "config file (env CORRAL_CONFIG)")
	var admin *bool
	var scope, tenant, name, expires, output *string
	switch sub {
	case "create":
		admin = fs.Bool("admin", false, "an admin token (same as -scope admin)")
		scope = fs.String("scope", "", "admin, tenant-admin, tenant-read or metrics")
		tenant = fs.String("tenant", "", "the tenant of a tenant scope")
		name = fs.String("name", "", "what the token is for (shown in token list)")
		expires = fs.String("expires", "", "lifetime, e.g. 720h or 90d (default: never expires)")
	case "list":
		output = fs.String("o", "table", "table or json")
	case "revoke":
	default:
		fmt.Fprintf(stderr, "corral token: unknown command %q\n\n%s", sub, tokenUsage)
		return exitError(2)
	}
	// Flags may come before or after the positional ID.
	if err := fs.Parse(args); err != nil {
		return exitError(2)
	}
	var rest []string
	for fs.NArg() > 0 {
		rest = append(rest, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return exitError(2)
		}
	}
	if *path == "" {
		fmt.Fprintf(stderr, "corral token %s: -config FILE is required (or set CORRAL_CONFIG)\n", sub)
		return exitError(2)
	}
	if (sub == "revoke") != (len(rest) == 1) || len(rest) > 1 {
		fmt.Fprintf(stderr, "corral token %s: unexpected arguments %q\n\n%s", sub, rest, tokenUsage)
		return exitError(2)
	}
	cfg, dom, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store, err := openStore(ctx, cfg, newLogger(cfg.Log, io.Discard))
	if err != nil {
		return err
	}
	defer store.Close()
	now := time.Now()
	switch sub {
	case "create":
		s := corral.TokenScope(*scope)
		if *admin {
			if s != "" && s != corral.ScopeAdmin {
				return fmt.Errorf("token create: -admin and -scope %s disagree: %w", s, corral.ErrBadInput)
			}
			s = corral.ScopeAdmin
		}
		if s == "" {
			return fmt.Errorf("token create: give -admin or -scope (admin, tenant-admin, tenant-read, metrics): %w", corral.ErrBadInput)
		}
		if *tenant != "" && !knownTenant(dom.Tenants, *tenant) {
			return fmt.Errorf("token create: tenant %q is not in %s: %w", *tenant, *path, corral.ErrBadInput)
		}
		life, err := parseLifetime(*expires)
		if err != nil {
			return err
		}
		secret, tk, err := auth.New(*name, s, *tenant, life, now)
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		if err := store.Update(ctx, func(tx corral.Tx) error { return tx.PutToken(ctx, tk) }); err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		fmt.Fprintln(stdout, secret)
		exp := "never expires"
		if !tk.ExpiresAt.IsZero() {
			exp = "expires " + tk.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "token %s created (scope %s%s, %s). Its secret is above: it is shown this once and cannot be recovered.\n",
			tk.ID, tk.Scope, map[bool]string{true: ", tenant " + tk.TenantID}[tk.TenantID != ""], exp)
		return nil
	case "list":
		var tks []corral.Token
		err := store.View(ctx, func(tx corral.ReadTx) error {
			var err error
			tks, err = tx.Tokens(ctx)
			return err
		})
		if err != nil {
			return err
		}
		return printTokens(stdout, tks, *output, now)
	default: // revoke
		err := store.Update(ctx, func(tx corral.Tx) error { return tx.RevokeToken(ctx, rest[0], now) })
		if errors.Is(err, corral.ErrNotFound) {
			return fmt.Errorf("token revoke: no token %q (see corral token list)", rest[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked\n", rest[0])
		return nil
	}
}

func knownTenant(ts []corral.Tenant, id string) bool {
	for _, t := range ts {
		if t.ID == id {
			return true
		}
	}
	return false
}

// parseLifetime reads a Go duration or a number of days ("90d").
func parseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("token create: -expires %q: want a positive duration such as 720h or 90d: %w", s, corral.ErrBadInput)
}

func printTokens(w io.Writer, tks []corral.Token, output string, now time.Time) error {
	views := make([]app.TokenView, 0, len(tks))
	for _, tk := range tks {
		views = append(views, app.ViewToken(tk))
	}
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"tokens": views})
	case "table", "":
	default:
		return fmt.Errorf("token list: -o %q: want table or json: %w", output, corral.ErrBadInput)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tTENANT\tCREATED\tEXPIRES\tLAST USED\tSTATE")
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, tk := range tks {
		state := "active"
		switch {
		case tk.Revoked():
			state = "revoked"
		case tk.Expired(now):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tk.ID, orDash(tk.Name), tk.Scope, orDash(tk.TenantID),
			stamp(tk.CreatedAt), stamp(tk.ExpiresAt), stamp(tk.LastUsed), state)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
