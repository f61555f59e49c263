package pluginexec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRun: the answer, the exit, the stderr tail, the environment given
// and nothing else, the timeout that kills the whole group, the cap.
func TestRun(t *testing.T) {
	t.Setenv("CORRAL_SECRET_OF_THE_PARENT", "leak")
	ctx := t.Context()
	res, err := Run(ctx, Cmd{Path: script(t, `cat; echo "err line" >&2; env`), Env: Environ("A=1"), Stdin: []byte("in\n"),
		Timeout: 5 * time.Second, MaxOutput: 1 << 20})
	if err != nil || res.Exit != nil || !strings.HasPrefix(string(res.Stdout), "in\n") || res.Stderr != "err line" {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if !strings.Contains(string(res.Stdout), "A=1\n") || strings.Contains(string(res.Stdout), "leak") {
		t.Errorf("environment:\n%s", res.Stdout)
	}

	res, err = Run(ctx, Cmd{Path: script(t, `echo bad >&2; exit 7`), Env: Environ(), Timeout: 5 * time.Second, MaxOutput: 100})
	if err != nil || res.ExitCode() != 7 || res.Died() != "exit status 7" || res.Stderr != "bad" {
		t.Errorf("exit 7: %+v %q, %v", res, res.Died(), err)
	}

	marker := "pluginexec-child-" + filepath.Base(t.TempDir())
	start := time.Now()
	res, err = Run(ctx, Cmd{Path: script(t, `sh -c 'sleep 300; true' `+marker+` & echo waiting >&2; sleep 300`), Env: Environ(),
		Timeout: 500 * time.Millisecond, MaxOutput: 100})
	if !errors.Is(err, corral.ErrUnavailable) || !strings.Contains(err.Error(), "no answer within 500ms") || res.Stderr != "waiting" {
		t.Errorf("hang: %+v, %v", res, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("hang took %v", took)
	}
	if alive(marker) {
		t.Errorf("the hung executable's child outlived the timeout")
	}

	_, err = Run(ctx, Cmd{Path: script(t, `yes`), Env: Environ(), Timeout: 5 * time.Second, MaxOutput: 4096})
	if !errors.Is(err, corral.ErrUnavailable) || !strings.Contains(err.Error(), "larger than max_output_bytes 4096") {
		t.Errorf("over the cap: %v", err)
	}

	_, err = Run(ctx, Cmd{Path: "/no/such/provider", Env: Environ(), Timeout: time.Second, MaxOutput: 100})
	if !errors.Is(err, corral.ErrUnavailable) || !strings.Contains(err.Error(), "start") {
		t.Errorf("missing executable: %v", err)
	}
}

// alive says whether a live process has marker in its command line.
func alive(marker string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), marker) {
			continue
		}
		st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] != "Z" {
			return true
		}
	}
	return false
}
