package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const routeConfig = `targets:
  - {id: acme, kind: github, scope: org, path: acme, url: "http://127.0.0.1:9", webhook_secret: w, token: k}
pools:
  - {id: onprem, labels: [corral], provider: process, flavor: 2cpu4gb20gb, max_flavor: 8cpu16gb100gb, priority: 10, max_instances: 8}
  - {id: cloud, labels: [corral], provider: process, flavor: 2cpu4gb20gb, max_flavor: 16cpu64gb200gb, priority: 20}
`

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), args, &out, &out)
	return out.String(), err
}

func TestRun_Route(t *testing.T) {
	cfg := writeFile(t, routeConfig)
	t.Run("accepted, best pool first", func(t *testing.T) {
		out, err := runCmd("route", "-config", cfg, "self-hosted", "corral", "4cpu8gb")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "routes: onprem (4 cpu, 8 GiB memory") {
			t.Fatalf("output:\n%s", out)
		}
	})
	t.Run("refused with the reason and exit 1", func(t *testing.T) {
		out, err := runCmd("route", "-config", cfg, "corral", "64cpu")
		var ee exitError
		if !errors.As(err, &ee) || ee != 1 {
			t.Fatalf("err = %v, want exit status 1", err)
		}
		if !strings.Contains(out, "asks 64 cpu, pool onprem caps at 8") {
			t.Fatalf("output:\n%s", out)
		}
	})
}

func TestRun_ServeCheck(t *testing.T) {
	out, err := runCmd("serve", "-check", "-config", writeFile(t, routeConfig))
	if err != nil || !strings.Contains(out, "OK (1 targets, 2 pools)") {
		t.Fatalf("%v: %s", err, out)
	}
	broken := strings.Replace(routeConfig, "max_instances: 8}", "max_instances: many}", 1) + "bogus: 1\n"
	p := writeFile(t, broken)
	_, err = runCmd("serve", "-check", "-config", p)
	if err == nil {
		t.Fatal("a broken config passed the check")
	}
	for _, want := range []string{p + ":4:", "max_instances", p + ":6: bogus"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestRun_Usage(t *testing.T) {
	if _, err := runCmd("nonsense"); !errors.Is(err, exitError(2)) {
		t.Fatalf("unknown command: %v, want exit status 2", err)
	}
	out, err := runCmd("version")
	if err != nil || !strings.HasPrefix(out, "corral ") {
		t.Fatalf("version: %q %v", out, err)
	}
}
