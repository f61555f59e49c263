package config

import (
	"errors"
	"fmt"
	"github.com/corral-ci/corral/internal/secretbox"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// exampleWithToken returns example.yaml with its token file replaced by a
// temporary one holding token.
func exampleWithToken(t *testing.T, token string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "acme.token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []byte(strings.Replace(Example, "file:/etc/corral/acme.token", "file:"+path, 1))
}

func TestParse_Example(t *testing.T) {
	c, err := Parse("example.yaml", exampleWithToken(t, "tok-123"), env(map[string]string{"ACME_WEBHOOK_SECRET": "hush"}))
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
	if c.Listen != "127.0.0.1:8080" || c.Store.Reveal() != "sqlite" || c.MaxInstances != 50 || c.ReconcileInterval != 30*time.Second || c.Log != (Log{"info", "text"}) {
		t.Errorf("top level: %+v", c)
	}
	if want := []corral.Tenant{{ID: "default", MaxInstances: 20}}; !reflect.DeepEqual(d.Tenants, want) {
		t.Errorf("tenants %+v", d.Tenants)
	}
	tg := d.Targets[0]
	if tg.ID != "acme" || tg.Kind != corral.KindGitHub || tg.Scope != corral.ScopeRepo || tg.Path != "acme/app" ||
		tg.WebhookSecret.Reveal() != "hush" || tg.Token.Reveal() != "tok-123" || tg.RunnerPrefix != "corral" || tg.Settings["runner_group_id"] != "1" {
		t.Errorf("target %+v", tg)
	}
	if d.Sizes["small"] != (corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480}) || d.Sizes["large"].CPU != 8 {
		t.Errorf("sizes %+v", d.Sizes)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	want := corral.Pool{
		ID: "linux", TenantID: "default", Targets: []string{"acme"}, Labels: []string{"corral"},
		Provider: "process", Image: "/opt/actions-runner",
		Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, DiskMB: 20480, Arch: "x64"}, Max: corral.Flavor{CPU: 16, MemoryMB: 65536, DiskMB: 204800},
		Sizes:    map[string]corral.Flavor{"xlarge": {CPU: 16, MemoryMB: 65536, DiskMB: 204800}},
		Priority: 10, MaxInstances: 8, MinIdle: 0, PricePerMinute: 0.008,
		Schedules:     []corral.IdleSchedule{{Days: []time.Weekday{1, 2, 3, 4, 5}, From: 8 * time.Hour, To: 18 * time.Hour, Location: berlin, MinIdle: 2}},
		HeadroomCount: 2, BootTimeout: 5 * time.Minute, MaxJobRuntime: 6 * time.Hour, IdleTimeout: 10 * time.Minute, MaxLifetime: 8 * time.Hour,
	}
	if !reflect.DeepEqual(d.Pools[0], want) {
		t.Errorf("pool\n got %+v\nwant %+v", d.Pools[0], want)
	}
	m, err := route.New(d.Pools, route.Options{Sizes: d.Sizes})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Route("default", "acme", []string{"corral", "xlarge"}); len(r.Routes) != 1 || r.Routes[0].Flavor.MemoryMB != 65536 {
		t.Errorf("route %+v", r)
	}
}

func TestParse_BrokenConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("testdata/broken.yaml", data, env(nil))
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("err %v, want a *ValidationError", err)
	}
	want := []struct {
		line     int
		key, msg string
	}{
		{1, "listen", `want host:port, got "nope"`},
		{2, "store", `want "sqlite" or a postgres:// DSN`},
		{3, "max_instances", "must not be negative"},
		{4, "reconcile_interval", `want a duration like 30s, 5m or 6h, got "soon"`},
		{5, "log.level", `got "loud"`},
		{6, "colour", "unknown key"},
		{9, "tenants[1].id", `duplicate tenant id "default"`},
		{11, "targets[0].id", "want lowercase letters"},
		{11, "targets[0].token", "required for kind github"},
		{12, "targets[0].tenant", `unknown tenant "ghost"`},
		{14, "targets[0].scope", `for kind github, got "user"`},
		{16, "targets[0].url", "want an http:// or https:// URL"},
		{17, "targets[0].webhook_secret", "environment variable MISSING_SECRET is not set or empty"},
		{21, "targets[1].path", `want owner/name for scope repo, got "nope"`},
		{23, "targets[1].webhook_secret", "cannot read secret file " + filepath.Join("testdata", "does-not-exist.txt")},
		{25, "targets[1].extra", "unknown key"},
		{28, "pools[0].targets[1]", `unknown target "nowhere"`},
		{29, "pools[0].labels", "at least one label is required"},
		{31, "pools[0].flavor", "64 cpu exceeds max_flavor 16 cpu"},
		{33, "pools[0].arch", `unknown arch "sparc"`},
		{34, "pools[0].min_idle", "9 exceeds max_instances 4"},
		{36, "pools[0].headroom", `got "lots"`},
		{38, "pools[0].schedules[0].days[1]", `got "funday"`},
		{38, "pools[0].schedules[0].from", `got "8am"`},
		{38, "pools[0].schedules[0].timezone", `unknown time zone "Mars/Olympus"`},
		{38, "pools[0].schedules[0].min_idle", "must not be negative"},
		{40, "pools[0].max_lifetime", "2h must exceed max_job_runtime 6h"},
		{41, "pools[0].boot_timeout", "must be positive"},
		{42, "pools[1].id", `duplicate pool id "linux"`},
		{42, "pools[1].provider", "required"},
		{43, "pools[1].labels", `"large" is a size word`},
	}
	got := ve.Problems
	for i := 0; i < len(want) || i < len(got); i++ {
		switch {
		case i >= len(got):
			t.Errorf("missing problem %d: %+v", i, want[i])
		case i >= len(want):
			t.Errorf("extra problem: %s", got[i])
		case got[i].File != "testdata/broken.yaml" || got[i].Line != want[i].line || got[i].Key != want[i].key || !strings.Contains(got[i].Msg, want[i].msg):
			t.Errorf("problem %d: %s\nwant line %d key %s msg %q", i, got[i], want[i].line, want[i].key, want[i].msg)
		}
	}
	if first := strings.SplitN(err.Error(), "\n", 2)[0]; first != `testdata/broken.yaml:1: listen: want host:port, got "nope"` {
		t.Errorf("first line of the error: %q", first)
	}
}

func TestParse_SecretsNeverInErrors(t *testing.T) {
	secrets := []string{"hunter2", "literal-token-value", "s3cret-hook", "pa55word", "from-env-value", "from-file-value"}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tok"), []byte("from-file-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
store: mysql://u:hunter2@db/corral
targets:
  - id: a
    kind: github
    scope: org
    path: acme
    url: https://user:pa55word@github.example.com
    webhook_secret: s3cret-hook
    token: literal-token-value
  - id: b
    kind: gitea
    scope: org
    path: acme
    url: https://gitea.example.com
    webhook_secret: env:HOOK
    token: file:tok
    settings: {nested: {a: b}}
  - id: c
    kind: gitea
    scope: org
    path: acme
    url: https://gitea.example.com
    webhook_secret: {value: s3cret-hook}
    token: [literal-token-value]
pools:
  - {id: p, labels: [x], provider: process, boot_timeout: nope}
`
	c, err := Parse(filepath.Join(dir, "corral.yaml"), []byte(cfg), env(map[string]string{"HOOK": "from-env-value", "CORRAL_STORE": "postgresql://u:hunter2@db/x"}))
	if err == nil {
		t.Fatal("want problems")
	}
	if c.Targets[1].WebhookSecret.Reveal() != "from-env-value" || c.Targets[1].Token.Reveal() != "from-file-value" {
		t.Errorf("secrets not resolved: %q %q", c.Targets[1].WebhookSecret.Reveal(), c.Targets[1].Token.Reveal())
	}
	text := err.Error() + strings.Join(c.Warnings, "\n")
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("secret %q appears in:\n%s", s, text)
		}
	}
	// Printing the config hides every Secret field (the URL with a
	// password is refused above, but stays a plain string).
	dump := fmt.Sprintf("%v %+v %#v", c, *c, *c)
	for _, s := range []string{"hunter2", "literal-token-value", "s3cret-hook", "from-env-value", "from-file-value"} {
		if strings.Contains(dump, s) {
			t.Errorf("secret %q appears in the printed config", s)
		}
	}
	for _, want := range []string{"targets[0].url: must not carry credentials", "targets[0].webhook_secret: a literal secret", "targets[2].webhook_secret: want a string", "targets[2].token: want a string"} {
		if !strings.Contains(text, want) {
			t.Errorf("want %q in:\n%s", want, text)
		}
	}
}

func TestParse_EnvOverrides(t *testing.T) {
	cfg := []byte("listen: 0.0.0.0:1\nmax_instances: 3\npools: [{id: p, labels: [x], provider: process}]\n")
	t.Run("applied", func(t *testing.T) {
		c, err := Parse("c.yaml", cfg, env(map[string]string{
			"CORRAL_LISTEN": "127.0.0.1:9090", "CORRAL_DATA_DIR": "/var/lib/corral", "CORRAL_STORE": "env:DSN", "DSN": "postgres://db/corral",
			"CORRAL_CONTROLLER_ID": "ctl-1", "CORRAL_LOG_LEVEL": "debug", "CORRAL_MAX_INSTANCES": "7",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != "127.0.0.1:9090" || c.DataDir != "/var/lib/corral" || c.Store.Reveal() != "postgres://db/corral" ||
			c.ControllerID != "ctl-1" || c.Log.Level != "debug" || c.MaxInstances != 7 {
			t.Errorf("config %+v", c)
		}
	})
	t.Run("problems name the variable", func(t *testing.T) {
		_, err := Parse("c.yaml", cfg, env(map[string]string{"CORRAL_MAX_INSTANCES": "many", "CORRAL_LOG_LEVEL": "loud"}))
		for _, want := range []string{
			`environment CORRAL_MAX_INSTANCES: max_instances: want a whole number, got "many"`,
			`environment CORRAL_LOG_LEVEL: log.level: want debug, info, warn or error, got "loud"`,
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err %v, want %q", err, want)
			}
		}
	})
}

func TestParse_Defaults(t *testing.T) {
	c, err := Parse("c.yaml", []byte("targets: [{id: t, kind: gitea, scope: instance, url: 'http://127.0.0.1:1', webhook_secret: w, token: k}]\npools: [{id: p, labels: [x], provider: process}]\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.DataDir != DefaultDataDir || c.Store != DefaultStore || c.ReconcileInterval != DefaultReconcileInterval || c.Log != (Log{"info", "text"}) {
		t.Errorf("top-level defaults: %+v", c)
	}
	if want := []corral.Tenant{{ID: "default"}}; !reflect.DeepEqual(d.Tenants, want) {
		t.Errorf("implicit tenant: %+v", d.Tenants)
	}
	if d.Targets[0].RunnerPrefix != "corral-t" || d.Targets[0].TenantID != "default" {
		t.Errorf("target defaults: %+v", d.Targets[0])
	}
	p := d.Pools[0]
	if p.TenantID != "default" || p.Flavor.Arch != "x64" || p.BootTimeout != 10*time.Minute || p.MaxJobRuntime != 6*time.Hour ||
		p.IdleTimeout != 10*time.Minute || p.MaxLifetime != 12*time.Hour || p.Max != (corral.Flavor{}) {
		t.Errorf("pool defaults: %+v", p)
	}
	if !reflect.DeepEqual(d.Sizes, route.DefaultSizes()) {
		t.Errorf("sizes %v", d.Sizes)
	}
}

func TestParse_NoImplicitTenantWhenTenantsListed(t *testing.T) {
	_, err := Parse("c.yaml", []byte("tenants: [{id: a}]\npools:\n  - {id: p, labels: [x], provider: process}\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `c.yaml:3: pools[0].tenant: unknown tenant "default"`) {
		t.Fatalf("err %v", err)
	}
}

func TestParse_SyntaxError(t *testing.T) {
	_, err := Parse("c.yaml", []byte("listen: a\ndata_dir: b\nlog: level: info\n"), env(nil))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Line != 3 || strings.Contains(ve.Problems[0].Msg, "line") {
		t.Fatalf("err %v, want one problem on line 3", err)
	}
}

func TestParse_Empty(t *testing.T) {
	c, err := Parse("c.yaml", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || len(c.Tenants) != 0 {
		t.Errorf("config %+v", c)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hook"), []byte("  s3cret \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "corral.yaml")
	cfg := "targets: [{id: t, kind: gitea, scope: instance, url: 'https://g.example', webhook_secret: 'file:hook', token: env:TOK}]\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(map[string]string{"TOK": "t0k"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Targets[0].WebhookSecret.Reveal() != "s3cret" || c.Targets[0].Token.Reveal() != "t0k" {
		t.Errorf("secrets %q %q", c.Targets[0].WebhookSecret.Reveal(), c.Targets[0].Token.Reveal())
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), env(nil)); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestParse_AppSecretsAgree(t *testing.T) {
	const cfg = `targets:
  - {id: a, kind: github, scope: org, path: acme, webhook_secret: one, token: t, settings: {app_id: "7"}}
  - {id: b, kind: github, scope: org, path: other, webhook_secret: two, token: t, settings: {app_id: "7"}}
pools:
  - {id: p, labels: [corral], provider: process}
`
	_, err := Parse("c.yaml", []byte(cfg), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "c.yaml:3: targets[1].webhook_secret") || strings.Contains(err.Error(), "two") {
		t.Fatalf("err = %v, want the second target's secret line, without the secret", err)
	}
}

func TestParse_Sealed(t *testing.T) {
	data := t.TempDir()
	box, err := secretbox.Open(data, func(string) string { return "" }, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := box.Put("github-app-7-webhook-secret", "s3cret"); err != nil {
		t.Fatal(err)
	}
	cfg := "data_dir: " + data + `
targets:
  - {id: a, kind: github, scope: org, path: acme, webhook_secret: "sealed:github-app-7-webhook-secret", token: "sealed:missing", settings: {app_id: "7"}}
pools:
  - {id: p, labels: [corral], provider: process}
`
	c, err := Parse("c.yaml", []byte(cfg), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "c.yaml:3: targets[0].token") {
		t.Fatalf("err = %v, want the missing sealed token reported with its line", err)
	}
	if c.Targets[0].WebhookSecret.Reveal() != "s3cret" {
		t.Fatal("sealed webhook secret not opened")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("error leaks a secret")
	}
}

func TestParse_Docker(t *testing.T) {
	const cfg = `targets:
  - {id: a, kind: gitea, scope: org, path: acme, url: "http://127.0.0.1:9", webhook_secret: w, token: k}
pools:
  - {id: p, labels: [corral], provider: docker, image: runner:1}
  - {id: q, labels: [other], provider: nomad}
providers:
  docker:
    network: bridge
    read_only_root: maybe
    endpoints:
      - {name: a, host: "unix:///run/docker.sock"}
      - {name: a, host: "http://x"}
`
	_, err := Parse("c.yaml", []byte(cfg), func(string) string { return "" })
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"c.yaml:5: pools[1].provider", "c.yaml:8: providers.docker.network", "c.yaml:9: providers.docker.read_only_root",
		"c.yaml:12: providers.docker.endpoints[1].host", "providers.docker.endpoints[1].name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestParse_DockerInDocker(t *testing.T) {
	const cfg = `targets:
  - {id: a, kind: gitea, scope: org, path: acme, url: "http://127.0.0.1:9", webhook_secret: w, token: k}
pools:
  - {id: p, labels: [corral], provider: docker, image: runner:1, docker_in_docker: true}
  - {id: q, labels: [other], provider: process, docker_in_docker: true}
`
	_, err := Parse("c.yaml", []byte(cfg), func(string) string { return "" })
	for _, want := range []string{"c.yaml:4: pools[0].docker_in_docker: needs dind_image", "c.yaml:5: pools[1].docker_in_docker: only the docker provider"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	ok := strings.Replace(cfg, "  - {id: q, labels: [other], provider: process, docker_in_docker: true}\n", "", 1) +
		"providers:\n  docker: {dind_image: corral-dind:20.10}\n"
	c, err := Parse("c.yaml", []byte(ok), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil || string(d.Pools[0].ProviderOptions) != `{"docker_in_docker":true}` {
		t.Fatalf("pool = %+v, %v", d.Pools, err)
	}
	if len(c.Warnings) == 0 || !strings.Contains(strings.Join(c.Warnings, "\n"), "c.yaml:4: pools[0].docker_in_docker: deprecated; write options: {docker_in_docker: true}") {
		t.Errorf("no deprecation warning for the pool-level docker_in_docker: %q", c.Warnings)
	}
}
