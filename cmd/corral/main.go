// Command corral autoscales ephemeral self-hosted CI runners: one fresh
// runner per job, on the team's own capacity, destroyed after the job.
package main

import (
	"context"
	"errors"
	"flag"
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
  corral jobs|pools|tenants|targets|tokens|instances|usage|rightsizing|analytics [-server URL] [-token T] [-o json]
                                   the API for people and scripts (corral jobs -h says more)
  corral completion bash|zsh|fish  print a shell completion script
  corral version                   print the version

Run 'corral COMMAND -h' for a command's flags.
`

// command is one line of corral's command table: run dispatches on it,
// the usage lists it, and corral completion derives its scripts from it
// (names, the words that may follow, and the flags of each, read from the
// command's own flag set), so that a new command is completed as soon as
// it is in the table.
type command struct {
	// names: the command and its aliases (diff and apply share a line).
	names []string
	// subs are the words that may follow the name; a word with a space
	// ("app create") is a path of words.
	subs []string
	// subFlags: each sub has its own flag set (token create|list|revoke);
	// otherwise the command has one flag set for all its subs.
	subFlags bool
	// hidden commands are internal (runner helpers, shims): neither in the
	// usage nor completed.
	hidden bool
	run    func(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error
}

// commands is corral's command table.
func commands() []command {
	return []command{
		{names: []string{"dev"}, run: drop(runDev)},
		{names: []string{"serve"}, run: drop(runServe)},
		{names: []string{"route"}, run: drop(runRoute)},
		{names: []string{"doctor"}, run: drop(runDoctor)},
		{names: []string{"diff", "apply"}, run: runApply},
		{names: []string{"token"}, subs: []string{"create", "list", "revoke"}, subFlags: true, run: drop(runToken)},
		{names: []string{"secrets"}, subs: []string{"rotate"}, subFlags: true, run: drop(runSecrets)},
		{names: []string{"github"}, subs: []string{"app create"}, subFlags: true, run: drop(runGitHub)},
		{names: []string{"jobs"}, subs: []string{"retry"}, run: runClient},
		{names: []string{"pools"}, subs: []string{"drain", "pause", "resume"}, run: runClient},
		{names: []string{"tenants"}, run: runClient},
		{names: []string{"targets"}, subs: []string{"pause", "resume"}, run: runClient},
		{names: []string{"tokens"}, subs: []string{"revoke"}, run: runClient},
		{names: []string{"instances"}, subs: []string{"stop"}, run: runClient},
		{names: []string{"usage", "rightsizing", "analytics"}, run: runClient},
		{names: []string{"completion"}, subs: []string{"bash", "zsh", "fish"}, run: func(_ context.Context, _ string, args []string, stdout, stderr io.Writer) error {
			return runCompletion(args, stdout, stderr)
		}},
		{names: []string{"version", "--version", "-version"}, run: func(_ context.Context, _ string, _ []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "corral", version())
			return nil
		}},
		{names: []string{"help", "-h", "--help"}, run: func(_ context.Context, _ string, _ []string, stdout, _ io.Writer) error {
			fmt.Fprint(stdout, usage)
			return nil
		}},
		{names: []string{"github-sim-runner"}, hidden: true, run: drop(runGitHubSimRunner)},
		{names: []string{"forgejo-sim-runner"}, hidden: true, run: func(ctx context.Context, _ string, args []string, stdout, _ io.Writer) error {
			return runForgejoSimRunner(ctx, args, stdout)
		}},
		{names: []string{"vm-relay"}, hidden: true, run: func(_ context.Context, _ string, args []string, _, _ io.Writer) error { return runVMRelay(args) }},
		{names: []string{"shim"}, hidden: true, run: func(ctx context.Context, _ string, args []string, _, _ io.Writer) error { return runShim(ctx, args) }},
	}
}

// drop adapts a command that does not need its own name.
func drop(f func(context.Context, []string, io.Writer, io.Writer) error) func(context.Context, string, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, _ string, args []string, stdout, stderr io.Writer) error {
		return f(ctx, args, stdout, stderr)
	}
}

// flagSetHook, when set, sees every flag set a command makes (corral
// completion reads the flags from them).
var flagSetHook func(*flag.FlagSet)

// newFlagSet is flag.NewFlagSet (ContinueOnError) for corral's commands.
func newFlagSet(name string, h flag.ErrorHandling) *flag.FlagSet {
	fs := flag.NewFlagSet(name, h)
	if flagSetHook != nil {
		flagSetHook(fs)
	}
	return fs
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	for _, c := range commands() {
		for _, n := range c.names {
			if n == args[0] {
				return c.run(ctx, n, args[1:], stdout, stderr)
			}
		}
	}
	fmt.Fprintf(stderr, "corral: unknown command %q\n\n%s", args[0], usage)
	return exitError(2)
}
