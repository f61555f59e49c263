// Package scaleset is corral's client of GitHub's runner scale-set API
// (the Actions service behind GitHub's own autoscaling controller), learnt
// from the MIT-licensed github.com/actions/scaleset client; no code of it
// is used. It covers the calls a listener needs: the admin exchange,
// getting or creating a scale set, message sessions (with the 409 a
// crashed listener's live session causes, waited out by OpenSessionWait),
// the long-polled message queue with acknowledgement, acquiring jobs and
// scale-set JIT configs. Errors say what failed; ErrGone marks a scale
// set (or session) GitHub no longer knows, ErrConflict a live session.
//
// NOT wired into corral yet: no listener component, no ledger mapping, no
// `mode: scaleset` (the config refuses it). Tested against the stand-in
// GitHub only (internal/forge/github/standin).
package scaleset

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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Errors callers act on.
var (
	ErrGone     = errors.New("scale set or session no longer exists")
	ErrConflict = errors.New("the scale set has another live session")
)

// Source gives what the admin exchange needs from the target's GitHub
// client (*github.Client implements it).
type Source interface {
	RegistrationToken(ctx context.Context) (corral.Secret, error)
	WebURL() string
	APIBase() string
}

// Client talks to the Actions service of one target. Safe for concurrent
// use.
type Client struct {
	src Source
	hc  *http.Client

	mu    sync.Mutex
	svc   string // the Actions service URL, no trailing slash
	admin string // admin token
	exp   time.Time
}

// New returns a client; it does no I/O. hc nil: a client whose timeout
// fits a long poll (70 s).
func New(src Source, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 70 * time.Second}
	}
	return &Client{src: src, hc: hc}
}

// ScaleSet is a runner scale set.
type ScaleSet struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Labels []struct {
		Name string `json:"name"`
	} `json:"labels"`
}

// Statistics is the scale set's view of its jobs and runners.
type Statistics struct {
	Available  int `json:"totalAvailableJobs"`
	Acquired   int `json:"totalAcquiredJobs"`
	Assigned   int `json:"totalAssignedJobs"`
	Running    int `json:"totalRunningJobs"`
	Registered int `json:"totalRegisteredRunners"`
	Busy       int `json:"totalBusyRunners"`
	Idle       int `json:"totalIdleRunners"`
}

// Session is a message session of one scale set.
type Session struct {
	ID         string      `json:"sessionId"`
	QueueURL   string      `json:"messageQueueUrl"`
	QueueToken string      `json:"messageQueueAccessToken"`
	Stats      *Statistics `json:"statistics"`
	SetID      int64       `json:"-"`
}

// Item is one job message: JobAvailable, JobAssigned, JobStarted or
// JobCompleted.
type Item struct {
	Type       string    `json:"messageType"`
	RequestID  int64     `json:"runnerRequestId"`
	Repo       string    `json:"repositoryName"`
	Owner      string    `json:"ownerName"`
	JobID      string    `json:"jobId"`
	Name       string    `json:"jobDisplayName"`
	RunID      int64     `json:"workflowRunId"`
	Labels     []string  `json:"requestLabels"`
	RunnerID   int64     `json:"runnerId"`
	RunnerName string    `json:"runnerName"`
	Result     string    `json:"result"`
	QueueTime  time.Time `json:"queueTime"`
}

// Message is one batch from the queue.
type Message struct {
	ID    int64
	Stats *Statistics
	Items []Item
}

// JIT is a scale-set runner's just-in-time configuration.
type JIT struct {
	RunnerID int64
	Name     string
	Config   corral.Secret // run.sh --jitconfig
}

// connect exchanges a registration token for the Actions service URL and
// an admin token, when none is held or it expires within a minute.
func (c *Client) connect(ctx context.Context, force bool) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !force && c.admin != "" && time.Until(c.exp) > time.Minute {
		return c.svc, c.admin, nil
	}
	tok, err := c.src.RegistrationToken(ctx)
	if err != nil {
		return "", "", fmt.Errorf("scale set: registration token: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"url": c.src.WebURL(), "runner_event": "register"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.src.APIBase(), "/")+"/actions/runner-registration", bytes.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "RemoteAuth "+tok.Reveal())
	var out struct{ URL, Token string }
	if _, err := c.send(req, http.StatusOK, &out); err != nil {
		return "", "", fmt.Errorf("scale set: admin exchange: %w", err)
	}
	if out.URL == "" || out.Token == "" {
		return "", "", errors.New("scale set: admin exchange: answer lacks url or token")
	}
	exp, err := expiry(out.Token)
	if err != nil {
		return "", "", fmt.Errorf("scale set: admin token: %w", err)
	}
	c.svc, c.admin, c.exp = strings.TrimSuffix(out.URL, "/"), out.Token, exp
	return c.svc, c.admin, nil
}

// expiry reads a JWT's exp claim (not its signature: the token is
// GitHub's to check).
func expiry(jwt string) (time.Time, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, fmt.Errorf("claims: %w", err)
	}
	var cl struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(b, &cl); err != nil || cl.Exp == 0 {
		return time.Time{}, errors.New("no exp claim")
	}
	return time.Unix(cl.Exp, 0), nil
}

// send does req and decodes a wanted answer into out. Other statuses are
// errors naming the status and GitHub's message; 404 wraps ErrGone and
// 409 ErrConflict.
func (c *Client) send(req *http.Request, want int, out any) (int, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != want {
		var m struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &m)
		e := fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, m.Message)
		switch resp.StatusCode {
		case http.StatusNotFound:
			e = fmt.Errorf("%w: %w", ErrGone, e)
		case http.StatusConflict:
			e = fmt.Errorf("%w: %w", ErrConflict, e)
		}
		return resp.StatusCode, e
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: malformed answer: %w", req.Method, req.URL.Path, err)
		}
	}
	return resp.StatusCode, nil
}

// call sends an admin call to the Actions service; a 401 (admin token
// refused) makes it exchange again and retry once.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, body any, want int, out any) (int, error) {
	for attempt := 0; ; attempt++ {
		svc, admin, err := c.connect(ctx, attempt > 0)
		if err != nil {
			return 0, err
		}
		if q == nil {
			q = url.Values{}
		}
		q.Set("api-version", "6.0-preview")
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, svc+path+"?"+q.Encode(), rd)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		code, err := c.send(req, want, out)
		if code == http.StatusUnauthorized && attempt == 0 {
			continue
		}
		return code, err
	}
}

// EnsureScaleSet returns the scale set named name of the default runner
// group, registering it with labels when GitHub has none (first start, or
// GitHub deleted it).
func (c *Client) EnsureScaleSet(ctx context.Context, name string, labels []string) (ScaleSet, bool, error) {
	var list struct {
		Count int        `json:"count"`
		Value []ScaleSet `json:"value"`
	}
	if _, err := c.call(ctx, http.MethodGet, "/_apis/runtime/runnerscalesets", url.Values{"runnerGroupId": {"1"}, "name": {name}}, nil, http.StatusOK, &list); err != nil {
		return ScaleSet{}, false, err
	}
	for _, s := range list.Value {
		if strings.EqualFold(s.Name, name) {
			return s, false, nil
		}
	}
	ls := []map[string]string{}
	for _, l := range labels {
		ls = append(ls, map[string]string{"name": l, "type": "System"})
	}
	var s ScaleSet
	_, err := c.call(ctx, http.MethodPost, "/_apis/runtime/runnerscalesets", nil,
		map[string]any{"name": name, "runnerGroupId": 1, "labels": ls}, http.StatusOK, &s)
	return s, err == nil, err
}

// OpenSession opens a message session; ErrConflict while another lives.
func (c *Client) OpenSession(ctx context.Context, setID int64, owner string) (*Session, error) {
	var se Session
	if _, err := c.call(ctx, http.MethodPost, "/_apis/runtime/runnerscalesets/"+strconv.FormatInt(setID, 10)+"/sessions", nil,
		map[string]string{"ownerName": owner}, http.StatusOK, &se); err != nil {
		return nil, err
	}
	if se.ID == "" || se.QueueURL == "" || se.QueueToken == "" {
		return nil, errors.New("scale set: session answer lacks its id, queue URL or token")
	}
	se.SetID = setID
	return &se, nil
}

// OpenSessionWait opens a session, waiting out a conflict (the live
// session of a corral that crashed expires at GitHub) with backoff from
// first up to 30 s, until ctx ends.
func (c *Client) OpenSessionWait(ctx context.Context, setID int64, owner string, first time.Duration) (*Session, int, error) {
	wait, conflicts := first, 0
	for {
		se, err := c.OpenSession(ctx, setID, owner)
		if !errors.Is(err, ErrConflict) {
			return se, conflicts, err
		}
		conflicts++
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, conflicts, fmt.Errorf("%w (waited %d times): %w", err, conflicts, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// queueCall is a call with the session's queue token; a 401 refreshes the
// session (new token) and retries once.
func (c *Client) queueCall(ctx context.Context, se *Session, method, u string, body any, capacity int, want int, out any) (int, error) {
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+se.QueueToken)
		if capacity >= 0 {
			req.Header.Set("X-ScaleSetMaxCapacity", strconv.Itoa(capacity))
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			resp.Body.Close()
			if err := c.refresh(ctx, se); err != nil {
				return 0, err
			}
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == want || (want == http.StatusOK && resp.StatusCode == http.StatusAccepted):
			if out != nil && resp.StatusCode == http.StatusOK && len(b) > 0 {
				if err := json.Unmarshal(b, out); err != nil {
					return resp.StatusCode, fmt.Errorf("%s %s: malformed answer: %w", method, req.URL.Path, err)
				}
			}
			return resp.StatusCode, nil
		case resp.StatusCode == http.StatusNotFound:
			return resp.StatusCode, fmt.Errorf("%w: %s %s: 404", ErrGone, method, req.URL.Path)
		default:
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, req.URL.Path, resp.StatusCode, strings.TrimSpace(string(b)))
		}
	}
}

func (c *Client) refresh(ctx context.Context, se *Session) error {
	var fresh Session
	if _, err := c.call(ctx, http.MethodPatch, "/_apis/runtime/runnerscalesets/"+strconv.FormatInt(se.SetID, 10)+"/sessions/"+se.ID,
		nil, nil, http.StatusOK, &fresh); err != nil {
		return fmt.Errorf("scale set: refresh session: %w", err)
	}
	se.QueueToken, se.Stats = fresh.QueueToken, fresh.Stats
	if fresh.QueueURL != "" {
		se.QueueURL = fresh.QueueURL
	}
	return nil
}

// NextMessage long-polls the queue: nil when nothing came within the poll.
// capacity is how many more runners corral can start (the scale set's
// max capacity header).
func (c *Client) NextMessage(ctx context.Context, se *Session, last int64, capacity int) (*Message, error) {
	u, err := url.Parse(se.QueueURL)
	if err != nil {
		return nil, fmt.Errorf("scale set: queue URL: %w", err)
	}
	if last > 0 {
		q := u.Query()
		q.Set("lastMessageId", strconv.FormatInt(last, 10))
		u.RawQuery = q.Encode()
	}
	var m struct {
		ID    int64       `json:"messageId"`
		Type  string      `json:"messageType"`
		Body  string      `json:"body"`
		Stats *Statistics `json:"statistics"`
	}
	code, err := c.queueCall(ctx, se, http.MethodGet, u.String(), nil, max(capacity, 0), http.StatusOK, &m)
	if err != nil || code == http.StatusAccepted {
		return nil, err
	}
	if m.Type != "RunnerScaleSetJobMessages" {
		return nil, fmt.Errorf("scale set: message %d has type %q", m.ID, m.Type)
	}
	msg := &Message{ID: m.ID, Stats: m.Stats}
	if m.Body != "" {
		if err := json.Unmarshal([]byte(m.Body), &msg.Items); err != nil {
			return nil, fmt.Errorf("scale set: message %d body: %w", m.ID, err)
		}
	}
	return msg, nil
}

// Ack deletes a handled message.
func (c *Client) Ack(ctx context.Context, se *Session, id int64) error {
	u, err := url.Parse(se.QueueURL)
	if err != nil {
		return err
	}
	u.Path += "/" + strconv.FormatInt(id, 10)
	_, err = c.queueCall(ctx, se, http.MethodDelete, u.String(), nil, -1, http.StatusNoContent, nil)
	return err
}

// Acquire asks for the jobs of the given runner request ids; it returns
// the ids acquired.
func (c *Client) Acquire(ctx context.Context, se *Session, ids []int64) ([]int64, error) {
	svc, _, err := c.connect(ctx, false)
	if err != nil {
		return nil, err
	}
	var out struct {
		Value []int64 `json:"value"`
	}
	u := svc + "/_apis/runtime/runnerscalesets/" + strconv.FormatInt(se.SetID, 10) + "/acquirejobs?api-version=6.0-preview"
	_, err = c.queueCall(ctx, se, http.MethodPost, u, ids, -1, http.StatusOK, &out)
	return out.Value, err
}

// JITConfig mints a runner of the scale set.
func (c *Client) JITConfig(ctx context.Context, setID int64, name string) (JIT, error) {
	var out struct {
		Runner struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"runner"`
		Config string `json:"encodedJITConfig"`
	}
	if _, err := c.call(ctx, http.MethodPost, "/_apis/runtime/runnerscalesets/"+strconv.FormatInt(setID, 10)+"/generatejitconfig", nil,
		map[string]string{"name": name, "workFolder": "_work"}, http.StatusOK, &out); err != nil {
		return JIT{}, err
	}
	if out.Config == "" {
		return JIT{}, errors.New("scale set: JIT answer lacks encodedJITConfig")
	}
	return JIT{RunnerID: out.Runner.ID, Name: out.Runner.Name, Config: corral.Secret(out.Config)}, nil
}

// CloseSession deletes the session (a clean shutdown), so the next corral
// opens one at once.
func (c *Client) CloseSession(ctx context.Context, se *Session) error {
	_, err := c.call(ctx, http.MethodDelete, "/_apis/runtime/runnerscalesets/"+strconv.FormatInt(se.SetID, 10)+"/sessions/"+se.ID,
		nil, nil, http.StatusNoContent, nil)
	return err
}
