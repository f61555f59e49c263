package config

import (
	"strings"
	"testing"
)

// TestParse_GarmProvider: a pool names a garm provider like any other; its
// settings and pool options (garm's flavor, extra specs) are decoded by
// the garm type's structs, and instance_url is checked.
func TestParse_GarmProvider(t *testing.T) {
	cfg := provTarget + `instance_url: http://10.0.0.1:8080
pools:
  - id: p
    labels: [corral]
    provider: lxd
    image: ubuntu:24.04
    options: {flavor: default, extra_specs: {profiles: [default, ci], disk: {size: 20}}, runner_group: ci}
providers:
  - name: lxd
    type: garm
    executable: /opt/garm/garm-provider-lxd
    config_file: /etc/garm/lxd.toml
    interface_version: v0.1.0
    timeouts: {create: 3m}
    tools:
      - {os: linux, architecture: x64, download_url: "https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-linux-x64-2.330.0.tar.gz", filename: actions-runner-linux-x64-2.330.0.tar.gz}
`
	c, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"W": "w", "K": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceURL != "http://10.0.0.1:8080" || len(d.Providers) != 1 || d.Providers[0].Type != "garm" {
		t.Fatalf("instance_url %q, providers %+v", c.InstanceURL, d.Providers)
	}
	want := `{"executable":"/opt/garm/garm-provider-lxd","config_file":"/etc/garm/lxd.toml","interface_version":"v0.1.0","timeouts":{"create":180000000000},"tools":[{"os":"linux","architecture":"x64","download_url":"https://github.com/actions/runner/releases/download/v2.330.0/actions-runner-linux-x64-2.330.0.tar.gz","filename":"actions-runner-linux-x64-2.330.0.tar.gz"}]}`
	if got := string(d.Providers[0].Settings); got != want {
		t.Errorf("settings = %s\nwant       %s", got, want)
	}
	wantOpt := `{"flavor":"default","extra_specs":{"disk":{"size":20},"profiles":["default","ci"]},"runner_group":"ci"}`
	if got := string(d.Pools[0].ProviderOptions); got != wantOpt {
		t.Errorf("pool options = %s\nwant           %s", got, wantOpt)
	}

	bad := provTarget + `instance_url: corral:8080
pools:
  - {id: p, labels: [corral], provider: lxd, image: x, options: {os_type: plan9}}
providers:
  - {name: lxd, type: garm, executable: garm-provider-lxd, interface_version: v9, tools: [{os: linux, download_url: "ftp://x"}]}
`
	_, err = Parse("c.yaml", []byte(bad), env(map[string]string{"W": "w", "K": "k"}))
	for _, w := range []string{"instance_url: want http(s)://host[:port]", "pools[0].options.os_type: want linux or windows",
		"executable: want an absolute path", "config_file: required", "interface_version: want v0.1.0 or v0.1.1", "tools[0]: needs os", "tools[0].download_url: want an http(s) URL"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}
