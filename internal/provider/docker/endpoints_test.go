package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

// Two engines: placement by free capacity, ErrLimit when both are full,
// then one engine stops mid-run: creates skip it, List leaves out its
// instances without failing, and deleting one of them is ErrUnavailable.
func TestProvider_endpoints(t *testing.T) {
	a, b := dockertest.NewDaemon(t), dockertest.NewDaemon(t)
	img := runnerImage(t, a.Host())
	if runnerImage(t, b.Host()) != img {
		t.Fatal("the same content gave two image names")
	}
	p, err := New(Config{Endpoints: []Endpoint{
		{Name: "a", Host: a.Host(), MaxInstances: 3},
		{Name: "b", Host: b.Host(), MaxInstances: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctl := providertest.Unique("ctl-")
	spec := func() corral.InstanceSpec {
		id := providertest.Unique("inst-")
		return corral.InstanceSpec{
			InstanceID: id, Name: "corral-" + id, ControllerID: ctl, PoolID: "pool-test", Image: img,
			Flavor:    corral.Flavor{CPU: 1, MemoryMB: 64},
			Bootstrap: corral.Bootstrap{Command: []string{runnerPath, providertest.RunnerArg}},
			Deadline:  time.Now().Add(10 * time.Minute),
		}
	}
	on := map[string][]corral.ProviderInstance{}
	for range 4 {
		inst := create(t, p, spec())
		ep, _, _ := splitID(inst.ProviderID)
		on[ep] = append(on[ep], inst)
	}
	// Free capacity a:3 b:1 -> a; a:2 b:1 -> a; a:1 b:1 -> a (first); a:0 -> b.
	if len(on["a"]) != 3 || len(on["b"]) != 1 {
		t.Fatalf("placement: %d on a, %d on b; want 3 and 1", len(on["a"]), len(on["b"]))
	}
	if _, err := p.Create(tctx(t), spec()); !errors.Is(err, corral.ErrLimit) {
		t.Fatalf("Create beyond both maxima = %v, want ErrLimit", err)
	}
	if list := listIDs(t, p, ctl); len(list) != 4 {
		t.Fatalf("List gives %d instances, want 4", len(list))
	}
	// Capacity (corral doctor) counts the places taken on each engine.
	if sum, err := p.Capacity(tctx(t)); err != nil || sum != "a: 3 of 3 places taken; b: 1 of 1 places taken" {
		t.Fatalf("Capacity = %q, %v", sum, err)
	}
	half, err := New(Config{Endpoints: []Endpoint{{Name: "a", Host: a.Host()},
		{Name: "gone", Host: "unix://" + filepath.Join(t.TempDir(), "nobody.sock")}}})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := half.Capacity(tctx(t))
	half.Close()
	if err == nil || !strings.Contains(sum, "a: 3 containers, no cap") || !strings.Contains(sum, "gone: does not answer") {
		t.Fatalf("Capacity with one engine down = %q, %v", sum, err)
	}

	// b goes down with its instance.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	list := listIDs(t, p, ctl)
	if len(list) != 3 || slices.Contains(list, on["b"][0].InstanceID) {
		t.Errorf("List with b down = %v, want the 3 of a only", list)
	}
	if _, err := p.Create(tctx(t), spec()); !errors.Is(err, corral.ErrLimit) {
		t.Errorf("Create with a full and b down = %v, want ErrLimit", err)
	}
	if err := p.Delete(tctx(t), on["b"][0]); !errors.Is(err, corral.ErrUnavailable) {
		t.Errorf("Delete on the stopped engine = %v, want ErrUnavailable", err)
	}
	if err := p.Delete(tctx(t), on["a"][0]); err != nil {
		t.Fatal(err)
	}
	inst := create(t, p, spec())
	if ep, _, _ := splitID(inst.ProviderID); ep != "a" {
		t.Errorf("Create with b down went to %q, want a", ep)
	}
}

func listIDs(t *testing.T, p *Provider, ctl string) []string {
	t.Helper()
	list, err := p.List(tctx(t), ctl)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, pi := range list {
		if pi.Running {
			ids = append(ids, pi.InstanceID)
		}
	}
	return ids
}

// An ssh:// endpoint reaches the engine through `ssh ... docker system
// dial-stdio`; here the test binary plays ssh. Bootstrap files go through
// the attach stream, which needs the connection's half-close.
func TestProvider_ssh(t *testing.T) {
	host := dockertest.Socket(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{
		Endpoints:  []Endpoint{{Name: "remote", Host: "ssh://ci@build-host.invalid:2222"}},
		SSHCommand: []string{exe, fakeSSHArg, strings.TrimPrefix(host, "unix://")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := newHarness(t, host)
	ctl := providertest.Unique("ctl-")
	spec := shSpec(t, host, ctl, `cat conf/token; echo; sleep 600`)
	spec.Bootstrap.Files = map[string]corral.Secret{"conf/token": "file-over-ssh"}
	inst := create(t, p, spec)
	eventually(t, "the file to arrive over ssh", func() bool {
		return strings.Contains(containerOutput(t, h.cli, inst), "file-over-ssh")
	})
	if ids := listIDs(t, p, ctl); !slices.Equal(ids, []string{spec.InstanceID}) {
		t.Errorf("List over ssh = %v", ids)
	}
	if err := p.Delete(context.Background(), inst); err != nil {
		t.Errorf("Delete over ssh: %v", err)
	}
}
