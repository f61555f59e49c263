package config

import (
	"strings"
	"testing"
)

// TestParse_PluginProvider: a pool names a provider instance of type
// plugin like any other; its settings are decoded by the plugin type's
// struct and kept as JSON.
func TestParse_PluginProvider(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: lab, image: /opt/runner}
providers:
  - name: lab
    type: plugin
    path: /usr/local/bin/corral-plugin-process
    args: [--quiet]
    config_file: /etc/corral/lab.json
    env: {LAB_REGION: west}
    timeouts: {create: 90s, list: 10s}
    max_output_bytes: 65536
`
	c, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"W": "w", "K": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Providers) != 1 || d.Providers[0].Type != "plugin" || d.Pools[0].Provider != "lab" {
		t.Fatalf("providers %+v, pool %+v", d.Providers, d.Pools[0])
	}
	want := `{"path":"/usr/local/bin/corral-plugin-process","args":["--quiet"],"config_file":"/etc/corral/lab.json","env":{"LAB_REGION":"west"},"timeouts":{"create":90000000000,"list":10000000000},"max_output_bytes":65536}`
	if got := string(d.Providers[0].Settings); got != want {
		t.Errorf("settings = %s\nwant       %s", got, want)
	}
}

// TestParse_PluginProviderProblems: every bad key is reported at its line.
func TestParse_PluginProviderProblems(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: lab, image: /opt/runner, options: {x: 1}}
providers:
  - name: lab
    type: plugin
    path: corral-plugin-process
    config_file: lab.json
    env: {CORRAL_INSTANCE_ID: x, "bad-name": y}
    timeouts: {create: -1s, forever: 1s}
    max_output_bytes: -1
  - {name: empty, type: plugin}
`
	_, err := Parse("c.yaml", []byte(cfg), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"c.yaml:4: pools[0].options: provider type plugin takes no pool options",
		`c.yaml:8: providers[0].path: want an absolute path, got "corral-plugin-process"`,
		`c.yaml:9: providers[0].config_file: want an absolute path, got "lab.json"`,
		"c.yaml:10: providers[0].env.CORRAL_INSTANCE_ID: CORRAL_* variables are set by corral",
		"c.yaml:10: providers[0].env.bad-name: want a variable name",
		"c.yaml:11: providers[0].timeouts.create: want a positive duration, got -1s",
		"c.yaml:11: providers[0].timeouts.forever: unknown key",
		"c.yaml:12: providers[0].max_output_bytes: want 0 (default 1 MiB)",
		"c.yaml:13: providers[1].path: required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
