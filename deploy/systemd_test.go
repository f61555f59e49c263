package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "systemd/corral.service"

// unitKeys reads a systemd unit's key=value lines (all sections).
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is not key=value", path, line)
		}
		keys[k] = append(keys[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSystemdUnit_Hardening checks the keys the unit promises (docs/packages.md).
func TestSystemdUnit_Hardening(t *testing.T) {
	keys := unitKeys(t, unitFile)
	want := map[string]string{
		"ExecStart":               "/usr/local/bin/corral serve -config /etc/corral/corral.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"DynamicUser":             "yes",
		"StateDirectory":          "corral",
		"Environment":             "CORRAL_DATA_DIR=/var/lib/corral",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"SystemCallFilter":        "@system-service",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
	}
	for k, v := range want {
		got, ok := keys[k]
		if !ok || len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s=%q, want %q", unitFile, k, got, v)
		}
	}
}

// TestSystemdUnit_Verify runs systemd-analyze verify on the unit (ExecStart
// pointed at an existing binary) and fails on any complaint: verify exits 0
// on a bad value and only prints it.
func TestSystemdUnit_Verify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze missing (Debian package systemd)")
		}
		t.Skip("systemd-analyze missing (Debian package systemd)")
	}
	body, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "corral.service")
	text := strings.ReplaceAll(string(body), "/usr/local/bin/corral", self)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
	// The check can fail: a bad value is reported.
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(bad, []byte(strings.Replace(text, "ProtectSystem=strict", "ProtectSystem=bogus", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("systemd-analyze", "verify", bad).CombinedOutput()
	if !strings.Contains(string(out), "bogus") {
		t.Fatalf("systemd-analyze verify did not report ProtectSystem=bogus: %s", out)
	}
}
