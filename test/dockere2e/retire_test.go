package dockere2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/corral-ci/corral/internal/forge/sim"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// retireTmpl is a config with named provider instances: with Docker set, a
// docker provider instance "rack1" and a pool on it; without, both are
// gone and only a process pool on "local" is left.
var retireTmpl = template.Must(template.New("c").Parse(`listen: {{.Listen}}
data_dir: {{.DataDir}}
store: sqlite
controller_id: ` + controllerID + `
reconcile_interval: 1s
log: {level: info, format: text}
targets:
  - {id: e2e, kind: sim, scope: org, path: e2e, url: "{{.ForgeURL}}", webhook_secret: env:E2E_WEBHOOK_SECRET, runner_prefix: corral-d}
providers:
  - {name: local, type: process}
{{- if .Docker}}
  - name: rack1
    type: docker
    network: host
    endpoints: [{name: local, host: "{{.Host}}"}]
{{- end}}
pools:
  - {id: elsewhere, labels: [never-asked], provider: local, max_instances: 1}
{{- if .Docker}}
  - {id: containers, labels: [corral], provider: rack1, image: "{{.Image}}", flavor: 1cpu1gb1gb, max_instances: 4,
     boot_timeout: 30s, max_job_runtime: 2m, idle_timeout: 5s, max_lifetime: 10m}
{{- end}}
`))

type retireSetup struct {
	Listen, DataDir, ForgeURL, Image, Host string
	Docker                                 bool
}

func writeRetireConfig(t *testing.T, s retireSetup) string {
	t.Helper()
	var b bytes.Buffer
	if err := retireTmpl.Execute(&b, s); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func logHas(t *testing.T, p *proc, s string) bool {
	t.Helper()
	b, err := os.ReadFile(p.log)
	return err == nil && strings.Contains(string(b), s)
}

// TestDocker_ProviderRemoved removes a docker provider instance (and its
// pool) from the config while its containers run jobs, and restarts corral
// with the new file: corral opens the provider from the definition it kept
// in its store, in retired mode; the containers finish their jobs and are
// deleted, no registration is left, and once none of its instances is left
// the provider is forgotten (logged).
func TestDocker_ProviderRemoved(t *testing.T) {
	const jobs = 3
	host := dockertest.Socket(t)
	img := runnerImage(t, host)
	eng := newEngine(t, "local", host)
	f := newForge(t, sim.Options{Seed: 9})
	listen := freePort(t)
	f.AddTarget("e2e", "http://"+listen+"/webhooks/e2e", f.secret)
	set := retireSetup{Listen: listen, DataDir: filepath.Join(t.TempDir(), "data"), ForgeURL: f.URL, Image: img, Host: host, Docker: true}
	p := startCorral(t, writeRetireConfig(t, set), f, listen)

	for i := range jobs {
		f.QueueJob("e2e", simJob(i, 6*time.Second))
	}
	waitFor(t, 60*time.Second, "every job running in a container", func() bool {
		return f.Stats().JobsRunning == jobs && eng.count(t) == jobs
	})
	p.stop(t)

	set.Docker = false
	p = startCorral(t, writeRetireConfig(t, set), f, listen)
	if !logHas(t, p, "provider gone from the config is retired") || !logHas(t, p, "provider=rack1") {
		t.Error("corral did not say that it opened provider rack1 in retired mode")
	}
	if n := eng.count(t); n != jobs {
		t.Errorf("%d containers after the restart, want the %d still at work", n, jobs)
	}
	waitFor(t, 90*time.Second, "every job completed", func() bool { return f.Stats().JobsCompleted == jobs })
	checkClean(t, f, []*engine{eng}, jobs, nil, nil)
	waitFor(t, 30*time.Second, "no live instance in corral's store", func() bool { return len(liveInstances(t, listen)) == 0 })
	waitFor(t, 30*time.Second, "the retired provider forgotten", func() bool {
		return logHas(t, p, "retired provider forgotten: none of its instances is left")
	})
	p.stop(t)
}
