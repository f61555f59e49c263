package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// runDoctor runs `corral doctor` (the built binary) and returns its output
// and exit status.
func runDoctor(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(corralBin, append([]string{"doctor"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("corral doctor: %v\n%s", err, out)
	}
	return string(out), 0
}

// lineOf returns the output line of a check ("credentials e2e").
func lineOf(out, check string) string {
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 6 && strings.HasPrefix(strings.TrimSpace(l[6:]), check+" ") {
			return l
		}
	}
	return ""
}

// TestDoctor runs `corral doctor` against a good setup (a corral serve that
// took a job, its store, its process provider, a valid token, a webhook
// whose deliveries corral accepted) and then against a broken one: a bad
// token, a Docker endpoint on a unix socket nobody serves, a webhook whose
// secret differs from corral's (deliveries answered 401 by the running
// corral, read back from the stand-in) and a forge whose clock is two
// minutes ahead (the stand-in's Date header).
func TestDoctor(t *testing.T) {
	r := newRig(t, standin.Options{}, setup{PoolMax: 2})
	skewed := e2etest.NewGitHub(t, standin.Options{Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	// admin:org_hook lets doctor read the organization's webhooks and
	// their deliveries (corral itself does not need it).
	r.AddPAT(r.Token, "repo", "admin:org", "admin:org_hook")
	skewed.AddPAT(skewed.Token, "repo", "admin:org", "admin:org_hook")
	const wrongSecret = "not-the-secret-corral-has"
	skewed.AddHook(skewed.Org, "http://"+r.listen+"/webhooks/skewed", corral.Secret(wrongSecret))
	r.cfg.Targets = append(r.cfg.Targets, skewed.Target("skewed", "corral-skewed"))
	r.start(t)

	id := r.queue(1, []string{"corral"}, 200*time.Millisecond)
	skewed.Queue("unroutable", []string{"no-such-pool"}, time.Second)
	waitFor(t, 60*time.Second, "the good job completed and the skewed forge's delivery refused", func() bool {
		done := false
		for _, j := range r.Jobs() {
			done = done || (j.ID == id && j.Status == standin.StatusCompleted)
		}
		return done && skewed.Stats().Webhooks.Failed > 0
	})

	t.Run("good setup exits 0", func(t *testing.T) {
		good := r.cfg
		good.Targets = good.Targets[:1]
		out, code := runDoctor(t, r.Env(), "-config", e2etest.WriteConfig(t, good))
		t.Logf("corral doctor (good):\n%s", out)
		if code != 0 {
			t.Fatalf("exit status %d, want 0", code)
		}
		for _, check := range []string{"config", "store", "provider process", "credentials e2e", "clock e2e", "webhook e2e", "runner cache"} {
			if l := lineOf(out, check); !strings.HasPrefix(l, "ok") {
				t.Errorf("check %q: line %q, want ok", check, l)
			}
		}
		if l := lineOf(out, "webhook e2e"); !strings.Contains(l, "all accepted") {
			t.Errorf("webhook line %q does not say the deliveries were accepted", l)
		}
	})

	t.Run("broken setup names each fault and exits non-zero", func(t *testing.T) {
		const badToken = "ghp_thisTokenIsNotKnownToTheStandIn0000"
		bad := r.cfg
		badTarget := r.Target("e2e", "corral-e2e")
		badTarget.Token = "env:E2E_BAD_TOKEN"
		bad.Targets = []e2etest.Target{badTarget, skewed.Target("skewed", "corral-skewed")}
		sock := filepath.Join(t.TempDir(), "nobody.sock") // no daemon serves it
		bad.Docker = &e2etest.Docker{Endpoints: []e2etest.Endpoint{{Name: "gone", Host: "unix://" + sock}}}
		bad.Pools = append(bad.Pools, e2etest.Pool{ID: "docker", Labels: []string{"docker"}, Provider: "docker", Image: "corral-runner:none",
			Flavor: "2cpu4gb10gb", MaxInstances: 1})
		env := append(r.Env(), "E2E_BAD_TOKEN="+badToken)
		cfgPath := e2etest.WriteConfig(t, bad)
		out, code := runDoctor(t, env, "-config", cfgPath)
		t.Logf("corral doctor (broken):\n%s", out)
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		want := map[string]string{
			"credentials e2e":    "refused the token",
			"provider docker":    "cannot list instances",
			"webhook skewed":     "the webhook secret differs",
			"clock skewed":       "ahead of this host's",
			"credentials skewed": "token accepted",
		}
		for check, says := range want {
			l := lineOf(out, check)
			wantTag := "FAIL"
			if check == "credentials skewed" {
				wantTag = "ok"
			}
			if !strings.HasPrefix(l, wantTag) || !strings.Contains(l, says) {
				t.Errorf("check %q: line %q, want %s saying %q", check, l, wantTag, says)
			}
		}
		for _, secret := range []string{badToken, r.Token, r.Secret.Reveal(), wrongSecret} {
			if strings.Contains(out, secret) {
				t.Errorf("the output holds a secret (%d characters)", len(secret))
			}
		}

		js, code := runDoctor(t, env, "-config", cfgPath, "-o", "json")
		if code != 1 {
			t.Errorf("-o json: exit status %d, want 1", code)
		}
		var rep struct {
			OK     bool
			Checks []struct{ Check, Status, Message, Fix string }
		}
		if err := json.Unmarshal([]byte(js), &rep); err != nil {
			t.Fatalf("-o json: %v\n%s", err, js)
		}
		fails := map[string]bool{}
		for _, c := range rep.Checks {
			if c.Status == "fail" {
				fails[c.Check] = true
				if c.Fix == "" {
					t.Errorf("-o json: failed check %q says no fix", c.Check)
				}
			}
		}
		if rep.OK || !fails["credentials e2e"] || !fails["provider docker"] || !fails["webhook skewed"] || !fails["clock skewed"] {
			t.Errorf("-o json: ok=%v, failed checks %v", rep.OK, fails)
		}
	})
}
