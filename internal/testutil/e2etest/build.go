// Package e2etest is the one harness of corral's end-to-end tests (test/e2e,
// test/dockere2e, test/gitea, and the VM, Kubernetes and plugin suites to
// come): it builds the corral binary once per test binary, writes corral
// configs from one template (config.go: the only place that knows the
// config file's shape), starts `corral serve` processes, waits for their
// HTTP endpoint, stops them with SIGTERM or SIGKILL, restarts them, and
// shows their log when a test fails. github.go runs the stand-in GitHub
// for them.
//
// It lives under internal/testutil (not test/) because every suite imports
// it: a package of _test.go files cannot be imported.
package e2etest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build options.
type BuildOptions struct {
	// Static builds with CGO_ENABLED=0 and -trimpath: the binary then runs
	// inside a FROM-scratch container too.
	Static bool
	// Overlay is a `go build -overlay` file (to try an unmerged wiring).
	Overlay string
}

// Build compiles cmd/corral into dir and returns the binary's path.
func Build(dir string, opt BuildOptions) (string, error) {
	bin := filepath.Join(dir, "corral")
	args := []string{"build", "-o", bin}
	if opt.Static {
		args = append(args, "-trimpath")
	}
	if opt.Overlay != "" {
		args = append(args, "-overlay", opt.Overlay)
	}
	cmd := exec.Command("go", append(args, "github.com/corral-ci/corral/cmd/corral")...)
	cmd.Env = os.Environ()
	if opt.Static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build corral: %w", err)
	}
	return bin, nil
}

// BuildCommand compiles the command package pkg (e.g.
// "github.com/corral-ci/corral/cmd/corral-plugin-process") into dir/name
// and returns the binary's path.
func BuildCommand(dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return bin, nil
}

// Main builds corral into a temporary directory, sets *bin to its path,
// runs next (usually m.Run or pgtest.Main(m)), and removes the directory.
// It returns the exit code for os.Exit.
func Main(bin *string, opt BuildOptions, next func() int) int {
	dir, err := os.MkdirTemp("", "corral-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = Build(dir, opt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return next()
}
