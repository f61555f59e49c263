package forgejostandin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// ErrUsage: the command line is not one `forgejo-runner one-job` takes
// (as far as the stand-in knows it).
var ErrUsage = errors.New("usage")

// OneJobArgs is what `forgejo-runner one-job` was given.
type OneJobArgs struct {
	URL, UUID, TokenURL, Handle string
	Labels                      []string // name[:schema[:arg]], as given
	Wait                        bool
}

// ParseOneJob reads `one-job --url U --uuid X --token-url file:P --label
// L… --handle H [--wait]` (the first word may be omitted). An unknown flag,
// a missing value or a missing required flag is an error wrapping
// ErrUsage: the stand-in holds corral's bootstrap to the documented form.
func ParseOneJob(args []string) (OneJobArgs, error) {
	var a OneJobArgs
	if len(args) > 0 && args[0] == "one-job" {
		args = args[1:]
	}
	for i := 0; i < len(args); i++ {
		k := args[i]
		if k == "--wait" {
			a.Wait = true
			continue
		}
		if i+1 >= len(args) {
			return a, fmt.Errorf("%w: %s needs a value", ErrUsage, k)
		}
		v := args[i+1]
		i++
		switch k {
		case "--url":
			a.URL = v
		case "--uuid":
			a.UUID = v
		case "--token-url":
			a.TokenURL = v
		case "--handle":
			a.Handle = v
		case "--label":
			a.Labels = append(a.Labels, v)
		default:
			return a, fmt.Errorf("%w: unknown flag %q", ErrUsage, k)
		}
	}
	switch {
	case a.URL == "":
		return a, fmt.Errorf("%w: --url is required", ErrUsage)
	case a.UUID == "":
		return a, fmt.Errorf("%w: --uuid is required", ErrUsage)
	case !strings.HasPrefix(a.TokenURL, "file:"):
		return a, fmt.Errorf("%w: --token-url file:PATH is required", ErrUsage)
	}
	return a, nil
}

// RunOneJob is the simulated `forgejo-runner one-job`: it reads its token
// from the --token-url file, asks the stand-in for the job of its handle
// (with --wait, again every 200 ms while the stand-in knows no such job),
// runs it for the job's duration, reports it done and returns nil. Any
// refusal is an error.
func RunOneJob(ctx context.Context, args []string, log io.Writer) error {
	a, err := ParseOneJob(args)
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(strings.TrimPrefix(a.TokenURL, "file:"))
	if err != nil {
		return fmt.Errorf("read the runner token: %w", err)
	}
	names := make([]string, 0, len(a.Labels))
	for _, l := range a.Labels {
		n, _, _ := strings.Cut(l, ":")
		names = append(names, n)
	}
	req := runnerReq{UUID: a.UUID, Token: string(tok), Handle: a.Handle, Labels: names}
	base := strings.TrimSuffix(a.URL, "/")
	var job runnerJob
	for {
		status, body, err := post(ctx, base+"/standin/runner/fetch", req)
		if err != nil {
			return err
		}
		if status == http.StatusOK {
			if err := json.Unmarshal(body, &job); err != nil {
				return fmt.Errorf("fetch: %w", err)
			}
			break
		}
		if status == http.StatusNotFound && a.Wait {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		return fmt.Errorf("fetch refused: %d %s", status, bytes.TrimSpace(body))
	}
	fmt.Fprintf(log, "forgejo-standin runner: running job %d (%s) for handle %s\n", job.ID, job.Name, a.Handle)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(job.DurationMS) * time.Millisecond):
	}
	req.Result = "success"
	status, body, err := post(ctx, base+"/standin/runner/done", req)
	if err != nil {
		return err
	}
	if status != http.StatusNoContent {
		return fmt.Errorf("done refused: %d %s", status, bytes.TrimSpace(body))
	}
	fmt.Fprintf(log, "forgejo-standin runner: job %d done\n", job.ID)
	return nil
}

func post(ctx context.Context, url string, v any) (int, []byte, error) {
	b, _ := json.Marshal(v)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, nil
}
