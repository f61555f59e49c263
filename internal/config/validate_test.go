package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// base is a valid config that the cases below extend.
const base = `
tenants: [{id: default}, {id: other}]
targets:
  - {id: t, kind: gitea, scope: repo, path: o/r, url: "http://127.0.0.1:1", webhook_secret: w, token: k}
  - {id: u, tenant: other, kind: gitea, scope: org, path: o, url: "http://127.0.0.1:2", webhook_secret: w, token: k}
`

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error; "" = valid
	}{
		{"valid", "pools: [{id: p, labels: [x], provider: process}]", ""},
		{"postgres store", "store: postgresql://db/corral", ""},
		{"bad controller id", "controller_id: 'a b'", "controller_id: want letters"},
		{"log format", "log: {format: xml}", `log.format: want text or json, got "xml"`},
		{"unknown nested key", "log: {level: info, colour: red}", ":6: log.colour: unknown key"},
		{"duplicate key", "listen: a:1\nlisten: b:2", ":7: listen: duplicate key"},
		{"want a list", "pools: [{id: p, labels: x, provider: process}]", "pools[0].labels: want a list"},
		{"want a number", "max_instances: lots", `max_instances: want a whole number, got "lots"`},
		{"want a mapping", "log: loud", "log: want a mapping of keys"},
		{"yaml anchors", "pools:\n  - &p {id: p, labels: [x], provider: process}\n  - {id: q, labels: [y], provider: process}", ""},
		{"github url default", "targets: [{id: g, kind: github, scope: enterprise, path: e, webhook_secret: env:S, token: env:S}]", ""},
		{"scope of kind", "targets: [{id: g, kind: gitea, scope: enterprise, url: 'https://x', webhook_secret: env:S, token: env:S}]", `scope: want one of [repo org user instance] for kind gitea, got "enterprise"`},
		{"missing scope", "targets: [{id: g, kind: gitea, url: 'http://x'}]", `targets[0].scope: want one of`},
		{"org path", "targets: [{id: g, kind: gitea, scope: org, path: a/b, url: 'http://x'}]", "want the org's name for scope org"},
		{"bad kind", "targets: [{id: g, kind: gitlab, scope: repo, path: a/b, url: 'http://x'}]", `kind: want github, gitea or forgejo, got "gitlab"`},
		{"sim kind refused", "targets: [{id: g, kind: sim, scope: org, path: a, url: 'http://x'}]", "targets[0].kind: the simulated forge is gone from serve: for a local demo run `corral dev`"},
		{"duplicate target", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x'}]\n  - {id: g, kind: gitea, scope: user, url: 'http://x'}", `targets[1].id: duplicate target id "g"`},
		{"poll mode needs no webhook secret", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, mode: poll, poll_interval: 1s}]", ""},
		{"webhook+poll on forgejo", "targets: [{id: g, kind: forgejo, scope: user, url: 'http://x', token: k, webhook_secret: w, mode: webhook+poll}]", ""},
		{"webhook mode needs its secret", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, mode: webhook}]", "targets[0].webhook_secret: required for kind gitea in mode webhook (or use mode poll"},
		{"poll mode with a secret", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, webhook_secret: w, mode: poll}]", "targets[0].webhook_secret: set, but mode poll takes no webhook"},
		{"poll on github", "targets: [{id: g, kind: github, scope: org, path: o, token: k, mode: poll}]", "targets[0].mode: poll is for gitea and forgejo targets"},
		{"scaleset needs no webhook secret", "targets: [{id: g, kind: github, scope: org, path: o, token: k, mode: scaleset}]", ""},
		{"scaleset with a secret", "targets: [{id: g, kind: github, scope: org, path: o, token: k, webhook_secret: w, mode: scaleset}]", "targets[0].webhook_secret: set, but mode scaleset takes no webhook"},
		{"scaleset on gitea", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, mode: scaleset}]", "targets[0].mode: scaleset is GitHub's runner scale-set API, for github targets"},
		{"unknown mode", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, webhook_secret: w, mode: pull}]", `targets[0].mode: want webhook, poll, webhook+poll, scaleset or one-job, got "pull"`},
		{"one-job on forgejo", "targets: [{id: g, kind: forgejo, scope: repo, path: o/r, url: 'http://x', token: k, mode: one-job, poll_interval: 1s}]", ""},
		{"one-job on gitea", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, mode: one-job}]", ":4: targets[0].mode: one-job is for forgejo targets (Forgejo ≥ 15, forgejo-runner ≥ 12.8), not kind gitea"},
		{"one-job on github", "targets: [{id: g, kind: github, scope: org, path: o, token: k, mode: one-job}]", "targets[0].mode: one-job is for forgejo targets"},
		{"one-job spelled onejob", "targets: [{id: g, kind: forgejo, scope: user, url: 'http://x', token: k, mode: onejob}]", `targets[0].mode: unknown mode "onejob": did you mean one-job`},
		{"one-job with a secret", "targets: [{id: g, kind: forgejo, scope: user, url: 'http://x', token: k, webhook_secret: w, mode: one-job}]", "targets[0].webhook_secret: set, but mode one-job takes no webhook"},
		{"poll interval without polling", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, webhook_secret: w, poll_interval: 5s}]", "targets[0].poll_interval: set, but mode webhook does not poll"},
		{"poll interval too short", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', token: k, mode: poll, poll_interval: 10ms}]", "targets[0].poll_interval: want between 500ms and 10m0s, got 10ms"},
		{"runner prefix", "targets: [{id: g, kind: gitea, scope: user, url: 'http://x', runner_prefix: 'a/b'}]", "runner_prefix: want letters"},
		{"pool of another tenant's target", "pools: [{id: p, labels: [x], provider: process, targets: [u]}]", `pools[0].targets[0]: target "u" belongs to tenant "other", not "default"`},
		{"pool id slug", "pools: [{id: P_1, labels: [x], provider: process}]", "pools[0].id: want lowercase"},
		{"flavor word", "pools: [{id: p, labels: [x], provider: process, flavor: big}]", `pools[0].flavor: want a capacity word like 4cpu8gb40gb, got "big"`},
		{"flavor malformed", "pools: [{id: p, labels: [x], provider: process, flavor: 2cpu2cpu}]", "names cpu twice"},
		{"size word value", "sizes: {huge: enormous}", `sizes.huge: want a capacity word`},
		{"size word name", "sizes: {linux: 2cpu}", `sizes: size word "linux" is a generic label`},
		{"pool size word", "pools: [{id: p, labels: [x], provider: process, sizes: {big: 0cpu}}]", "pools[0].sizes.big: capacity"},
		{"label grammar", "pools: [{id: p, labels: [x, 'cpu=4'], provider: process}]", `pools[0].labels: "cpu=4" is a routing key`},
		{"arch spelling", "pools: [{id: p, labels: [x], provider: process, arch: aarch64}]", ""},
		{"headroom percent", "pools: [{id: p, labels: [x], provider: process, headroom: '25%'}]", ""},
		{"headroom huge", "pools: [{id: p, labels: [x], provider: process, headroom: '5000%'}]", "at most 1000%"},
		{"headroom negative", "pools: [{id: p, labels: [x], provider: process, headroom: -1}]", "pools[0].headroom: want a count"},
		{"lifetime equals runtime", "pools: [{id: p, labels: [x], provider: process, max_job_runtime: 8h, max_lifetime: 8h}]", "max_lifetime: 8h must exceed max_job_runtime 8h"},
		{"default lifetime below runtime", "pools: [{id: p, labels: [x], provider: process, max_job_runtime: 24h}]", "max_lifetime: 12h must exceed max_job_runtime 24h"},
		{"idle timeout zero", "pools: [{id: p, labels: [x], provider: process, idle_timeout: 0s}]", "idle_timeout: must be positive"},
		{"schedule to 24:00", "pools: [{id: p, labels: [x], provider: process, schedules: [{from: '18:00', to: '24:00', min_idle: 1}]}]", ""},
		{"schedule from 24:00", "pools: [{id: p, labels: [x], provider: process, schedules: [{from: '24:00', to: '08:00'}]}]", "from: want a time"},
		{"schedule empty window", "pools: [{id: p, labels: [x], provider: process, schedules: [{from: '00:00', to: '24:00'}]}]", "the window is empty"},
		{"schedule minutes", "pools: [{id: p, labels: [x], provider: process, schedules: [{from: '08:60', to: '09:00'}]}]", "from: want a time"},
		{"schedule min idle above max", "pools: [{id: p, labels: [x], provider: process, max_instances: 2, schedules: [{from: '08:00', to: '09:00', min_idle: 3}]}]", "3 exceeds the pool's max_instances 2"},
		{"schedule unknown key", "pools: [{id: p, labels: [x], provider: process, schedules: [{from: '08:00', to: '09:00', tz: UTC}]}]", "pools[0].schedules[0].tz: unknown key"},
		{"tenant max", "tenants: [{id: z, max_instances: -2}]", "tenants[2].max_instances: must not be negative"},
		{"negative price", "pools: [{id: p, labels: [x], provider: process, price_per_minute: -0.5}]", "pools[0].price_per_minute: must not be negative"},
		{"price not a number", "pools: [{id: p, labels: [x], provider: process, price_per_minute: cheap}]", `pools[0].price_per_minute: want a number like 0.008, got "cheap"`},
		{"price", "pools: [{id: p, labels: [x], provider: process, price_per_minute: 0.008}]", ""},
		{"negative pool concurrency", "pools: [{id: p, labels: [x], provider: process, concurrency: -1}]", "pools[0].concurrency: must not be negative"},
		{"pool concurrency", "pools: [{id: p, labels: [x], provider: process, concurrency: 64}]", ""},
		{"negative provider concurrency", "pools: [{id: p, labels: [x], provider: local}]\nproviders: [{name: local, type: process, concurrency: -2}]", "providers[0].concurrency: must not be negative"},
		{"provider concurrency not a number", "pools: [{id: p, labels: [x], provider: local}]\nproviders: [{name: local, type: process, concurrency: lots}]", "providers[0].concurrency:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := base + tt.yaml + "\n"
			if strings.HasPrefix(tt.yaml, "tenants:") {
				doc = strings.Replace(base, "tenants: [{id: default}, {id: other}]", "tenants: [{id: default}, {id: other}, "+strings.TrimSuffix(strings.TrimPrefix(tt.yaml, "tenants: ["), "]")+"]", 1)
			}
			if item, ok := strings.CutPrefix(tt.yaml, "targets: ["); ok {
				// Extra targets go first in the base's list: "targets: [{...}]"
				// with more items as "\n  - {...}" lines.
				item = strings.Replace(item, "]", "", 1)
				doc = strings.Replace(base, "targets:\n", "targets:\n  - "+item+"\n", 1)
			}
			_, err := Parse("c.yaml", []byte(doc), env(map[string]string{"S": "x"}))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v\n%s", err, doc)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want %q\n%s", err, tt.want, doc)
			}
		})
	}
}

func TestConfig_OneJobMinIdle(t *testing.T) {
	doc := `targets:
  - {id: g, kind: forgejo, scope: user, url: "http://127.0.0.1:1", token: k, mode: one-job}
pools:
  - {id: p, labels: [x], provider: process, targets: [g], min_idle: 1}
`
	_, err := Parse("c.yaml", []byte(doc), env(nil))
	want := `c.yaml:4: pools[0].min_idle: target "g" is in mode one-job`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v, want %q", err, want)
	}
	ok := strings.Replace(doc, "min_idle: 1", "min_idle: 0", 1)
	if _, err := Parse("c.yaml", []byte(ok), env(nil)); err != nil {
		t.Fatalf("min_idle 0: %v", err)
	}
}

func TestConfig_ValidateWithoutFile(t *testing.T) {
	c := &Config{Listen: "x", Store: "sqlite", DataDir: "d", ReconcileInterval: time.Second, Log: Log{"info", "text"}}
	err := c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].String() != `config: listen: want host:port, got "x"` {
		t.Fatalf("err %v", err)
	}
	c.Listen = ":8080"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Domain(); err != nil {
		t.Fatal(err)
	}
}

func TestConfig_DomainSchedules(t *testing.T) {
	doc := base + `pools:
  - id: p
    labels: [x]
    provider: process
    headroom: 25%
    schedules:
      - {days: [Saturday, SUN], from: "22:00", to: "06:30", min_idle: 1}
`
	c, err := Parse("c.yaml", []byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Domain()
	if err != nil {
		t.Fatal(err)
	}
	p := d.Pools[0]
	if p.HeadroomPercent != 25 || p.HeadroomCount != 0 {
		t.Errorf("headroom %d/%d%%", p.HeadroomCount, p.HeadroomPercent)
	}
	s := p.Schedules[0]
	if len(s.Days) != 2 || s.Days[0] != time.Saturday || s.Days[1] != time.Sunday || s.From != 22*time.Hour || s.To != 6*time.Hour+30*time.Minute || s.Location != nil {
		t.Fatalf("schedule %+v", s)
	}
	// The window wraps: Sunday 05:00 UTC is inside (it began Saturday).
	if !s.Contains(time.Date(2026, 1, 4, 5, 0, 0, 0, time.UTC)) || p.MinIdleAt(time.Date(2026, 1, 4, 5, 0, 0, 0, time.UTC)) != 1 {
		t.Error("Sunday 05:00 should be in the window")
	}
	if _, ok := weekdays["funday"]; ok || weekdays["monday"] != time.Monday || weekdays["mon"] != time.Monday {
		t.Error("weekday table")
	}
}
