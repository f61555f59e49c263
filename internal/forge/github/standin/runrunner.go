package standin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Environment of the simulated runner. The real actions runner reads any
// command-line input --x from ACTIONS_RUNNER_INPUT_X, so corral passes the
// JIT config (a secret) in EnvJITConfig, never as an argument.
const (
	EnvJITConfig     = "ACTIONS_RUNNER_INPUT_JITCONFIG"
	EnvMode          = "CORRAL_GH_RUNNER_MODE" // "config": legacy config.sh + run.sh flow
	EnvURL           = "ACTIONS_RUNNER_INPUT_URL"
	EnvToken         = "ACTIONS_RUNNER_INPUT_TOKEN"
	EnvName          = "ACTIONS_RUNNER_INPUT_NAME"
	EnvLabels        = "ACTIONS_RUNNER_INPUT_LABELS" // comma-separated
	EnvRunnerGroup   = "ACTIONS_RUNNER_INPUT_RUNNERGROUP"
	EnvRunnerVersion = "CORRAL_TEST_RUNNER_VERSION" // default CurrentRunnerVersion
)

// Errors RunRunner returns (wrapped).
var (
	ErrRunnerRemoved    = errors.New("runner registration removed")
	ErrRunnerDeprecated = errors.New("runner version deprecated")
)

// RunRunner is the simulated actions runner, configured from getenv only
// (see RunRunnerArgs).
func RunRunner(ctx context.Context, getenv func(string) string, log io.Writer) error {
	return RunRunnerArgs(ctx, nil, getenv, log)
}

// RunRunnerArgs is the simulated actions runner. With a JIT config (flag
// --jitconfig or EnvJITConfig) it behaves like `run.sh --jitconfig`. With
// EnvMode=config, or --url and --token, it behaves like `config.sh --url U
// --token T --unattended --ephemeral --name N --labels a,b [--runnergroup
// G]` followed by `run.sh`; those inputs also come from the
// ACTIONS_RUNNER_INPUT_* variables. It connects, long-polls one job whose
// labels it has, runs it for the job's duration with heartbeats, reports
// completion and returns nil: its registration is then gone (ephemeral).
// It returns an error wrapping ErrRunnerDeprecated when the stand-in
// refuses its version, ErrRunnerRemoved when its registration is removed
// while idle, and ctx.Err() when ctx ends first (a killed runner goes
// silent without reporting).
func RunRunnerArgs(ctx context.Context, args []string, getenv func(string) string, log io.Writer) error {
	in := map[string]string{}
	for _, k := range []string{"jitconfig", "url", "token", "name", "labels", "runnergroup"} {
		in[k] = getenv("ACTIONS_RUNNER_INPUT_" + strings.ToUpper(k))
	}
	for i := 0; i < len(args); i++ {
		k, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			continue // run, config, ...
		}
		if k, v, ok := strings.Cut(k, "="); ok {
			in[k] = v
			continue
		}
		if _, known := in[k]; known && i+1 < len(args) {
			in[k] = args[i+1]
			i++
		}
	}
	version := getenv(EnvRunnerVersion)
	if version == "" {
		version = CurrentRunnerVersion
	}
	rc := &runnerConn{hc: &http.Client{}}
	jit := in["jitconfig"]
	if jit == "" && (getenv(EnvMode) == "config" || (in["url"] != "" && in["token"] != "")) {
		var err error
		if jit, err = rc.configure(ctx, in, log); err != nil {
			return err
		}
	}
	if jit == "" {
		return fmt.Errorf("gh-runner: no JIT config: set %s (or %s=config with %s and %s)", EnvJITConfig, EnvMode, EnvURL, EnvToken)
	}
	rf, cred, err := decodeJIT(jit)
	if err != nil {
		return err
	}
	rc.base = strings.TrimSuffix(rf.ServerURL, "/")
	var conn connectResponse
	status, err := rc.call(ctx, "/_apis/runner/connect", "Bearer "+cred, map[string]string{"version": version}, &conn)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("gh-runner: connect refused (status %d)", status)
	}
	rc.session = conn.Session
	fmt.Fprintf(log, "gh-runner: v%s connected as %s (id %d), labels %s\n", version, conn.Name, conn.RunnerID, strings.Join(conn.Labels, ","))
	job, err := rc.waitForJob(ctx)
	if err != nil {
		fmt.Fprintf(log, "gh-runner: %v\n", err)
		return err
	}
	d := time.Duration(job.DurationMS) * time.Millisecond
	fmt.Fprintf(log, "gh-runner: running job %d %q of %s for %s\n", job.ID, job.Name, job.Repo, d)
	beat := time.NewTicker(max(time.Duration(conn.HeartbeatMS)*time.Millisecond, time.Millisecond))
	defer beat.Stop()
	done := time.NewTimer(d)
	defer done.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			fmt.Fprintf(log, "gh-runner: stopped during job %d\n", job.ID)
			return ctx.Err()
		case <-beat.C:
			st, err := rc.call(ctx, fmt.Sprintf("/_apis/runner/jobs/%d/renew", job.ID), "Bearer "+rc.session, nil, nil)
			if err == nil && st == http.StatusGone {
				return fmt.Errorf("gh-runner: job %d was taken away", job.ID)
			}
		case <-done.C:
			running = false
		}
	}
	status, err = rc.call(ctx, fmt.Sprintf("/_apis/runner/jobs/%d/complete", job.ID), "Bearer "+rc.session, map[string]string{"conclusion": "success"}, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("gh-runner: completing job %d refused (status %d)", job.ID, status)
	}
	fmt.Fprintf(log, "gh-runner: job %d done, exiting\n", job.ID)
	return nil
}

func decodeJIT(jit string) (jitRunnerFile, string, error) {
	var rf jitRunnerFile
	var cr jitCredentials
	bad := fmt.Errorf("gh-runner: the JIT config is not valid")
	outer, err := base64.StdEncoding.DecodeString(strings.TrimSpace(jit))
	if err != nil {
		return rf, "", bad
	}
	var files map[string]string
	if json.Unmarshal(outer, &files) != nil {
		return rf, "", bad
	}
	a, err1 := base64.StdEncoding.DecodeString(files[".runner"])
	b, err2 := base64.StdEncoding.DecodeString(files[".credentials"])
	if err1 != nil || err2 != nil || json.Unmarshal(a, &rf) != nil || json.Unmarshal(b, &cr) != nil || rf.ServerURL == "" || cr.Data.Token == "" {
		return rf, "", bad
	}
	return rf, cr.Data.Token, nil
}

type runnerConn struct {
	hc      *http.Client
	base    string
	session string
}

// configure is config.sh: it registers the runner with a registration
// token and returns the runner's configuration.
func (rc *runnerConn) configure(ctx context.Context, in map[string]string, log io.Writer) (string, error) {
	u, err := url.Parse(in["url"])
	if err != nil || u.Host == "" || in["token"] == "" || in["name"] == "" {
		return "", fmt.Errorf("gh-runner: config needs --url, --token and --name (or %s, %s, %s)", EnvURL, EnvToken, EnvName)
	}
	labels := []string{}
	for _, l := range strings.Split(in["labels"], ",") {
		if l = strings.TrimSpace(l); l != "" {
			labels = append(labels, l)
		}
	}
	rc.base = u.Scheme + "://" + u.Host + ghesAPI
	var out struct {
		JIT string `json:"encoded_jit_config"`
	}
	st, err := rc.call(ctx, "/actions/runner-registration", "RemoteAuth "+in["token"], map[string]any{
		"url": in["url"], "runner_event": "register", "name": in["name"], "labels": labels,
		"runner_group": in["runnergroup"], "ephemeral": true,
	}, &out)
	if err != nil {
		return "", err
	}
	if st != http.StatusCreated {
		return "", fmt.Errorf("gh-runner: config.sh: registration refused (status %d)", st)
	}
	fmt.Fprintf(log, "gh-runner: configured %s at %s (ephemeral)\n", in["name"], in["url"])
	return out.JIT, nil
}

// waitForJob long-polls until it gets a job; transport errors and 5xx are
// retried with a short backoff for about 30 s.
func (rc *runnerConn) waitForJob(ctx context.Context) (acquiredJob, error) {
	backoff, failures := 100*time.Millisecond, 0
	for {
		var job acquiredJob
		var msg struct {
			Message string `json:"message"`
		}
		status, err := rc.call(ctx, "/_apis/runner/message", "Bearer "+rc.session, nil, &job, &msg)
		switch {
		case ctx.Err() != nil:
			return job, ctx.Err()
		case err != nil || status >= 500:
			failures++
			if failures > 60 {
				return job, fmt.Errorf("gh-runner: GitHub unreachable: %v", err)
			}
			select {
			case <-ctx.Done():
				return job, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
		case status == http.StatusOK:
			return job, nil
		case status == http.StatusNoContent:
			failures, backoff = 0, 100*time.Millisecond
		case status == http.StatusForbidden:
			return job, fmt.Errorf("gh-runner: %s: %w", msg.Message, ErrRunnerDeprecated)
		case status == http.StatusGone:
			return job, fmt.Errorf("gh-runner: registration removed; exiting: %w", ErrRunnerRemoved)
		default:
			return job, fmt.Errorf("gh-runner: polling refused (status %d)", status)
		}
	}
}

// call POSTs to the stand-in; a 2xx answer is decoded into out, an error
// answer into errOut[0].
func (rc *runnerConn) call(ctx context.Context, path, auth string, in, out any, errOut ...any) (int, error) {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, maxPoll+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := rc.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry nothing secret, but keep lines short
		}
		return 0, fmt.Errorf("gh-runner: %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("gh-runner: %s: %w", path, err)
	}
	target := out
	if resp.StatusCode >= 300 {
		target = nil
		if len(errOut) > 0 {
			target = errOut[0]
		}
	}
	if target != nil && len(b) > 0 && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(b, target); err != nil && resp.StatusCode < 300 {
			return 0, fmt.Errorf("gh-runner: %s: malformed answer: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}
