package gitea

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// Environment of the bootstrap script. EnvToken carries the registration
// token: it is never on a command line of corral's, never in a file, and the
// script unsets it before the daemon starts (jobs never see it).
const (
	EnvURL    = "CORRAL_FORGE_URL"
	EnvToken  = "CORRAL_RUNNER_TOKEN"
	EnvName   = "CORRAL_RUNNER_NAME"
	EnvLabels = "CORRAL_RUNNER_LABELS"
	EnvBinary = "CORRAL_RUNNER_BIN"
)

// Runner programs.
const (
	GiteaRunner   = "gitea-runner"
	ForgejoRunner = "forgejo-runner"
)

// ConfigFile is the runner configuration the bootstrap writes into the
// runner's working directory.
const ConfigFile = "config.yaml"

// BootstrapScript registers an ephemeral runner and runs it. The instance
// runs it as `sh -c BootstrapScript` (Bootstrap.Command), in the runner's
// working directory, where ConfigFile is written.
//
// It finds the runner program ($CORRAL_RUNNER_BIN, gitea-runner by
// default) next to the shell when the shell was started by path, as the
// process provider does with a directory image (image/sh, image/gitea-runner:
// $0 is then image/sh), else on PATH (a container image). So a process
// provider image is a directory holding gitea-runner and sh (a link to a
// POSIX shell); a container image needs sh and gitea-runner on PATH.
//
// `register` sees the token as an argument for the moment it runs
// (gitea-runner reads it from no other place); the daemon does not.
// Exit status 78 means the registration failed (token refused, forge
// unreachable).
const BootstrapScript = `set -eu
bin=${CORRAL_RUNNER_BIN:-gitea-runner}
case "$0" in
*/*) if [ -x "${0%/*}/$bin" ]; then bin="${0%/*}/$bin"; fi ;;
esac
tok=$CORRAL_RUNNER_TOKEN
unset CORRAL_RUNNER_TOKEN
if ! "$bin" -c config.yaml register --no-interactive --ephemeral \
	--instance "$CORRAL_FORGE_URL" --token "$tok" \
	--name "$CORRAL_RUNNER_NAME" --labels "$CORRAL_RUNNER_LABELS"; then
	echo "corral bootstrap: runner registration failed" >&2
	exit 78
fi
tok=
exec "$bin" -c config.yaml daemon
`

// RunnerConfig is the runner's config.yaml: one job at a time, quick
// polling and reporting (the latency from queued to started is mostly the
// first poll), no cache server (it would open a port), labels from the
// registration (no runner.labels, which would override them).
const RunnerConfig = `log:
  level: info
runner:
  file: .runner
  capacity: 1
  timeout: 3h
  shutdown_timeout: 5s
  fetch_timeout: 5s
  fetch_interval: 500ms
  fetch_interval_max: 2s
  log_report_interval: 1s
  log_report_max_latency: 1s
  state_report_interval: 1s
  report_close_timeout: 5s
cache:
  enabled: false
container:
  force_pull: false
`

// RunnerLabels turns a job's labels into the runner's label syntax: each
// name runs on the host ("name:host"), comma separated. A label that the
// syntax cannot carry (a comma, a colon, a blank) is refused.
func RunnerLabels(labels []string) (string, error) {
	if len(labels) == 0 {
		return "", fmt.Errorf("runner labels: none given: %w", corral.ErrBadInput)
	}
	out := make([]string, 0, len(labels))
	seen := map[string]bool{}
	for _, l := range labels {
		if l == "" || strings.ContainsAny(l, ",: \t\r\n") {
			return "", fmt.Errorf("runner labels: %q cannot be a Gitea runner label (no comma, colon or blank): %w", l, corral.ErrBadInput)
		}
		if seen[l] {
			continue
		}
		seen[l] = true
		out = append(out, l+":host")
	}
	return strings.Join(out, ","), nil
}

// MintRunner returns the bootstrap of one ephemeral runner registered with
// exactly spec.Labels. The registration token comes from the cache: one API
// call when it is empty or due for rotation, none otherwise. Bootstrap's
// RunnerID is 0: the runner gets its id when it registers.
func (c *Client) MintRunner(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "\x00\r\n") {
		return corral.Bootstrap{}, fmt.Errorf("mint runner [%s]: runner name %q: %w", c.t.ID, spec.Name, corral.ErrBadInput)
	}
	if c.oneJob() {
		return c.mintOneJob(ctx, spec)
	}
	labels, err := RunnerLabels(spec.Labels)
	if err != nil {
		return corral.Bootstrap{}, fmt.Errorf("mint runner [%s]: %w", c.t.ID, err)
	}
	tok, err := c.registrationToken(ctx)
	if err != nil {
		return corral.Bootstrap{}, err
	}
	bin := GiteaRunner
	if c.forgejo {
		bin = ForgejoRunner
	}
	return corral.Bootstrap{
		Command: []string{"sh", "-c", BootstrapScript},
		Env: map[string]corral.Secret{
			EnvURL:    corral.Secret(c.runURL),
			EnvToken:  tok,
			EnvName:   corral.Secret(spec.Name),
			EnvLabels: corral.Secret(labels),
			EnvBinary: corral.Secret(bin),
		},
		Files: map[string]corral.Secret{ConfigFile: RunnerConfig},
	}, nil
}

// registrationToken returns the cached token, fetching it when the cache
// is empty or older than RotateEvery. Concurrent callers share one fetch.
func (c *Client) registrationToken(ctx context.Context) (corral.Secret, error) {
	if tok, ok := c.cached(); ok {
		return tok, nil
	}
	select {
	case c.tok.sem <- struct{}{}:
	case <-ctx.Done():
		return "", &corral.CallError{Op: "registration-token", Target: c.t.ID, Err: ctx.Err()}
	}
	defer func() { <-c.tok.sem }()
	if tok, ok := c.cached(); ok {
		return tok, nil // fetched meanwhile by another caller
	}
	const op = "registration-token"
	path := c.scope + "/actions/runners/registration-token"
	b, _, err := c.do(ctx, op, http.MethodPost, path, nil, http.StatusOK, http.StatusCreated)
	if err != nil {
		return "", err
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		return "", c.malformed(op, http.MethodPost, path, fmt.Errorf("no token"))
	}
	c.tok.mu.Lock()
	fresh := c.tok.val.Reveal() != out.Token
	c.tok.val, c.tok.at = corral.Secret(out.Token), c.clock.Now()
	c.tok.mu.Unlock()
	c.log.Info("registration token fetched", "changed", fresh)
	return corral.Secret(out.Token), nil
}

func (c *Client) cached() (corral.Secret, bool) {
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	if c.tok.val == "" {
		return "", false
	}
	if c.rotate > 0 && c.clock.Now().Sub(c.tok.at) >= c.rotate {
		return "", false
	}
	return c.tok.val, true
}

// ForgetToken drops the cached registration token, so that the next
// MintRunner fetches the current one: call it when runners report that the
// forge refused their token (bootstrap exit status 78), or after replacing
// the token at the forge.
func (c *Client) ForgetToken() {
	c.tok.mu.Lock()
	c.tok.val = ""
	c.tok.mu.Unlock()
}

// ErrTokenRefused: the forge refused the registration token a runner
// presented (replaced or deleted at the forge).
var ErrTokenRefused = errors.New("runner registration token refused by the forge")

// Gitea's answers to a registration with a token it does not accept, as
// gitea-runner prints them.
var refusals = []string{
	"runner registration token not found",
	"runner registration token has been invalidated",
}

// DiagnoseRunner implements corral.RunnerDiagnoser: in the output of a
// runner that exited without a job, it recognises Gitea's refusal of the
// registration token, drops the cached token (so the next MintRunner
// fetches the current one) and says so.
func (c *Client) DiagnoseRunner(output string) error {
	for _, s := range refusals {
		if strings.Contains(output, s) {
			c.ForgetToken()
			c.log.Warn("the forge refused the cached registration token; fetching it again for the next runner")
			return fmt.Errorf("%w (%s): the next runner gets the current token", ErrTokenRefused, s)
		}
	}
	return nil
}
