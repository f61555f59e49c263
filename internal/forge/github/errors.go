package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	gh "github.com/google/go-github/v75/github"

	"github.com/corral-ci/corral/internal/corral"
)

type responseT = gh.Response

// ErrRunnerDeprecated: GitHub refuses the runner's version ("Runner version
// vX is deprecated and cannot receive messages"): the runner registers but
// never gets a job. The pool's image needs a newer runner (or self-update).
var ErrRunnerDeprecated = errors.New("runner version deprecated by GitHub")

// DeprecatedRunnerError names the refused runner version. It matches
// ErrRunnerDeprecated with errors.Is.
type DeprecatedRunnerError struct {
	Version string // e.g. "v2.311.0"
}

func (e *DeprecatedRunnerError) Error() string {
	return fmt.Sprintf("GitHub refuses runner version %s (deprecated): use a current actions/runner release in the image or allow self-update", e.Version)
}

func (e *DeprecatedRunnerError) Is(target error) bool { return target == ErrRunnerDeprecated }

var deprecatedRe = regexp.MustCompile(`Runner version (v?[0-9][0-9A-Za-z.\-+]*) is deprecated and cannot receive messages`)

// RunnerDeprecated recognises GitHub's refusal of an old runner in a line
// of a runner's log or a GitHub answer and returns it as a
// *DeprecatedRunnerError; nil when text does not carry it. Providers and
// the reconciler can feed it a failed runner's output.
func RunnerDeprecated(text string) error {
	m := deprecatedRe.FindStringSubmatch(text)
	if m == nil {
		return nil
	}
	return &DeprecatedRunnerError{Version: m[1]}
}

// callErr turns what go-github returned into a *corral.CallError: which
// call, target, method, URL, status and GitHub request id, wrapping the
// kind (ErrNotFound, ErrConflict, ErrUnauthorized, ErrRateLimited,
// ErrUnavailable, ErrBadInput). No credential ends up in it.
func (c *Client) callErr(op string, resp *responseT, err error) error {
	var ce *corral.CallError
	if errors.As(err, &ce) {
		return ce // from a nested call (installation token): it says which
	}
	e := &corral.CallError{Op: op, Target: c.t.ID}
	if resp != nil && resp.Response != nil {
		if resp.Request != nil {
			e.Method, e.URL = resp.Request.Method, cleanURL(resp.Request.URL)
		}
		e.Status = resp.StatusCode
		e.RequestID = resp.Header.Get("X-GitHub-Request-Id")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if e.Method == "" {
			e.Method = strings.ToUpper(ue.Op)
		}
		if e.URL == "" {
			if u, perr := url.Parse(ue.URL); perr == nil {
				e.URL = cleanURL(u)
			}
		}
	}
	inner := err
	if ue != nil {
		inner = ue.Err
	}
	var rl *RateLimitError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e.Err = inner
	case errors.As(err, &rl):
		e.Err = rl
	case e.Status == 0 && errors.Is(err, corral.ErrBadInput):
		e.Err = inner
	case e.Status == 0:
		e.Err = fmt.Errorf("%w: %s", corral.ErrUnavailable, c.scrub(inner.Error()))
	default:
		msg, doc := c.message(resp)
		kind := kindOf(e.Status, e.Method, resp.Header, doc)
		if d := RunnerDeprecated(msg); d != nil {
			e.Err = fmt.Errorf("%w: %w", kind, d)
		} else {
			e.Err = fmt.Errorf("%w: %s", kind, msg)
		}
	}
	return e
}

// kindOf maps GitHub's status to a sentinel error.
func kindOf(status int, method string, h http.Header, doc string) error {
	switch {
	case status == http.StatusNotFound || status == http.StatusGone:
		return corral.ErrNotFound
	case status == http.StatusConflict:
		return corral.ErrConflict
	case status == http.StatusUnprocessableEntity && method == http.MethodDelete:
		return corral.ErrBusy
	case status == http.StatusTooManyRequests:
		return corral.ErrRateLimited
	case status == http.StatusForbidden:
		if isRateLimited(status, h, []byte(`{"documentation_url":`+quote(doc)+`}`)) {
			return corral.ErrRateLimited
		}
		return corral.ErrUnauthorized
	case status == http.StatusUnauthorized:
		return corral.ErrUnauthorized
	case status >= 500:
		return corral.ErrUnavailable
	default:
		return corral.ErrBadInput
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// message reads GitHub's "message" and "documentation_url" from an error
// answer (go-github leaves the body readable).
func (c *Client) message(resp *responseT) (msg, doc string) {
	if resp == nil || resp.Body == nil {
		return "unexpected answer", ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var m struct {
		Message string `json:"message"`
		Doc     string `json:"documentation_url"`
	}
	if json.Unmarshal(b, &m) != nil || m.Message == "" {
		return "unexpected answer", m.Doc
	}
	if len(m.Message) > 300 {
		m.Message = m.Message[:300] + "..."
	}
	return c.scrub(m.Message), m.Doc
}

// scrub hides the target's credential and its current installation token,
// should an answer ever echo one.
func (c *Client) scrub(s string) string {
	secrets := []string{c.t.Token.Reveal()}
	if c.app != nil {
		if _, key, ok := c.app.knownKey(); ok {
			e := c.opt.Cache.token(key)
			select {
			case e.sem <- struct{}{}:
				secrets = append(secrets, e.token.Reveal())
				<-e.sem
			default:
			}
		}
	}
	for _, sec := range secrets {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// malformed reports an answer corral cannot use.
func (c *Client) malformed(op, method, what string) error {
	return &corral.CallError{Op: op, Target: c.t.ID, Method: method,
		Err: fmt.Errorf("%w: malformed answer: %s", corral.ErrUnavailable, what)}
}

// cleanURL drops user info and any credential-like query parameter.
func cleanURL(u *url.URL) string {
	v := *u
	v.User = nil
	q := v.Query()
	for _, k := range []string{"access_token", "client_secret", "token"} {
		if q.Has(k) {
			q.Set(k, "REDACTED")
		}
	}
	if len(q) > 0 {
		v.RawQuery = q.Encode()
	}
	return v.String()
}

// DiagnoseRunner recognises GitHub's refusal of a runner version in a
// runner's output (corral.RunnerDiagnoser).
func (c *Client) DiagnoseRunner(output string) error { return RunnerDeprecated(output) }
