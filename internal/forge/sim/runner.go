package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrRunnerRemoved is returned by RunRunner when the forge removed the
// runner's registration before it got a job.
var ErrRunnerRemoved = errors.New("runner registration removed")

// RunRunner is the simulated runner: what a provider starts in place of a
// real runner (the `corral sim-runner` subcommand calls it). It reads
// CORRAL_SIM_URL and CORRAL_SIM_TOKEN (the one-time JIT config), connects,
// long-polls for one matching job, "runs" it for the job's duration while
// sending heartbeats, reports completion and returns nil. It returns an
// error wrapping ErrRunnerRemoved if its registration is removed while it
// is idle, and ctx.Err() if ctx ends first (a killed runner: it goes
// silent without reporting). It writes a few human lines to log.
func RunRunner(ctx context.Context, getenv func(string) string, log io.Writer) error {
	base, token := strings.TrimSuffix(getenv(EnvURL), "/"), getenv(EnvToken)
	if base == "" || token == "" {
		return fmt.Errorf("sim-runner: %s and %s must be set", EnvURL, EnvToken)
	}
	rc := &runnerConn{hc: &http.Client{}, base: base}
	var conn connectResponse
	status, err := rc.call(ctx, "connect", token, nil, &conn)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("sim-runner: connect refused (status %d)", status)
	}
	rc.session = conn.Session
	fmt.Fprintf(log, "sim-runner: connected as %s (id %d), labels %s\n", conn.Name, conn.RunnerID, strings.Join(conn.Labels, ","))

	job, err := rc.waitForJob(ctx)
	if err != nil {
		fmt.Fprintf(log, "sim-runner: %v\n", err)
		return err
	}
	d := time.Duration(job.DurationMS) * time.Millisecond
	fmt.Fprintf(log, "sim-runner: running job %d %q of %s for %s\n", job.ID, job.Name, job.Repo, d)

	beat := time.NewTicker(max(time.Duration(conn.HeartbeatMS)*time.Millisecond, time.Millisecond))
	defer beat.Stop()
	done := time.NewTimer(d)
	defer done.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			fmt.Fprintf(log, "sim-runner: stopped during job %d\n", job.ID)
			return ctx.Err()
		case <-beat.C:
			status, err := rc.call(ctx, fmt.Sprintf("jobs/%d/heartbeat", job.ID), rc.session, nil, nil)
			if err == nil && status == http.StatusGone {
				return fmt.Errorf("sim-runner: job %d was taken away by the forge", job.ID)
			}
			// Other heartbeat errors: keep running; the next one may pass.
		case <-done.C:
			running = false
		}
	}
	status, err = rc.call(ctx, fmt.Sprintf("jobs/%d/complete", job.ID), rc.session, map[string]string{"conclusion": "success"}, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("sim-runner: completing job %d refused (status %d)", job.ID, status)
	}
	fmt.Fprintf(log, "sim-runner: job %d done, exiting\n", job.ID)
	return nil
}

type runnerConn struct {
	hc      *http.Client
	base    string
	session string
}

// waitForJob long-polls until it gets a job. Transport errors are retried
// with a short backoff for up to about 30s.
func (rc *runnerConn) waitForJob(ctx context.Context) (acquiredJob, error) {
	backoff, failures := 100*time.Millisecond, 0
	for {
		var job acquiredJob
		status, err := rc.call(ctx, "acquire", rc.session, nil, &job)
		switch {
		case ctx.Err() != nil:
			return job, ctx.Err()
		case err != nil || status >= 500:
			failures++
			if failures > 60 {
				return job, fmt.Errorf("sim-runner: forge unreachable: %v", err)
			}
			select {
			case <-ctx.Done():
				return job, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		case status == http.StatusOK:
			return job, nil
		case status == http.StatusNoContent:
			failures, backoff = 0, 100*time.Millisecond
			continue
		case status == http.StatusGone:
			return job, fmt.Errorf("sim-runner: registration removed by the forge; exiting: %w", ErrRunnerRemoved)
		default:
			return job, fmt.Errorf("sim-runner: polling refused (status %d)", status)
		}
	}
}

// call POSTs to a runner-side endpoint and decodes a 200 answer into out.
func (rc *runnerConn) call(ctx context.Context, path, auth string, in, out any) (int, error) {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	// Bound each call: the long poll lasts at most maxPoll.
	ctx, cancel := context.WithTimeout(ctx, maxPoll+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rc.base+runnerPrefix+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := rc.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("sim-runner: %s: %w", path, stripURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("sim-runner: %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return 0, fmt.Errorf("sim-runner: %s: malformed answer: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}
