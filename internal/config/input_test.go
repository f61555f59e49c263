package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfig_ValidateInput(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error; "" = valid
	}{
		{"negative priority", "pools: [{id: p, labels: [x], provider: process, priority: -3}]", ":6: pools[0].priority: must not be negative"},
		{"default arch", "default_arch: aarch64\npools: [{id: p, labels: [x], provider: process, arch: arm64}]", ""},
		{"default arch unknown", "default_arch: sparc", `:6: default_arch: unknown arch "sparc"`},
		{"accept any arch", "pools: [{id: p, labels: [x], provider: process, arch: arm64, accept_any_arch: true}]", ""},
		{"allowed hosts", "allowed_hosts: [corral.example.com, 'localhost']", ""},
		{"allowed host with a port", "allowed_hosts: ['corral.example.com:8080']", `allowed_hosts[0]: want a host name without scheme, port or path, got "corral.example.com:8080"`},
		{"allowed host url", "allowed_hosts: ['https://corral']", `allowed_hosts[0]: want a host name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := base + tt.yaml + "\n"
			_, err := Parse("c.yaml", []byte(doc), env(nil))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v\n%s", err, doc)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want %q\n%s", err, tt.want, doc)
			}
		})
	}
}

func TestConfig_DomainArch(t *testing.T) {
	doc := base + "default_arch: aarch64\nallowed_hosts: [Corral.Example.com]\npools:\n  - {id: p, labels: [x], provider: process, arch: x64, accept_any_arch: true}\n"
	c, err := Parse("c.yaml", []byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if d.DefaultArch != "arm64" || !d.Pools[0].AcceptAnyArch {
		t.Fatalf("default arch %q, accept any arch %v", d.DefaultArch, d.Pools[0].AcceptAnyArch)
	}
	if len(c.AllowedHosts) != 1 || c.AllowedHosts[0] != "Corral.Example.com" {
		t.Fatalf("allowed hosts %v", c.AllowedHosts)
	}
}

func TestParse_SecretFileCapped(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", MaxSecretFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", big} {
		doc := base + "targets:\n  - {id: g, kind: gitea, scope: org, path: acme, url: 'https://g', token: env:S, webhook_secret: 'file:" + path + "'}\n"
		doc = strings.Replace(doc, "targets:\n  - {id: t,", "  - {id: t,", 1)
		doc = strings.Replace(base, "targets:\n", "targets:\n  - {id: g, kind: gitea, scope: org, path: acme, url: 'https://g', token: env:S, webhook_secret: 'file:"+path+"'}\n", 1)
		_, err := Parse(filepath.Join(dir, "c.yaml"), []byte(doc), env(map[string]string{"S": "x"}))
		if err == nil || !strings.Contains(err.Error(), "targets[0].webhook_secret: secret file "+path+" is larger than 64 KiB") {
			t.Fatalf("%s: err %v", path, err)
		}
	}
}

func TestParse_LiteralStoreWarns(t *testing.T) {
	tests := []struct {
		store string
		warn  bool
	}{
		{"postgres://corral:hunter2@db/corral", true},
		{"postgres://db/corral?sslmode=disable&password=hunter2", true},
		{"postgres://corral@db/corral", false},
		{"sqlite", false},
		{"env:DSN", false},
	}
	for _, tt := range tests {
		c, err := Parse("c.yaml", []byte(base+"store: '"+tt.store+"'\n"), env(map[string]string{"DSN": "postgres://u:p@db/x"}))
		if err != nil {
			t.Fatalf("%s: %v", tt.store, err)
		}
		got := strings.Join(c.Warnings, "\n")
		if tt.warn != strings.Contains(got, "store: a literal secret") {
			t.Errorf("store %q: warnings %q, want a literal-secret warning: %v", tt.store, got, tt.warn)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("warning shows the password: %s", got)
		}
	}
}
