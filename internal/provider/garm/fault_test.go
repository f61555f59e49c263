package garm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

func spec(h *harness, pool string) corral.InstanceSpec {
	id := providertest.Unique("inst-")
	return corral.InstanceSpec{InstanceID: id, Name: "corral-" + id, ControllerID: "ctl-faults", PoolID: pool,
		Image: h.exe, Flavor: corral.Flavor{CPU: 1, MemoryMB: 256, Arch: "x64"}, Labels: []string{"self-hosted"},
		Bootstrap: corral.Bootstrap{Command: h.Command()}, Deadline: time.Now().Add(time.Minute)}
}

// TestGarm_Faults: a provider that hangs, crashes, prints garbage, an
// unknown status or an instance without id gives a clear error carrying
// its stderr, within its timeout, and its instance's token is revoked.
func TestGarm_Faults(t *testing.T) {
	h := newHarness(t)
	rec := &recording{Metadata: h.meta}
	cases := []struct {
		fault string
		want  []string
	}{
		{"hang", []string{"no answer within 2s", "killed with its process group", "hanging on purpose"}},
		{"crash", []string{"failed: killed by killed", "crashing on purpose"}},
		{"garbage", []string{"malformed answer", "not garm's instance JSON", `answer starts "this is not json {"`, "printing garbage on purpose"}},
		{"badstatus", []string{"malformed answer", `status "exploding"`, "a status garm does not know"}},
		{"noid", []string{"malformed answer", "without provider_id", "an instance without provider_id"}},
	}
	for _, c := range cases {
		t.Run(c.fault, func(t *testing.T) {
			s := h.settings()
			s.Env = map[string]string{"GARMTEST_FAULT": c.fault}
			s.Timeouts.Create = 2 * time.Second
			p, err := New("faulty", s, provider.Env{DataDir: h.data, Metadata: rec})
			if err != nil {
				t.Fatal(err)
			}
			sp := spec(h, "pool-faults")
			start := time.Now()
			_, err = p.Create(context.Background(), sp)
			if err == nil {
				t.Fatal("Create succeeded")
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("Create took %v", took)
			}
			var ge *Error
			if !errors.As(err, &ge) || !errors.Is(err, corral.ErrUnavailable) {
				t.Errorf("error %v: want a *garm.Error wrapping ErrUnavailable", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			g := rec.get(sp.InstanceID)
			if g.Token == "" {
				t.Fatal("no grant was made")
			}
			if code, _ := do(t, "GET", g.MetadataURL+"/runner-metadata", g.Token, ""); code != http.StatusUnauthorized {
				t.Errorf("the failed instance's token: %d, want 401 (revoked)", code)
			}
		})
	}
}

// recording remembers the grants a provider asked for.
type recording struct {
	*Metadata
	mu     sync.Mutex
	grants map[string]provider.MetadataGrant
}

func (r *recording) Grant(spec corral.InstanceSpec) (provider.MetadataGrant, error) {
	g, err := r.Metadata.Grant(spec)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grants == nil {
		r.grants = map[string]provider.MetadataGrant{}
	}
	r.grants[spec.InstanceID] = g
	return g, err
}

func (r *recording) get(id string) provider.MetadataGrant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grants[id]
}

// TestGarm_ListFaultFailsWhole: a pool whose ListInstances prints garbage
// fails the whole List (a partial list would make live instances look
// gone), naming the pool and the provider's stderr.
func TestGarm_ListFaultFailsWhole(t *testing.T) {
	h := newHarness(t)
	good := h.provider(t)
	inst := providertest.Create(t, good, spec(h, "pool-a"))
	if _, ok := providertest.Find(t, good, "ctl-faults", inst.InstanceID); !ok {
		t.Fatal("created instance not listed")
	}
	s := h.settings()
	s.Env = map[string]string{"GARMTEST_FAULT": "garbage"}
	bad, err := New("garmtest", s, provider.Env{DataDir: h.data, Metadata: h.meta})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.List(context.Background(), "ctl-faults")
	if err == nil || !strings.Contains(err.Error(), "pool pool-a") || !strings.Contains(err.Error(), "printing garbage on purpose") {
		t.Errorf("List error %v: want the pool and the stderr", err)
	}
}

// TestGarm_GetNotFound: exit code 30 is corral.ErrNotFound.
func TestGarm_GetNotFound(t *testing.T) {
	h := newHarness(t)
	p := h.provider(t)
	inst := providertest.Create(t, p, spec(h, "pool-a"))
	got, err := p.Get(context.Background(), inst)
	if err != nil || !got.Running || got.InstanceID != inst.InstanceID {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if err := p.Delete(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(context.Background(), inst); !errors.Is(err, corral.ErrNotFound) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
}

// TestGarm_Wire: what corral hands a garm provider, seen by a provider
// script that records its environment and standard input: garm's
// variables and nothing of corral's own environment, and the bootstrap
// JSON with garm's field names.
func TestGarm_Wire(t *testing.T) {
	t.Setenv("CORRAL_DB_PASSWORD", "do-not-leak")
	h := newHarness(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "provider.sh")
	sp := spec(h, "pool-w")
	body := "#!/bin/sh\nenv > " + dir + "/env.$GARM_COMMAND\ncat > " + dir + "/stdin.$GARM_COMMAND\n" +
		`echo '{"provider_id":"vm-1","name":"` + sp.Name + `","status":"running","os_type":"linux","addresses":[{"address":"10.0.0.5","type":"private"}],"pool_id":"pool-w"}'` + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Settings{Executable: script, ConfigFile: h.cfg, Env: map[string]string{"LXD_DIR": "/x"},
		Tools: []Tool{{OS: "linux", Architecture: "x64", DownloadURL: "https://example.test/actions-runner-linux-x64.tar.gz", Filename: "actions-runner-linux-x64.tar.gz"}}}
	p, err := New("wire", s, provider.Env{DataDir: h.data, Metadata: h.meta})
	if err != nil {
		t.Fatal(err)
	}
	sp.Options = json.RawMessage(`{"flavor":"m1.small","extra_specs":{"disk":"fast"},"runner_group":"ci"}`)
	sp.Bootstrap.Env = map[string]corral.Secret{"CORRAL_RUNNER_TOKEN": "reg-token-1", "CORRAL_FORGE_URL": "http://gitea.test"}
	inst, err := p.Create(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ProviderID != "vm-1" || inst.InstanceID != sp.InstanceID || !inst.Running {
		t.Errorf("Create = %+v", inst)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "env.CreateInstance"))
	for _, w := range []string{"GARM_COMMAND=CreateInstance", "GARM_CONTROLLER_ID=ctl-faults", "GARM_POOL_ID=pool-w",
		"GARM_PROVIDER_CONFIG_FILE=" + h.cfg, "GARM_INTERFACE_VERSION=v0.1.1", "LXD_DIR=/x",
		"GARM_POOL_EXTRASPECS=" + base64.StdEncoding.EncodeToString([]byte(`{"disk":"fast"}`))} {
		if !strings.Contains(string(env), w+"\n") {
			t.Errorf("environment lacks %s:\n%s", w, env)
		}
	}
	if strings.Contains(string(env), "do-not-leak") {
		t.Errorf("corral's environment reached the provider:\n%s", env)
	}
	var raw map[string]any
	stdin, _ := os.ReadFile(filepath.Join(dir, "stdin.CreateInstance"))
	if err := json.Unmarshal(stdin, &raw); err != nil {
		t.Fatalf("bootstrap %q: %v", stdin, err)
	}
	for _, k := range []string{"name", "tools", "repo_url", "callback-url", "metadata-url", "instance-token", "ssh-keys",
		"extra_specs", "github-runner-group", "ca-cert-bundle", "arch", "os_type", "flavor", "image", "labels", "pool_id",
		"user_data_options", "jit_config_enabled", "proxy_config"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("bootstrap lacks %q: %s", k, stdin)
		}
	}
	if raw["name"] != sp.Name || raw["flavor"] != "m1.small" || raw["arch"] != "amd64" || raw["repo_url"] != "http://gitea.test" ||
		raw["jit_config_enabled"] != false || raw["github-runner-group"] != "ci" ||
		!strings.HasPrefix(raw["instance-token"].(string), TokenPrefix) || !strings.HasSuffix(raw["metadata-url"].(string), "/api/v1/metadata") {
		t.Errorf("bootstrap %s", stdin)
	}
	if tools, _ := raw["tools"].([]any); len(tools) != 1 || tools[0].(map[string]any)["download_url"] != "https://example.test/actions-runner-linux-x64.tar.gz" {
		t.Errorf("bootstrap tools %v, want the configured one", raw["tools"])
	}
	if strings.Contains(string(stdin), "reg-token-1") {
		t.Errorf("the registration token is in the bootstrap JSON (it belongs behind the metadata endpoint): %s", stdin)
	}
	if err := p.Delete(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	denv, _ := os.ReadFile(filepath.Join(dir, "env.DeleteInstance"))
	for _, w := range []string{"GARM_COMMAND=DeleteInstance", "GARM_INSTANCE_ID=vm-1", "GARM_CONTROLLER_ID=ctl-faults", "GARM_POOL_ID=pool-w"} {
		if !strings.Contains(string(denv), w+"\n") {
			t.Errorf("delete environment lacks %s:\n%s", w, denv)
		}
	}
}

// TestSettings_Validate names every bad key at once.
func TestSettings_Validate(t *testing.T) {
	s := Settings{Executable: "garm-provider-lxd", ConfigFile: "lxd.toml", InterfaceVersion: "v2",
		Env: map[string]string{"GARM_COMMAND": "x", "1BAD": "y"}, Timeouts: Timeouts{Create: -time.Second}, MaxOutputBytes: -1,
		Tools: []Tool{{OS: "linux", Architecture: "x64", DownloadURL: "/relative", SHA256Checksum: "abc"}}}
	err := s.Validate()
	for _, w := range []string{"executable: want an absolute path", "config_file: want an absolute path", "interface_version: want v0.1.0 or v0.1.1",
		"env.GARM_COMMAND: GARM_* variables are set by corral", "env.1BAD: want a variable name", "timeouts.create: want a positive duration", "max_output_bytes",
		"tools[0].download_url: want an http(s) URL", "tools[0].sha256_checksum: want 64 hex digits"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want %q", err, w)
		}
	}
	if err := (&Settings{}).Validate(); err == nil || !strings.Contains(err.Error(), "executable: required") || !strings.Contains(err.Error(), "config_file: required") {
		t.Errorf("empty settings: %v", err)
	}
	ok := Settings{Executable: "/opt/garm/garm-provider-lxd", ConfigFile: "/etc/garm/lxd.toml"}
	if err := ok.Validate(); err != nil {
		t.Errorf("good settings: %v", err)
	}
	if _, err := New("x", ok, provider.Env{}); err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Errorf("New without a data directory: %v", err)
	}
}

// TestGarm_ListMapping: garm's statuses map onto corral's running flag
// (unknown counts as running), a listed name corral recorded maps back to
// its instance id, an unknown one stays its name (an orphan to sweep), and
// a provider_id listed twice is refused.
func TestGarm_ListMapping(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	sp := spec(h, "pool-m")
	list := `[{"provider_id":"vm-1","name":"` + sp.Name + `","status":"running"},` +
		`{"provider_id":"vm-2","name":"stray-2","status":"stopped"},` +
		`{"provider_id":"vm-3","name":"stray-3","status":"unknown"},` +
		`{"provider_id":"vm-4","name":"stray-4","status":"error"}]`
	script := filepath.Join(dir, "provider.sh")
	body := "#!/bin/sh\ncase $GARM_COMMAND in\nCreateInstance) cat >/dev/null; echo '{\"provider_id\":\"vm-1\",\"name\":\"" + sp.Name + "\",\"status\":\"running\"}';;\n" +
		"ListInstances) cat " + dir + "/list.json;;\nesac\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "list.json"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New("map", Settings{Executable: script, ConfigFile: h.cfg}, provider.Env{DataDir: t.TempDir(), Metadata: h.meta})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(context.Background(), sp); err != nil {
		t.Fatal(err)
	}
	got, err := p.List(context.Background(), sp.ControllerID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		id      string
		running bool
	}{"vm-1": {sp.InstanceID, true}, "vm-2": {"stray-2", false}, "vm-3": {"stray-3", true}, "vm-4": {"stray-4", false}}
	if len(got) != len(want) {
		t.Fatalf("List = %+v", got)
	}
	for _, in := range got {
		w := want[in.ProviderID]
		if in.InstanceID != w.id || in.Running != w.running || in.PoolID != "pool-m" {
			t.Errorf("listed %+v, want id %s running %v in pool-m", in, w.id, w.running)
		}
	}
	dup := `[{"provider_id":"vm-1","name":"a","status":"running"},{"provider_id":"vm-1","name":"b","status":"running"}]`
	if err := os.WriteFile(filepath.Join(dir, "list.json"), []byte(dup), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(context.Background(), sp.ControllerID); err == nil || !strings.Contains(err.Error(), `provider_id "vm-1" listed twice`) {
		t.Errorf("duplicate provider_id: %v", err)
	}
}
