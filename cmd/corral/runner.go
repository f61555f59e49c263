package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/process"
)

// runGitHubSimRunner is the simulated actions runner of the stand-in
// GitHub (corral dev, tests): like `run.sh --jitconfig`, it reads its JIT config from
// ACTIONS_RUNNER_INPUT_JITCONFIG (or --jitconfig), takes one job and exits.
func runGitHubSimRunner(ctx context.Context, args []string, stdout, _ io.Writer) error {
	return standin.RunRunnerArgs(ctx, args, os.Getenv, stdout)
}

// runShim wraps a runner process: it enforces the instance's maximum
// lifetime itself and reaps the runner's children.
func runShim(ctx context.Context, args []string) error {
	err := process.RunShim(ctx, args)
	var ee *process.ExitError
	if errors.As(err, &ee) {
		return exitError(ee.ExitCode())
	}
	return err
}
