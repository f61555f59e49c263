// Package providertest is the conformance suite that every corral.Provider
// passes: process, Docker and VM providers alike. A provider's tests call
// Run with a Harness that knows how to make providers on shared backing
// state and how to look at what an instance left on the host.
package providertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Harness adapts one provider implementation to the suite.
type Harness interface {
	// New returns a provider on the harness's backing state (a directory,
	// a Docker daemon, ...). Calling it again simulates a corral restart:
	// the new provider must find what the old one created.
	New(t *testing.T) corral.Provider
	// Image returns an image that runs the test runner (see RunTestRunner),
	// and Command the Bootstrap.Command that starts it in that image.
	Image(t *testing.T) string
	Command() []string
	// Output returns what the instance's runner printed so far.
	Output(t *testing.T, inst corral.ProviderInstance) string
	// Leftovers lists what remains on the host of the instance (files,
	// containers, volumes, disks); empty after a delete.
	Leftovers(t *testing.T, inst corral.ProviderInstance) []string
	// Processes counts the live processes of any instance whose command
	// line has an argument equal to marker.
	Processes(t *testing.T, marker string) int
}

// Patient is implemented by harnesses whose instances take longer than
// the suite's default wait to boot (virtual machines under emulation):
// waits for the runner use Wait() instead.
type Patient interface {
	Wait() time.Duration
}

// Timeouts of the suite. Every wait polls with a deadline.
const (
	waitFor  = 15 * time.Second
	pollStep = 10 * time.Millisecond
)

// Limited is implemented by a harness whose provider cannot pass some of
// the suite by the nature of its protocol (a protocol without a listing
// cannot see a runner exit). SkipReason returns why the named subtest
// does not apply, or "" to run it.
type Limited interface {
	SkipReason(test string) string
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"create_is_listed_running", testCreateListed},
		{"bootstrap_env_and_files", testBootstrap},
		{"delete_leaves_nothing", testDelete},
		{"list_ignores_other_controllers", testOtherController},
		{"runner_exit_is_not_running", testExit},
		{"deadline_kills_without_corral", testDeadline},
		{"restarted_provider_finds_survivor", testRestart},
		{"delete_kills_whole_tree", testTree},
		{"bad_image_fails_cleanly", testBadImage},
	} {
		t.Run(c.name, func(t *testing.T) {
			if l, ok := h.(Limited); ok {
				if why := l.SkipReason(c.name); why != "" {
					t.Skip(why)
				}
			}
			c.fn(t, h)
		})
	}
}

// Unique returns a short random name with the prefix, for ids and markers.
func Unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Spec returns a spec for the harness's test runner under controller, with
// the given CORRAL_TEST_* environment and a deadline far away.
func Spec(t *testing.T, h Harness, controller string, env map[string]corral.Secret) corral.InstanceSpec {
	id := Unique("inst-")
	return corral.InstanceSpec{
		InstanceID:   id,
		Name:         "corral-" + id,
		ControllerID: controller,
		PoolID:       "pool-test",
		Image:        h.Image(t),
		Flavor:       corral.Flavor{CPU: 1, MemoryMB: 256, Arch: "x64"},
		Labels:       []string{"self-hosted", "linux"},
		Bootstrap:    corral.Bootstrap{Command: h.Command(), Env: env, Files: map[string]corral.Secret{}},
		Deadline:     time.Now().Add(10 * time.Minute),
	}
}

// Create creates spec and registers a cleanup that deletes it.
func Create(t *testing.T, p corral.Provider, spec corral.InstanceSpec) corral.ProviderInstance {
	t.Helper()
	inst, err := p.Create(ctx(t), spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.InstanceID, err)
	}
	if inst.InstanceID != spec.InstanceID || inst.ProviderID == "" {
		t.Fatalf("Create returned %+v, want instance id %s and a provider id", inst, spec.InstanceID)
	}
	t.Cleanup(func() {
		if err := p.Delete(context.Background(), inst); err != nil {
			t.Errorf("cleanup: Delete(%s): %v", inst.ProviderID, err)
		}
	})
	return inst
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*waitFor)
	t.Cleanup(cancel)
	return c
}

// Eventually polls cond until it holds or the suite's timeout passes.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyFor(t, waitFor, what, cond)
}

// eventually is Eventually with the harness's patience.
func eventually(t *testing.T, h Harness, what string, cond func() bool) {
	t.Helper()
	d := waitFor
	if p, ok := h.(Patient); ok && p.Wait() > d {
		d = p.Wait()
	}
	eventuallyFor(t, d, what, cond)
}

func eventuallyFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pollStep)
	}
}

// Find lists controller's instances and returns the one with the id.
func Find(t *testing.T, p corral.Provider, controller, instanceID string) (corral.ProviderInstance, bool) {
	t.Helper()
	list, err := p.List(ctx(t), controller)
	if err != nil {
		t.Fatalf("List(%s): %v", controller, err)
	}
	i := slices.IndexFunc(list, func(pi corral.ProviderInstance) bool { return pi.InstanceID == instanceID })
	if i < 0 {
		return corral.ProviderInstance{}, false
	}
	return list[i], true
}

func deleteAndCheck(t *testing.T, h Harness, p corral.Provider, inst corral.ProviderInstance, controller string) {
	t.Helper()
	if err := p.Delete(ctx(t), inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, ok := Find(t, p, controller, inst.InstanceID); ok {
		t.Errorf("instance %s still listed after Delete", inst.InstanceID)
	}
	if left := h.Leftovers(t, inst); len(left) > 0 {
		t.Errorf("Delete left %v", left)
	}
}

func testCreateListed(t *testing.T, h Harness) {
	p := h.New(t)
	ctl := Unique("ctl-")
	inst := Create(t, p, Spec(t, h, ctl, nil))
	got, ok := Find(t, p, ctl, inst.InstanceID)
	if !ok || !got.Running {
		t.Fatalf("after Create, List gives %+v (found %v), want it running", got, ok)
	}
	if got.ProviderID != inst.ProviderID || got.PoolID != "pool-test" {
		t.Errorf("listed %+v, want provider id %s and pool pool-test", got, inst.ProviderID)
	}
	if got.CreatedAt.IsZero() {
		t.Errorf("listed instance has no creation time")
	}
}

func testBootstrap(t *testing.T, h Harness) {
	p := h.New(t)
	ctl := Unique("ctl-")
	spec := Spec(t, h, ctl, map[string]corral.Secret{
		EnvEcho:     "env-secret-value",
		EnvReadFile: "conf/token.txt",
	})
	spec.Bootstrap.Files["conf/token.txt"] = "file-secret-value"
	inst := Create(t, p, spec)
	want := []string{"echo=env-secret-value", "file=file-secret-value", "instance=" + spec.InstanceID}
	eventually(t, h, "the runner to print its bootstrap", func() bool {
		out := h.Output(t, inst)
		return !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(out, w) })
	})
}

func testDelete(t *testing.T, h Harness) {
	p := h.New(t)
	ctl := Unique("ctl-")
	inst := Create(t, p, Spec(t, h, ctl, nil))
	if err := p.Delete(ctx(t), inst); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, ok := Find(t, p, ctl, inst.InstanceID); ok {
		t.Errorf("instance %s still listed after Delete", inst.InstanceID)
	}
	if left := h.Leftovers(t, inst); len(left) > 0 {
		t.Errorf("Delete left %v", left)
	}
	if err := p.Delete(ctx(t), inst); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
	never := corral.ProviderInstance{ProviderID: Unique("never-"), InstanceID: Unique("never-")}
	if err := p.Delete(ctx(t), never); err != nil {
		t.Errorf("Delete of an instance that never existed: %v, want nil", err)
	}
}

func testOtherController(t *testing.T, h Harness) {
	p := h.New(t)
	mine, theirs := Unique("ctl-"), Unique("ctl-")
	a := Create(t, p, Spec(t, h, mine, nil))
	b := Create(t, p, Spec(t, h, theirs, nil))
	list, err := p.List(ctx(t), mine)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, pi := range list {
		ids = append(ids, pi.InstanceID)
	}
	if !slices.Contains(ids, a.InstanceID) || slices.Contains(ids, b.InstanceID) {
		t.Errorf("List(%s) = %v, want %s and not %s", mine, ids, a.InstanceID, b.InstanceID)
	}
}

// dumpOnFailure logs the end of the instance's runner output (for a VM:
// its console) if the test fails, before the instance is deleted.
func dumpOnFailure(t *testing.T, p corral.Provider, inst corral.ProviderInstance) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if l, ok := p.(corral.LogReader); ok {
			out, err := l.RunnerLog(context.Background(), inst, 8<<10)
			t.Logf("instance %s output (err %v):\n%s", inst.InstanceID, err, out)
		}
	})
}

func testExit(t *testing.T, h Harness) {
	p := h.New(t)
	ctl := Unique("ctl-")
	inst := Create(t, p, Spec(t, h, ctl, map[string]corral.Secret{EnvRunFor: "200ms"}))
	dumpOnFailure(t, p, inst)
	eventually(t, h, "the exited runner to be listed as not running", func() bool {
		got, ok := Find(t, p, ctl, inst.InstanceID)
		return ok && !got.Running
	})
	if n, ok := p.(corral.ExitNotifier); ok {
		wait := waitFor
		if p, ok := h.(Patient); ok {
			wait = max(wait, p.Wait())
		}
		timeout := time.After(wait)
		for got := ""; got != inst.InstanceID; {
			select {
			case got = <-n.Exited():
			case <-timeout:
				t.Fatalf("Exited() did not report %s", inst.InstanceID)
			}
		}
	}
	if !strings.Contains(h.Output(t, inst), "corral-test-runner: done") {
		t.Errorf("runner output lacks its exit line:\n%s", h.Output(t, inst))
	}
}

func testDeadline(t *testing.T, h Harness) {
	ctl := Unique("ctl-")
	spec := Spec(t, h, ctl, nil)
	spec.Deadline = time.Now().Add(time.Second)
	inst := Create(t, h.New(t), spec)
	// From here on corral's provider object is not involved: another one
	// only looks.
	watcher := h.New(t)
	if got, ok := Find(t, watcher, ctl, inst.InstanceID); !ok || !got.Running {
		if time.Now().Before(spec.Deadline) {
			t.Fatalf("before the deadline List gives %+v (found %v), want it running", got, ok)
		}
	}
	eventually(t, h, "the deadline to stop the runner", func() bool {
		got, ok := Find(t, watcher, ctl, inst.InstanceID)
		return ok && !got.Running
	})
	if time.Now().Before(spec.Deadline) {
		t.Errorf("runner stopped before its deadline")
	}
	deleteAndCheck(t, h, watcher, inst, ctl)
}

func testRestart(t *testing.T, h Harness) {
	ctl := Unique("ctl-")
	inst := Create(t, h.New(t), Spec(t, h, ctl, nil))
	restarted := h.New(t)
	got, ok := Find(t, restarted, ctl, inst.InstanceID)
	if !ok || !got.Running {
		t.Fatalf("restarted provider lists %+v (found %v), want the survivor running", got, ok)
	}
	deleteAndCheck(t, h, restarted, got, ctl)
}

func testTree(t *testing.T, h Harness) {
	p := h.New(t)
	ctl := Unique("ctl-")
	marker := Unique("corral-gc-")
	inst := Create(t, p, Spec(t, h, ctl, map[string]corral.Secret{EnvGrandchild: corral.Secret(marker)}))
	eventually(t, h, "the grandchild to start", func() bool { return h.Processes(t, marker) > 0 })
	deleteAndCheck(t, h, p, inst, ctl)
	if n := h.Processes(t, marker); n > 0 {
		t.Errorf("%d processes of the instance's tree survived Delete", n)
	}
}

func testBadImage(t *testing.T, h Harness) {
	p := h.New(t)
	ctl := Unique("ctl-")
	spec := Spec(t, h, ctl, nil)
	spec.Image += "-no-such-image"
	_, err := p.Create(ctx(t), spec)
	if err == nil {
		t.Fatalf("Create with image %q succeeded", spec.Image)
	}
	if !errors.Is(err, corral.ErrNotFound) || !strings.Contains(err.Error(), "no-such-image") {
		t.Errorf("Create error %q: want ErrNotFound naming the image", err)
	}
	inst := corral.ProviderInstance{ProviderID: spec.InstanceID, InstanceID: spec.InstanceID}
	if left := h.Leftovers(t, inst); len(left) > 0 {
		t.Errorf("failed Create left %v", left)
	}
	if _, ok := Find(t, p, ctl, spec.InstanceID); ok {
		t.Errorf("failed Create is listed")
	}
}
