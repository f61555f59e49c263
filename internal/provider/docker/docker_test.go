package docker

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// shSpec is a spec whose bootstrap runs a busybox shell script in the test
// image.
func shSpec(t testing.TB, host, controller, script string) corral.InstanceSpec {
	id := providertest.Unique("inst-")
	return corral.InstanceSpec{
		InstanceID: id, Name: "corral-" + id, ControllerID: controller, PoolID: "pool-test",
		Image:     runnerImage(t, host),
		Flavor:    corral.Flavor{CPU: 1, MemoryMB: 256, DiskMB: 64},
		Bootstrap: corral.Bootstrap{Command: []string{"/bin/sh", "-c", script}},
		Deadline:  time.Now().Add(10 * time.Minute),
	}
}

func create(t testing.TB, p *Provider, spec corral.InstanceSpec) corral.ProviderInstance {
	t.Helper()
	inst, err := p.Create(tctx(t), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(context.Background(), inst) })
	return inst
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProvider_Create_limitsAndWorkspace(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	h.cfg.ReadOnlyRoot = true
	p := h.provider(t)
	spec := shSpec(t, h.host, providertest.Unique("ctl-"),
		`pwd; grep " $CORRAL_WORKSPACE " /proc/mounts; touch /rootfs-probe 2>/dev/null || echo root-read-only; echo ready; sleep 600`)
	spec.Flavor = corral.Flavor{CPU: 2, MemoryMB: 300, DiskMB: 80}
	spec.Bootstrap.Env = map[string]corral.Secret{"RUNNER_TOKEN": "tok-secret-value"}
	inst := create(t, p, spec)
	_, id, _ := splitID(inst.ProviderID)

	got, err := h.cli.ContainerInspect(tctx(t), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc, cfg := got.Container.HostConfig, got.Container.Config
	if hc.NanoCPUs != 2e9 || hc.Memory != 300<<20 || hc.MemorySwap != hc.Memory {
		t.Errorf("limits: NanoCPUs %d, Memory %d, MemorySwap %d; want 2e9, %d, no swap", hc.NanoCPUs, hc.Memory, hc.MemorySwap, 300<<20)
	}
	if opts := hc.Tmpfs[DefaultWorkspace]; !strings.Contains(opts, "size=80m") {
		t.Errorf("workspace tmpfs options %q, want size=80m (tmpfs: %v)", opts, hc.Tmpfs)
	}
	if hc.Init == nil || !*hc.Init || hc.Privileged || !hc.ReadonlyRootfs || len(hc.Binds) > 0 || len(hc.Mounts) > 0 || len(got.Container.Mounts) > 0 {
		t.Errorf("host config: init %v, privileged %v, read-only %v, binds %v, mounts %v %v",
			hc.Init, hc.Privileged, hc.ReadonlyRootfs, hc.Binds, hc.Mounts, got.Container.Mounts)
	}
	if string(hc.NetworkMode) != NetworkHost {
		t.Errorf("network %q, want host", hc.NetworkMode)
	}
	for _, s := range append(append(slices.Clone(cfg.Cmd), cfg.Entrypoint...), got.Container.Args...) {
		if strings.Contains(s, "tok-secret-value") {
			t.Errorf("secret in the command line: %q", s)
		}
	}
	for k, v := range cfg.Labels {
		if strings.Contains(k+v, "tok-secret-value") {
			t.Errorf("secret in label %s=%s", k, v)
		}
	}
	if cfg.Labels[LabelController] != spec.ControllerID || cfg.Labels[LabelPool] != "pool-test" || cfg.Labels[LabelInstance] != spec.InstanceID {
		t.Errorf("labels %v", cfg.Labels)
	}
	eventually(t, "the script to report", func() bool {
		return strings.Contains(containerOutput(t, h.cli, inst), "ready")
	})
	out := containerOutput(t, h.cli, inst)
	if !strings.Contains(out, DefaultWorkspace+"\n") || !strings.Contains(out, "tmpfs "+DefaultWorkspace+" tmpfs") || !strings.Contains(out, "root-read-only") {
		t.Errorf("inside the container: want cwd %s on tmpfs and a read-only root; got:\n%s", DefaultWorkspace, out)
	}
}

// A command with a slash but not absolute resolves against the image's
// working directory (here /), a bare name through PATH.
func TestProvider_Create_relativeCommand(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	p := h.provider(t)
	for _, argv := range [][]string{
		{strings.TrimPrefix(runnerPath, "/"), providertest.RunnerArg},
		{"sh", "-c", "echo corral-test-runner: pid=$$; sleep 600"},
	} {
		spec := shSpec(t, h.host, providertest.Unique("ctl-"), "")
		spec.Bootstrap.Command = argv
		inst := create(t, p, spec)
		eventually(t, "the runner to start", func() bool {
			return strings.Contains(containerOutput(t, h.cli, inst), "corral-test-runner: pid=")
		})
	}
}

// After Delete nothing of the job is on the host's disk: the workspace was
// a tmpfs all along (the job's data never appears in the data root), and
// the container's directory and layer are gone.
func TestProvider_Delete_nothingOnDisk(t *testing.T) {
	h := newHarness(t, dockertest.Socket(t))
	root := h.dataRoot(t)
	if root == "" {
		t.Skip("the engine's data root is not on this host")
	}
	p := h.provider(t)
	// The data is computed inside, so it appears in no argument.
	spec := shSpec(t, h.host, providertest.Unique("ctl-"),
		`i=0; while [ $i -lt 2000 ]; do echo "corral-job-data-$((6*7))" >> job.txt; i=$((i+1)); done; echo written; sleep 600`)
	inst := create(t, p, spec)
	_, id, _ := splitID(inst.ProviderID)
	eventually(t, "the job to write", func() bool { return strings.Contains(containerOutput(t, h.cli, inst), "written") })
	got, err := h.cli.ContainerInspect(tctx(t), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for k, v := range got.Container.GraphDriver.Data {
		if strings.HasSuffix(k, "Dir") && strings.HasPrefix(v, root) {
			dirs = append(dirs, v)
		}
	}
	dirs = append(dirs, filepath.Join(root, "containers", id))
	if hits := grepTree(t, root, "corral-job-data-42", true); len(hits) > 0 {
		t.Errorf("the job's workspace data reached the disk: %v", hits)
	}
	if err := p.Delete(tctx(t), inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Delete (%v)", d, err)
		}
	}
	// The engine's bolt databases may keep the id in free pages: look at
	// names only.
	if hits := grepTree(t, root, id, false); len(hits) > 0 {
		t.Errorf("files named after the container left after Delete: %v", hits)
	}
}

// grepTree lists the files under root whose name (or, with content, whose
// content) holds s.
func grepTree(t testing.TB, root, s string, content bool) []string {
	var hits []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // racing with the engine
		}
		if strings.Contains(d.Name(), s) {
			hits = append(hits, p)
		}
		if !content || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestProvider_errors(t *testing.T) {
	t.Run("unreachable_engine", func(t *testing.T) {
		p, err := New(Config{Endpoints: []Endpoint{{Name: "gone", Host: "unix://" + filepath.Join(t.TempDir(), "no.sock")}}})
		if err != nil {
			t.Fatal(err)
		}
		spec := corral.InstanceSpec{InstanceID: "i1", Name: "corral-i1", ControllerID: "c", Image: "img",
			Bootstrap: corral.Bootstrap{Command: []string{"run"}, Env: map[string]corral.Secret{"TOKEN": "s3cret-value"}}}
		_, err = p.Create(tctx(t), spec)
		if !errors.Is(err, corral.ErrUnavailable) || strings.Contains(err.Error(), "s3cret-value") {
			t.Errorf("Create = %v, want ErrUnavailable without the secret", err)
		}
		if _, err := p.List(tctx(t), "c"); !errors.Is(err, corral.ErrUnavailable) {
			t.Errorf("List = %v, want ErrUnavailable", err)
		}
		if err := p.Delete(tctx(t), corral.ProviderInstance{ProviderID: "gone/abc", InstanceID: "i1"}); !errors.Is(err, corral.ErrUnavailable) {
			t.Errorf("Delete = %v, want ErrUnavailable", err)
		}
	})
	t.Run("bad_spec", func(t *testing.T) {
		p, err := New(Config{Endpoints: []Endpoint{{Host: "unix:///nonexistent.sock"}}})
		if err != nil {
			t.Fatal(err)
		}
		ok := corral.InstanceSpec{InstanceID: "i1", Name: "corral-i1", ControllerID: "c", Image: "img",
			Bootstrap: corral.Bootstrap{Command: []string{"run"}}}
		for name, mut := range map[string]func(*corral.InstanceSpec){
			"no_controller":   func(s *corral.InstanceSpec) { s.ControllerID = "" },
			"bad_name":        func(s *corral.InstanceSpec) { s.Name = "a/b" },
			"no_command":      func(s *corral.InstanceSpec) { s.Bootstrap.Command = nil },
			"reserved_env":    func(s *corral.InstanceSpec) { s.Bootstrap.Env = map[string]corral.Secret{envDeadline: "1"} },
			"file_escapes":    func(s *corral.InstanceSpec) { s.Bootstrap.Files = map[string]corral.Secret{"../x": "v"} },
			"absolute_file":   func(s *corral.InstanceSpec) { s.Bootstrap.Files = map[string]corral.Secret{"/etc/x": "v"} },
			"negative_flavor": func(s *corral.InstanceSpec) { s.Flavor.CPU = -1 },
		} {
			spec := ok
			mut(&spec)
			if _, err := p.Create(tctx(t), spec); !errors.Is(err, corral.ErrBadInput) {
				t.Errorf("%s: Create = %v, want ErrBadInput", name, err)
			}
		}
	})
}

func TestConfig_Validate(t *testing.T) {
	good := Endpoint{Name: "a", Host: "unix:///var/run/docker.sock"}
	for name, cfg := range map[string]Config{
		"no_endpoint":     {},
		"bad_scheme":      {Endpoints: []Endpoint{{Name: "a", Host: "http://h"}}},
		"remote_tcp_bare": {Endpoints: []Endpoint{{Name: "a", Host: "tcp://10.0.0.1:2375"}}},
		"cert_no_key":     {Endpoints: []Endpoint{{Name: "a", Host: "tcp://h:2376", TLSCA: "ca", TLSCert: "c"}}},
		"tls_on_unix":     {Endpoints: []Endpoint{{Name: "a", Host: "unix:///s", TLSCA: "ca"}}},
		"duplicate_name":  {Endpoints: []Endpoint{good, good}},
		"unnamed_of_two":  {Endpoints: []Endpoint{good, {Host: "unix:///s"}}},
		"bad_network":     {Endpoints: []Endpoint{good}, Network: "bridge"},
		"relative_ws":     {Endpoints: []Endpoint{good}, Workspace: "work"},
		"negative_max":    {Endpoints: []Endpoint{{Name: "a", Host: "unix:///s", MaxInstances: -1}}},
		"bad_dind_cap":    {Endpoints: []Endpoint{good}, DindCapabilities: []string{"CAP_SYS_ADMIN", "a b"}},
	} {
		if err := cfg.Validate(); !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("%s: Validate = %v, want ErrBadInput", name, err)
		}
	}
	for name, cfg := range map[string]Config{
		"unix":      {Endpoints: []Endpoint{{Host: "unix:///var/run/docker.sock"}}},
		"local_tcp": {Endpoints: []Endpoint{{Name: "a", Host: "tcp://127.0.0.1:2375"}}, Network: NetworkNone},
		"tls_tcp":   {Endpoints: []Endpoint{{Name: "a", Host: "tcp://h:2376", TLSCA: "ca", TLSCert: "c", TLSKey: "k"}}},
		"ssh":       {Endpoints: []Endpoint{{Name: "a", Host: "ssh://ci@h:2222"}}, ReadOnlyRoot: true},
		"dind":      {Endpoints: []Endpoint{good}, DindImage: "dind:1", DindCapabilities: []string{"CAP_SYS_ADMIN"}},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: Validate = %v, want nil", name, err)
		}
	}
}

func TestScrub(t *testing.T) {
	got := scrub("token abcdefgh and abcd in abcdefgh-x", []string{"abcd", "abcdefgh", "ab"})
	if got != "token [redacted] and [redacted] in [redacted]-x" {
		t.Errorf("scrub = %q", got)
	}
}
