// Command corral autoscales ephemeral self-hosted CI runners: one fresh
// runner per job, on the team's own capacity, destroyed after the job.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "corral:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code through run without printing anything.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `corral: one fresh CI runner per job, destroyed after it.

Usage:
  corral dev [flags]               run with embedded defaults: SQLite, a stand-in GitHub, real runner processes
  corral serve -config FILE        run from a config file (environment overrides: see the README)
  corral route -config FILE LABEL...  print the pool and flavor a job with these runs-on labels gets, and why
  corral doctor -config FILE [-o json]
                                   check the setup: config, store, providers, credentials, webhooks, clock, runner cache
  corral diff|apply -f FILE [-store DSN]
                                   show / make the store's tenants, targets and pools match FILE
  corral token create|list|revoke -config FILE
                                   API tokens, directly in the store (the secret is printed once)
  corral secrets rotate -config FILE -old-key FILE -new-key FILE
                                   re-seal the store's sealed secrets (API-written credentials) under a new key
  corral github app create -name NAME -webhook-url URL [-org ORG]
                                   create corral's GitHub App in one step (its secrets are sealed in the data dir)
  corral jobs|pools|targets|tokens|instances|usage|rightsizing|analytics [-server URL] [-token T] [-o json]
                                   the API for people and scripts (corral jobs -h says more)
  corral version                   print the version

Run 'corral COMMAND -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "route":
		return runRoute(ctx, args[1:], stdout, stderr)
	case "doctor":
		return runDoctor(ctx, args[1:], stdout, stderr)
	case "diff", "apply":
		return runApply(ctx, args[0], args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "secrets":
		return runSecrets(ctx, args[1:], stdout, stderr)
	case "github":
		return runGitHub(ctx, args[1:], stdout, stderr)
	case "jobs", "pools", "targets", "tokens", "instances", "usage", "rightsizing", "analytics":
		return runClient(ctx, args[0], args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "corral", version())
		return nil
	case "github-sim-runner":
		return runGitHubSimRunner(ctx, args[1:], stdout, stderr)
	case "forgejo-sim-runner":
		return runForgejoSimRunner(ctx, args[1:], stdout)
	case "vm-relay":
		return runVMRelay(args[1:])
	case "shim":
		return runShim(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "corral: unknown command %q\n\n%s", args[0], usage)
		return exitError(2)
	}
}
