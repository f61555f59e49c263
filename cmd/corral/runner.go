package main

import (
	"context"
	"errors"
	"github.com/corral-ci/corral/internal/forge/gitea/forgejostandin"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/provider/qemu"
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

// newProcessProvider makes the process provider: instances under
// instancesDir (empty: dataDir/instances), corral's data directory hidden
// from runners. It probes and logs the isolation the host allows (a WARN
// for each part it cannot give).
func newProcessProvider(dataDir, instancesDir string, diskMB int, log *slog.Logger) (*process.Provider, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if dataDir, err = filepath.Abs(dataDir); err != nil {
		return nil, err
	}
	if instancesDir == "" {
		instancesDir = filepath.Join(dataDir, "instances")
	}
	p, err := process.New(process.Config{Dir: instancesDir, Shim: []string{exe, "shim"}, Hide: []string{dataDir},
		Keep: []string{exe}, DiskMB: diskMB, Logger: log})
	if err != nil {
		return nil, err
	}
	summary, degraded := p.Isolation()
	log.Info("process provider isolation", "summary", summary)
	for _, d := range degraded {
		log.Warn("process provider isolation degraded", "reason", d)
	}
	return p, nil
}

// runVMRelay is what QEMU runs for each connection a VM guest opens to a
// forward of the qemu provider: it relays stdin and stdout to the address.
func runVMRelay(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: corral vm-relay HOST:PORT")
	}
	if code := qemu.RunRelay(args[0]); code != 0 {
		return exitError(code)
	}
	return nil
}

// runForgejoSimRunner is the simulated `forgejo-runner one-job` of the
// Forgejo stand-in (tests of one-job mode).
func runForgejoSimRunner(ctx context.Context, args []string, stdout io.Writer) error {
	return forgejostandin.RunOneJob(ctx, args, stdout)
}
