package gitea

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/corral-ci/corral/internal/corral"
)

// Forgejo one-job mode (target mode one-job, Forgejo ≥ 15 with
// forgejo-runner ≥ 12.8; facts and sources in docs/forgejo.md). NOT tested
// against a real Forgejo: only against internal/forge/gitea/forgejostandin.
//
//   - GET {scope}/actions/runners/jobs lists the waiting and running jobs,
//     each with a handle unique to one attempt of one job; the client keeps
//     the handles of the waiting jobs of its last listing.
//   - MintRunner creates an ephemeral runner for one job:
//     POST {scope}/actions/runners {name, description, ephemeral: true} →
//     {id, uuid, token}, and returns OneJobScript, which starts
//     `forgejo-runner one-job --url --uuid --token-url file:… --label …
//     --handle <the job's handle> --wait`: the runner runs that job and no
//     other, and Forgejo removes its registration after the job.

// Environment of OneJobScript besides EnvURL, EnvToken, EnvLabels and
// EnvBinary. The token goes to the runner through a file (--token-url
// file:…), written with mode 0600 in the runner's directory: it is never
// an argument.
const (
	EnvUUID   = "CORRAL_RUNNER_UUID"
	EnvHandle = "CORRAL_JOB_HANDLE"
)

// TokenFile is where OneJobScript writes the runner's token.
const TokenFile = ".runner-token"

// OneJobScript starts forgejo-runner's one-job command for the job whose
// handle is $CORRAL_JOB_HANDLE. It finds the runner program like
// BootstrapScript. Each label of $CORRAL_RUNNER_LABELS (comma separated,
// "name:host") is one --label. --wait: the documented example passes it;
// what it does exactly is not documented (docs/forgejo.md).
const OneJobScript = `set -eu
bin=${CORRAL_RUNNER_BIN:-forgejo-runner}
case "$0" in
*/*) if [ -x "${0%/*}/$bin" ]; then bin="${0%/*}/$bin"; fi ;;
esac
umask 077
printf '%s' "$CORRAL_RUNNER_TOKEN" > ` + TokenFile + `
unset CORRAL_RUNNER_TOKEN
url=$CORRAL_FORGE_URL uuid=$CORRAL_RUNNER_UUID handle=$CORRAL_JOB_HANDLE labels=$CORRAL_RUNNER_LABELS
set --
IFS=,
for l in $labels; do set -- "$@" --label "$l"; done
unset IFS
exec "$bin" one-job --url "$url" --uuid "$uuid" --token-url "file:$PWD/` + TokenFile + `" "$@" --handle "$handle" --wait
`

// handleCache keeps the handles of the waiting jobs of the last full
// listing, by job id.
type handleCache struct {
	mu sync.Mutex
	by map[int64]string
}

func (h *handleCache) set(m map[int64]string) {
	h.mu.Lock()
	h.by = m
	h.mu.Unlock()
}

func (h *handleCache) get(id int64) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.by[id]
	return v, ok
}

// Handle returns the handle of waiting job id as of the last listing, and
// lists the jobs once when it does not know the job.
func (c *Client) Handle(ctx context.Context, id int64) (string, error) {
	if h, ok := c.handles.get(id); ok {
		return h, nil
	}
	if _, err := c.forgejoJobs(ctx); err != nil {
		return "", err
	}
	if h, ok := c.handles.get(id); ok {
		return h, nil
	}
	return "", &corral.CallError{Op: "job-handle", Target: c.t.ID,
		Err: fmt.Errorf("forgejo job %d: no handle in the job listing: %w (%w)", id, corral.ErrJobNotWaiting, corral.ErrNotFound)}
}

// createdRunner is Forgejo's answer to POST …/actions/runners.
type createdRunner struct {
	ID    int64  `json:"id"`
	UUID  string `json:"uuid"`
	Token string `json:"token"`
}

// mintOneJob registers an ephemeral runner for the job spec.ForgeJobID and
// returns the bootstrap that runs that job alone. Cost: one call (the
// runner), plus one listing when the job's handle is not known yet.
func (c *Client) mintOneJob(ctx context.Context, spec corral.RunnerSpec) (corral.Bootstrap, error) {
	if spec.ForgeJobID <= 0 {
		return corral.Bootstrap{}, fmt.Errorf("mint runner [%s]: mode one-job makes each runner for one waiting job, and none was given (no warm runners in this mode): %w", c.t.ID, corral.ErrBadInput)
	}
	labels, err := RunnerLabels(spec.Labels)
	if err != nil {
		return corral.Bootstrap{}, fmt.Errorf("mint runner [%s]: %w", c.t.ID, err)
	}
	handle, err := c.Handle(ctx, spec.ForgeJobID)
	if err != nil {
		return corral.Bootstrap{}, err
	}
	const op = "create-runner"
	path := c.scope + "/actions/runners"
	body, _ := json.Marshal(struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Ephemeral   bool   `json:"ephemeral"`
	}{spec.Name, fmt.Sprintf("corral instance %s for job %d", spec.InstanceID, spec.ForgeJobID), true})
	b, _, err := c.doJSON(ctx, op, http.MethodPost, path, body, http.StatusCreated, http.StatusOK)
	if err != nil {
		return corral.Bootstrap{}, err
	}
	var r createdRunner
	if err := json.Unmarshal(b, &r); err != nil || r.ID <= 0 || r.UUID == "" || r.Token == "" {
		return corral.Bootstrap{}, c.malformed(op, http.MethodPost, path, fmt.Errorf("want id, uuid and token"))
	}
	return corral.Bootstrap{
		RunnerID: r.ID,
		Command:  []string{"sh", "-c", OneJobScript},
		Env: map[string]corral.Secret{
			EnvURL:    corral.Secret(c.runURL),
			EnvToken:  corral.Secret(r.Token),
			EnvUUID:   corral.Secret(r.UUID),
			EnvHandle: corral.Secret(handle),
			EnvName:   corral.Secret(spec.Name),
			EnvLabels: corral.Secret(labels),
			EnvBinary: corral.Secret(ForgejoRunner),
		},
	}, nil
}

// oneJob tells whether the client serves a target in mode one-job.
func (c *Client) oneJob() bool {
	return c.forgejo && c.t.Mode == corral.ModeOneJob
}

// validHandle: a handle is an opaque token; corral passes it as one
// argument, so it refuses what no handle holds (blanks, control bytes).
func validHandle(h string) bool {
	return h != "" && len(h) <= 200 && !strings.ContainsAny(h, " \t\r\n\x00,")
}
