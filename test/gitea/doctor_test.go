package gitea

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// TestGitea_Doctor runs `corral doctor` against the real Gitea: with the
// rig's token the credentials and clock checks pass and it exits 0; with
// a token Gitea does not know it names the fault and exits 1.
func TestGitea_Doctor(t *testing.T) {
	r := newRig(t)
	cfg := e2etest.WriteConfig(t, r.cfg)
	doctor := func(token string) (string, int) {
		cmd := exec.Command(corralBin, "doctor", "-config", cfg)
		cmd.Env = append(os.Environ(), "E2E_HOOK_SECRET="+r.secret, "E2E_GITEA_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("corral doctor: %v\n%s", err, out)
		}
		return string(out), 0
	}
	out, code := doctor(r.g.token)
	t.Logf("corral doctor (good token):\n%s", out)
	if code != 0 || !strings.Contains(out, "ok    credentials "+r.id+" ") || !strings.Contains(out, "ok    clock "+r.id+" ") {
		t.Errorf("good token: exit %d, want 0 with credentials and clock ok", code)
	}
	const bad = "0123456789abcdef0123456789abcdef01234567"
	out, code = doctor(bad)
	t.Logf("corral doctor (bad token):\n%s", out)
	if code != 1 || !strings.Contains(out, "FAIL  credentials "+r.id+" ") || !strings.Contains(out, "refused the token") {
		t.Errorf("bad token: exit %d, want 1 with the credentials failure", code)
	}
	for _, s := range []string{bad, r.g.token, r.secret} {
		if strings.Contains(out, s) {
			t.Errorf("the output holds a secret (%d characters)", len(s))
		}
	}
}

// TestGitea_DoctorPollMode: for a target in mode poll with no webhook
// secret, doctor polls the real Gitea's waiting-jobs listing once and
// says so, and the config passes without a webhook secret.
func TestGitea_DoctorPollMode(t *testing.T) {
	r := newRigWith(t, rigOptions{Poll: true, PollInterval: "3s"})
	cfg := e2etest.WriteConfig(t, r.cfg)
	cmd := exec.Command(corralBin, "doctor", "-config", cfg)
	cmd.Env = append(os.Environ(), "E2E_GITEA_TOKEN="+r.g.token)
	out, err := cmd.CombinedOutput()
	t.Logf("corral doctor (mode poll):\n%s", out)
	if err != nil {
		t.Errorf("corral doctor: %v", err)
	}
	if want := "ok    jobs " + r.id + " "; !strings.Contains(string(out), want) || !strings.Contains(string(out), "polled every 3s, no webhook needed") {
		t.Errorf("the output lacks %q with the poll interval", want)
	}
}
