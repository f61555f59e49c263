package config

import (
	"encoding/json"
	"strings"
	"testing"
)

const provTarget = "targets:\n  - {id: a, kind: gitea, scope: org, path: acme, url: \"http://127.0.0.1:9\", webhook_secret: env:W, token: env:K}\n"

func TestParse_Providers(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: rack1, image: runner:1, options: {docker_in_docker: true}}
  - {id: q, labels: [other], provider: local, concurrency: 32}
  - {id: r, labels: [third], provider: process}
providers:
  - name: rack1
    type: docker
    dind_image: docker:dind
    endpoints: [{name: a, host: "tcp://127.0.0.1:2375"}]
  - {name: local, type: process, namespaces: "off", concurrency: 16}
`
	c, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"W": "w", "K": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", c.Warnings)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range d.Providers {
		got[p.Name] = p.Type + " " + string(p.Settings)
	}
	want := map[string]string{
		"rack1":   `docker {"endpoints":[{"name":"a","host":"tcp://127.0.0.1:2375"}],"dind_image":"docker:dind"}`,
		"local":   `process {"namespaces":"off"}`,
		"process": `process {}`, // implicit: pool r names the type
	}
	if len(got) != len(want) {
		t.Errorf("providers = %v, want %v", got, want)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("provider %s = %s, want %s", n, got[n], w)
		}
	}
	if o := string(d.Pools[0].ProviderOptions); o != `{"docker_in_docker":true}` {
		t.Errorf("pool p options = %s", o)
	}
	if d.Pools[1].ProviderOptions != nil || d.Pools[1].Provider != "local" {
		t.Errorf("pool q = %+v", d.Pools[1])
	}
	conc := map[string]int{}
	for _, p := range d.Providers {
		conc[p.Name] = p.Concurrency
	}
	if conc["local"] != 16 || conc["rack1"] != 0 || d.Pools[1].Concurrency != 32 || d.Pools[0].Concurrency != 0 {
		t.Errorf("concurrency: providers %v, pools p=%d q=%d; want local 16, rack1 0, q 32, p 0", conc, d.Pools[0].Concurrency, d.Pools[1].Concurrency)
	}
}

func TestParse_ProvidersProblems(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: rack1, image: runner:1, options: {docker_in_docker: true, gpu: 1}}
  - {id: q, labels: [other], provider: nowhere}
  - {id: r, labels: [third], provider: local, options: {x: 1}}
providers:
  - name: rack1
    type: docker
    endpoints: [{name: a, host: "http://x"}]
    netwrok: none
  - {name: local, type: process, namespaces: maybe}
  - {name: local, type: firecracker}
  - {type: docker}
`
	_, err := Parse("c.yaml", []byte(cfg), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"c.yaml:4: pools[0].options.gpu: unknown key",
		"c.yaml:4: pools[0].options.docker_in_docker: needs dind_image",
		`c.yaml:5: pools[1].provider: unknown provider "nowhere": declare it under providers`,
		"c.yaml:6: pools[2].options: provider type process takes no pool options",
		"c.yaml:10: providers[0].endpoints[0].host: ",
		"c.yaml:11: providers[0].netwrok: unknown key",
		`c.yaml:12: providers[1].namespaces: want auto, on or off, got "maybe"`,
		`c.yaml:13: providers[2].name: duplicate provider name "local"`,
		`c.yaml:13: providers[2].type: unknown provider type "firecracker": want one of [docker `, // the list grows with the built-in types
		"c.yaml:14: providers[3].name: required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestParse_ProvidersMapShape: the older providers: {docker: {...}} still
// works, as an instance named after its type, with a warning that says how
// to write it now.
func TestParse_ProvidersMapShape(t *testing.T) {
	cfg := provTarget + `pools:
  - {id: p, labels: [corral], provider: docker, image: runner:1}
providers:
  docker:
    network: none
`
	c, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"W": "w", "K": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings, "\n"); !strings.Contains(w, "c.yaml:6: providers.docker: providers as a mapping by type is deprecated; write a list: providers: [{name: docker, type: docker, ...}]") {
		t.Errorf("warnings = %q", c.Warnings)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Providers) != 1 || d.Providers[0].Name != "docker" || d.Providers[0].Type != "docker" {
		t.Fatalf("providers = %+v", d.Providers)
	}
	var s map[string]any
	if err := json.Unmarshal(d.Providers[0].Settings, &s); err != nil || s["network"] != "none" {
		t.Errorf("settings = %s, %v", d.Providers[0].Settings, err)
	}
}
