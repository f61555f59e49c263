package main

import (
	"errors"
	"strings"
	"testing"
)

// The pools of issue 18 item 4: arch-less jobs must not overflow to arm.
const archConfig = `targets:
  - {id: acme, kind: gitea, scope: org, path: acme, url: "http://127.0.0.1:9", webhook_secret: w, token: k}
pools:
  - {id: small-docker, labels: [corral], provider: process, flavor: 2cpu4gb20gb, max_flavor: 8cpu16gb100gb}
  - {id: arm, labels: [corral], provider: process, arch: arm64, flavor: 2cpu4gb20gb}
`

func TestRun_RouteArch(t *testing.T) {
	cfg := writeFile(t, archConfig)
	t.Run("arch-less job stays on x64", func(t *testing.T) {
		out, err := runCmd("route", "-config", cfg, "self-hosted", "corral")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "routes: small-docker (") || strings.Contains(out, "routes: arm") || strings.Contains(out, ", arm (") {
			t.Fatalf("output:\n%s", out)
		}
		if !strings.Contains(out, "arm           refuses  job names no arch; pool is arm64, the default is x64") {
			t.Fatalf("output does not say why arm was not chosen:\n%s", out)
		}
	})
	t.Run("too big for x64 is refused, not sent to arm", func(t *testing.T) {
		out, err := runCmd("route", "-config", cfg, "self-hosted", "corral", "64cpu")
		var ee exitError
		if !errors.As(err, &ee) || ee != 1 {
			t.Fatalf("err = %v, want exit status 1\n%s", err, out)
		}
		if !strings.Contains(out, "small-docker: asks 64 cpu, pool small-docker caps at 8") || !strings.Contains(out, "arm: job names no arch") {
			t.Fatalf("output:\n%s", out)
		}
	})
	t.Run("default_arch arm64", func(t *testing.T) {
		out, err := runCmd("route", "-config", writeFile(t, "default_arch: arm64\n"+archConfig), "corral")
		if err != nil || !strings.Contains(out, "routes: arm (") {
			t.Fatalf("err %v, output:\n%s", err, out)
		}
	})
}
