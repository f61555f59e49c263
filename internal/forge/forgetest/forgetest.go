// Package forgetest is the conformance suite of the corral.Forge port:
// every forge client (GitHub on the stand-in GitHub, Gitea on a real
// Gitea, ...) passes the same contract. A forge's test calls Run with a
// Harness that knows how to queue a job at the forge and how to run a
// runner from a bootstrap.
package forgetest

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

// Harness adapts one forge to the suite. Every method fails the test on
// error.
type Harness interface {
	// Forge returns a client of the harness's target whose runner prefix
	// is prefix. Two prefixes give two clients on the same target.
	Forge(t *testing.T, prefix string) corral.Forge
	// QueueJob queues one job at the target whose runs-on labels are
	// labels, and that runs for busyFor once a runner takes it. It returns
	// the job's repository (owner/name).
	QueueJob(t *testing.T, labels []string, busyFor time.Duration) string
	// StartRunner starts a runner from b, as a provider would (b's
	// command, environment and files) in a directory of its own. It runs
	// until its job ends or the test does.
	StartRunner(t *testing.T, name string, b corral.Bootstrap)
	// CredentialEnv names the bootstrap's environment variable that
	// carries the runner credential (JIT config, registration token).
	CredentialEnv() string
}

// Timeouts of the suite; every wait polls with a deadline.
const (
	WaitFor  = 90 * time.Second // a real forge and runner can be slow on a loaded machine
	pollStep = 200 * time.Millisecond
)

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("mint_bootstrap_keeps_secrets_out_of_argv", func(t *testing.T) { testMint(t, h) })
	t.Run("open_jobs_and_lookup", func(t *testing.T) { testOpenJobs(t, h) })
	t.Run("job_unknown_is_not_found", func(t *testing.T) { testJobNotFound(t, h) })
	t.Run("runners_limited_to_prefix", func(t *testing.T) { testPrefix(t, h) })
	t.Run("remove_idle_runner", func(t *testing.T) { testRemoveIdle(t, h) })
	t.Run("remove_busy_runner_is_busy", func(t *testing.T) { testRemoveBusy(t, h) })
	t.Run("remove_gone_runner_is_nil", func(t *testing.T) { testRemoveGone(t, h) })
}

// Unique returns prefix and a short random suffix, for names and labels.
func Unique(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*WaitFor)
	t.Cleanup(cancel)
	return c
}

// Eventually polls cond until it holds or WaitFor passes.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", WaitFor, what)
		}
		time.Sleep(pollStep)
	}
}

func mint(t *testing.T, f corral.Forge, name string, labels []string) corral.Bootstrap {
	t.Helper()
	b, err := f.MintRunner(ctx(t), corral.RunnerSpec{Name: name, Labels: labels, InstanceID: name})
	if err != nil {
		t.Fatalf("MintRunner(%s): %v", name, err)
	}
	return b
}

func runners(t *testing.T, f corral.Forge) []corral.Runner {
	t.Helper()
	rs, err := f.Runners(ctx(t))
	if err != nil {
		t.Fatalf("Runners: %v", err)
	}
	return rs
}

func find(rs []corral.Runner, name string) (corral.Runner, bool) {
	i := slices.IndexFunc(rs, func(r corral.Runner) bool { return r.Name == name })
	if i < 0 {
		return corral.Runner{}, false
	}
	return rs[i], true
}

// online starts a runner for a fresh mint under prefix and waits until the
// forge lists it online; it returns the listed runner.
func online(t *testing.T, h Harness, f corral.Forge, prefix string, labels []string) corral.Runner {
	t.Helper()
	name := Unique(prefix)
	h.StartRunner(t, name, mint(t, f, name, labels))
	var r corral.Runner
	Eventually(t, "runner "+name+" listed online", func() bool {
		var ok bool
		r, ok = find(runners(t, f), name)
		return ok && r.Online
	})
	return r
}

func testMint(t *testing.T, h Harness) {
	prefix := Unique("corral-ft-")
	f := h.Forge(t, prefix)
	b := mint(t, f, prefix+"-mint", []string{"self-hosted", "linux"})
	if len(b.Command) == 0 {
		t.Fatal("bootstrap has no command")
	}
	cred := b.Env[h.CredentialEnv()].Reveal()
	if cred == "" {
		t.Fatalf("bootstrap environment lacks the credential %s", h.CredentialEnv())
	}
	for _, arg := range b.Command {
		if strings.Contains(arg, cred) {
			t.Errorf("a command argument carries the credential: it goes in the environment, never in argv (other users see argv)")
		}
	}
	b2 := mint(t, f, prefix+"-mint2", []string{"self-hosted", "linux"})
	if b2.Env[h.CredentialEnv()].Reveal() == "" {
		t.Errorf("second mint has no credential")
	}
}

func testOpenJobs(t *testing.T, h Harness) {
	f := h.Forge(t, Unique("corral-ft-"))
	label := Unique("ft-open-")
	repo := h.QueueJob(t, []string{"self-hosted", label}, time.Second)
	var ev corral.JobEvent
	Eventually(t, "the queued job in OpenJobs", func() bool {
		evs, err := f.OpenJobs(ctx(t))
		if err != nil {
			t.Fatalf("OpenJobs: %v", err)
		}
		i := slices.IndexFunc(evs, func(e corral.JobEvent) bool { return slices.Contains(e.Labels, label) })
		if i >= 0 {
			ev = evs[i]
		}
		return i >= 0
	})
	if ev.ForgeJobID == 0 || (ev.Action != corral.ActionQueued && ev.Action != corral.ActionWaiting) || !strings.EqualFold(ev.Repo, repo) {
		t.Errorf("open job %+v: want an id, action queued (or waiting), repo %s", ev, repo)
	}
	got, err := f.Job(ctx(t), ev.ForgeJobID, ev.Repo)
	if err != nil {
		t.Fatalf("Job(%d): %v", ev.ForgeJobID, err)
	}
	if got.ForgeJobID != ev.ForgeJobID || got.Action != ev.Action || !slices.Contains(got.Labels, label) {
		t.Errorf("Job(%d) = %+v, want the open job %+v", ev.ForgeJobID, got, ev)
	}
}

func testJobNotFound(t *testing.T, h Harness) {
	f := h.Forge(t, Unique("corral-ft-"))
	repo := h.QueueJob(t, []string{"self-hosted", Unique("ft-nf-")}, time.Second) // the repository exists
	_, err := f.Job(ctx(t), 987_654_321_012, repo)
	if !errors.Is(err, corral.ErrNotFound) {
		t.Errorf("Job of an unknown id: %v, want ErrNotFound", err)
	}
}

func testPrefix(t *testing.T, h Harness) {
	mine, theirs := Unique("corral-ft-"), Unique("other-ft-")
	fm, ft := h.Forge(t, mine), h.Forge(t, theirs)
	a := online(t, h, fm, mine, []string{"self-hosted", Unique("ft-none-")})
	b := online(t, h, ft, theirs, []string{"self-hosted", Unique("ft-none-")})
	rs := runners(t, fm)
	if _, ok := find(rs, a.Name); !ok {
		t.Errorf("Runners lacks %s", a.Name)
	}
	for _, r := range rs {
		if !strings.HasPrefix(r.Name, mine) {
			t.Errorf("Runners of prefix %s lists %s", mine, r.Name)
		}
	}
	if _, ok := find(rs, b.Name); ok {
		t.Errorf("Runners of prefix %s lists %s of another prefix", mine, b.Name)
	}
}

func testRemoveIdle(t *testing.T, h Harness) {
	prefix := Unique("corral-ft-")
	f := h.Forge(t, prefix)
	r := online(t, h, f, prefix, []string{"self-hosted", Unique("ft-none-")})
	if r.Busy {
		t.Fatalf("runner %s busy without a job for it", r.Name)
	}
	if err := f.RemoveRunner(ctx(t), r); err != nil {
		t.Fatalf("RemoveRunner of idle %s: %v", r.Name, err)
	}
	Eventually(t, "the removed runner gone from Runners", func() bool {
		_, ok := find(runners(t, f), r.Name)
		return !ok
	})
}

func testRemoveBusy(t *testing.T, h Harness) {
	prefix := Unique("corral-ft-")
	f := h.Forge(t, prefix)
	label := Unique("ft-busy-")
	h.QueueJob(t, []string{"self-hosted", label}, 2*WaitFor)
	name := Unique(prefix)
	h.StartRunner(t, name, mint(t, f, name, []string{"self-hosted", label}))
	var r corral.Runner
	Eventually(t, "runner "+name+" busy", func() bool {
		var ok bool
		r, ok = find(runners(t, f), name)
		return ok && r.Busy
	})
	err := f.RemoveRunner(ctx(t), r)
	if !errors.Is(err, corral.ErrBusy) {
		t.Fatalf("RemoveRunner of busy %s: %v, want ErrBusy", name, err)
	}
	if _, ok := find(runners(t, f), name); !ok {
		t.Errorf("busy runner %s no longer listed after a refused removal", name)
	}
}

func testRemoveGone(t *testing.T, h Harness) {
	prefix := Unique("corral-ft-")
	f := h.Forge(t, prefix)
	r := online(t, h, f, prefix, []string{"self-hosted", Unique("ft-none-")})
	if err := f.RemoveRunner(ctx(t), r); err != nil {
		t.Fatalf("RemoveRunner: %v", err)
	}
	Eventually(t, "the removed runner gone", func() bool {
		_, ok := find(runners(t, f), r.Name)
		return !ok
	})
	if err := f.RemoveRunner(ctx(t), r); err != nil {
		t.Errorf("second RemoveRunner of %s: %v, want nil", r.Name, err)
	}
	never := corral.Runner{ID: 987_654_321, Name: prefix + "-never"}
	if err := f.RemoveRunner(ctx(t), never); err != nil {
		t.Errorf("RemoveRunner of a runner that never existed: %v, want nil", err)
	}
}
