package e2etest

import (
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/config"
	_ "github.com/corral-ci/corral/internal/provider/builtin" // the provider types the config names
)

// TestConfig_Render: every shape the suites write is a config that corral
// accepts, so a change of the config file's shape fails here first, not in
// the middle of an end-to-end run.
func TestConfig_Render(t *testing.T) {
	c := Config{Listen: "127.0.0.1:1", DataDir: "/tmp/e2etest-data",
		Targets: []Target{
			{ID: "gh", Kind: "github", Scope: "org", Path: "e2e", URL: "http://127.0.0.1:2", SecretEnv: "S", Token: "env:T", RunnerPrefix: "corral-gh"},
			{ID: "app", Kind: "github", Scope: "org", Path: "beta", URL: "http://127.0.0.1:2", SecretEnv: "S", Token: "env:T", RunnerPrefix: "corral-app", AppID: 7},
			{ID: "gt", Kind: "gitea", Scope: "repo", Path: "o/r", URL: "http://127.0.0.1:3", SecretEnv: "S", Token: "env:T", RunnerPrefix: "corral-gt"},
		},
		Pools: []Pool{
			{ID: "linux", Labels: []string{"corral"}, Image: "/opt/runner", Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: 4, MinIdle: 1},
			{ID: "box", Labels: []string{"corral-c", "x"}, Provider: "docker", Image: "runner:1", MaxInstances: 2, BootTimeout: "60s"},
			{ID: "lab", Labels: []string{"corral-p"}, Provider: "lab", Image: "/opt/runner", MaxInstances: 2},
		},
		Providers: []Provider{{Name: "lab", Type: "plugin", Plugin: &Plugin{Path: "/usr/bin/p", ConfigFile: "/etc/p.json", Timeouts: "{create: 30s}"}},
			{Name: "lxd", Type: "shoes", Shoes: &Shoes{Path: "/usr/bin/shoes-lxd", Env: map[string]string{"LXD_HOST": "https://127.0.0.1:8443"}, Timeouts: "{create: 30s}"}}},
		Docker: &Docker{Network: "host", Endpoints: []Endpoint{{Name: "a", Host: "unix:///run/a.sock", Max: 2}, {Name: "b", Host: "unix:///run/b.sock"}}},
	}
	b, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"S": "secret", "T": "token"}[k] }
	cfg, err := config.Parse("e2e.yaml", b, getenv)
	if err != nil {
		t.Fatalf("corral refuses the harness's config: %v\n%s", err, b)
	}
	d, err := cfg.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Targets) != 3 || len(d.Pools) != 3 || d.Targets[1].Settings["app_id"] != "7" || d.Pools[0].MinIdle != 1 || d.Pools[1].Provider != "docker" {
		t.Errorf("config read back: targets %+v pools %+v", d.Targets, d.Pools)
	}
	var lab, lxd string
	for _, p := range d.Providers {
		switch p.Name {
		case "lab":
			lab = p.Type + " " + string(p.Settings)
		case "lxd":
			lxd = p.Type + " " + string(p.Settings)
		}
	}
	if want := `shoes {"path":"/usr/bin/shoes-lxd","env":{"LXD_HOST":"https://127.0.0.1:8443"},"timeouts":{"create":30000000000}}`; lxd != want {
		t.Errorf("shoes provider read back: %s, want %s", lxd, want)
	}
	if want := `plugin {"path":"/usr/bin/p","config_file":"/etc/p.json","timeouts":{"create":30000000000}}`; lab != want {
		t.Errorf("plugin provider read back: %s, want %s", lab, want)
	}
	if !strings.Contains(string(b), "controller_id: e2e") {
		t.Errorf("default controller id missing:\n%s", b)
	}
}

// TestConfig_RenderTenants: targets and pools of two tenants.
func TestConfig_RenderTenants(t *testing.T) {
	c := Config{Listen: "127.0.0.1:1", DataDir: "/tmp/e2etest-data", Tenants: []string{"team-a", "team-b"},
		Targets: []Target{
			{ID: "a", Tenant: "team-a", Kind: "github", Scope: "org", Path: "e2e", URL: "http://127.0.0.1:2", SecretEnv: "S", Token: "env:T", RunnerPrefix: "corral-a"},
			{ID: "b", Tenant: "team-b", Kind: "github", Scope: "org", Path: "beta", URL: "http://127.0.0.1:2", SecretEnv: "S", Token: "env:T", RunnerPrefix: "corral-b"},
		},
		Pools: []Pool{{ID: "linux", Tenant: "team-a", Labels: []string{"corral"}, Image: "/opt/runner", MaxInstances: 2}},
	}
	b, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("e2e.yaml", b, func(k string) string { return map[string]string{"S": "secret", "T": "token"}[k] })
	if err != nil {
		t.Fatalf("corral refuses the harness's config: %v\n%s", err, b)
	}
	d, err := cfg.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Tenants) != 2 || d.Targets[0].TenantID != "team-a" || d.Targets[1].TenantID != "team-b" || d.Pools[0].TenantID != "team-a" {
		t.Errorf("config read back: tenants %+v targets %+v pools %+v", d.Tenants, d.Targets, d.Pools)
	}
}
