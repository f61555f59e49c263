package config

import (
	"strings"
	"testing"
)

// TestParse_ShoesProvider: a pool names a provider instance of type shoes
// (a myshoes plugin) like any other, with pool options; the settings are
// decoded by the shoes type's struct and kept as JSON.
func TestParse_ShoesProvider(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: lxd, image: /opt/actions-runner, options: {resource_type: large}}
providers:
  - name: lxd
    type: shoes
    path: /usr/local/bin/shoes-lxd
    env: {LXD_HOST: "https://192.0.2.10:8443"}
    runner_name: myshoes
    timeouts: {start: 20s, create: 4m}
    resource_types: [{name: small, cpu: 2, memory_mb: 4096}]
    state_dir: /var/lib/corral/shoes-lxd
    work_dir: /var/tmp
    prelude: "true"
`
	c, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"W": "w", "K": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Providers) != 1 || d.Providers[0].Type != "shoes" || d.Pools[0].Provider != "lxd" {
		t.Fatalf("providers %+v, pool %+v", d.Providers, d.Pools[0])
	}
	want := `{"path":"/usr/local/bin/shoes-lxd","env":{"LXD_HOST":"https://192.0.2.10:8443"},"timeouts":{"start":20000000000,"create":240000000000},"resource_types":[{"name":"small","cpu":2,"memory_mb":4096}],"runner_name":"myshoes","state_dir":"/var/lib/corral/shoes-lxd","work_dir":"/var/tmp","prelude":"true"}`
	if got := string(d.Providers[0].Settings); got != want {
		t.Errorf("settings = %s\nwant       %s", got, want)
	}
	if got := string(d.Pools[0].ProviderOptions); !strings.Contains(got, `"resource_type":"large"`) {
		t.Errorf("pool options = %s", got)
	}
}

// TestParse_ShoesProviderProblems: every bad key is reported at its line.
func TestParse_ShoesProviderProblems(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: lxd, image: /opt/runner, options: {resource_type: huge}}
providers:
  - name: lxd
    type: shoes
    path: shoes-lxd
    env: {SHOES_PLUGIN_MAGIC_COOKIE: x}
    runner_name: uuid
    resource_types: [{name: tiny, cpu: 0, memory_mb: 1}]
`
	_, err := Parse("c.yaml", []byte(cfg), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`c.yaml:4: pools[0].options.resource_type: want one of nano`,
		`c.yaml:8: providers[0].path: want an absolute path, got "shoes-lxd"`,
		"c.yaml:9: providers[0].env.SHOES_PLUGIN_MAGIC_COOKIE: set by go-plugin",
		`c.yaml:10: providers[0].runner_name: want corral or myshoes, got "uuid"`,
		"providers[0].resource_types[0].name: want one of",
		"providers[0].resource_types[0].cpu: want a positive count",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
