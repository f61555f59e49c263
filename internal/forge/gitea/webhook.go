package gitea

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/corral-ci/corral/internal/forge/hmacsig"
	"net/http"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Webhook header names. Gitea sends its own, Gogs' and GitHub's copies;
// Forgejo adds X-Forgejo-*. The parser reads the first one present, in the
// order of these lists.
var (
	deliveryHeaders = []string{"X-Gitea-Delivery", "X-Forgejo-Delivery", "X-GitHub-Delivery"}
	eventHeaders    = []string{"X-Gitea-Event", "X-Forgejo-Event", "X-GitHub-Event"}
)

// Signature headers: plain lowercase hex HMAC-SHA256 (Gitea, Forgejo) or
// GitHub's "sha256=" form.
const (
	HeaderGiteaSignature   = "X-Gitea-Signature"
	HeaderForgejoSignature = "X-Forgejo-Signature"
	HeaderHubSignature     = "X-Hub-Signature-256"
	hubPrefix              = "sha256="
)

// DefaultMaxBody caps a webhook body (25 MiB, as for GitHub).
const DefaultMaxBody = 25 << 20

// unsetTime is how Gitea writes a time that is not set yet.
const unsetTime = "1970-01-01T00:00:00Z"

// Parser verifies and decodes Gitea and Forgejo webhooks. It implements
// corral.WebhookParser.
//
// Gitea (verified with 1.27.3): workflow_job deliveries become JobEvents.
// Forgejo: the headers and the signature are understood, but Forgejo sends
// no GitHub-shaped workflow_job event (its Actions events have their own
// payload, see forges.md): such deliveries are acknowledged with Job nil and
// Forgejo jobs are found by the forge sweep (Client.OpenJobs).
type Parser struct {
	// MaxBody caps the body size in bytes; 0 means DefaultMaxBody.
	MaxBody int64
}

var _ corral.WebhookParser = Parser{}

// Sign returns the X-Gitea-Signature value for body: the lowercase hex
// HMAC-SHA256 of the exact bytes, without prefix.
func Sign(secret corral.Secret, body []byte) string {
	return hmacsig.Sum(secret, body)
}

// ParseWebhook checks the signature over the exact body in constant time,
// then decodes the delivery. A missing or empty secret is refused: Gitea
// sends empty signature headers for a hook without secret.
func (p Parser) ParseWebhook(h http.Header, body []byte, secret corral.Secret) (corral.Delivery, error) {
	max := p.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	if int64(len(body)) > max {
		return corral.Delivery{}, fmt.Errorf("gitea webhook: body of %d bytes is over the cap of %d: %w", len(body), max, corral.ErrTooLarge)
	}
	if err := verify(h, body, secret); err != nil {
		return corral.Delivery{}, err
	}
	d := corral.Delivery{ID: first(h, deliveryHeaders), Event: first(h, eventHeaders)}
	if d.ID == "" {
		return corral.Delivery{}, fmt.Errorf("gitea webhook: missing delivery header (%s): %w", strings.Join(deliveryHeaders, ", "), corral.ErrBadInput)
	}
	if d.Event == "" {
		return corral.Delivery{}, fmt.Errorf("gitea webhook: missing event header (%s): %w", strings.Join(eventHeaders, ", "), corral.ErrBadInput)
	}
	if d.Event != "workflow_job" {
		var env envelope
		if err := decode(d.Event, body, &env); err != nil {
			return corral.Delivery{}, err
		}
		d.Repo = env.repo()
		return d, nil
	}
	var jp jobPayload
	if err := decode(d.Event, body, &jp); err != nil {
		return corral.Delivery{}, err
	}
	d.Repo = jp.repo()
	job, err := jp.jobEvent()
	if err != nil {
		return corral.Delivery{}, err
	}
	d.Job = job
	return d, nil
}

func first(h http.Header, names []string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return v
		}
	}
	return ""
}

// verify checks the first non-empty signature header. A present but wrong
// signature is refused; it never falls through to another header.
func verify(h http.Header, body []byte, secret corral.Secret) error {
	if secret.Reveal() == "" {
		return fmt.Errorf("gitea webhook: no webhook secret configured; unsigned deliveries are refused: %w", corral.ErrUnauthorized)
	}
	var name, hexSig string
	for _, n := range []string{HeaderGiteaSignature, HeaderForgejoSignature, HeaderHubSignature} {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			name, hexSig = n, v
			break
		}
	}
	if name == "" {
		return fmt.Errorf("gitea webhook: no signature header (%s, %s or %s): %w",
			HeaderGiteaSignature, HeaderForgejoSignature, HeaderHubSignature, corral.ErrUnauthorized)
	}
	if name == HeaderHubSignature {
		var ok bool
		if hexSig, ok = strings.CutPrefix(hexSig, hubPrefix); !ok {
			return fmt.Errorf("gitea webhook: %s does not start with %q: %w", name, hubPrefix, corral.ErrUnauthorized)
		}
	}
	match, err := hmacsig.Check(secret, body, hexSig)
	if err != nil {
		return fmt.Errorf("gitea webhook: %s is not hex: %w", name, corral.ErrUnauthorized)
	}
	if !match {
		return fmt.Errorf("gitea webhook: %s does not match: %w", name, corral.ErrUnauthorized)
	}
	return nil
}

type envelope struct {
	Repository *struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

func (e envelope) repo() string {
	if e.Repository == nil {
		return ""
	}
	return e.Repository.FullName
}

type jobPayload struct {
	envelope
	Action      *string   `json:"action"`
	WorkflowJob *jobModel `json:"workflow_job"`
}

// jobModel is Gitea's ActionWorkflowJob, in webhooks and in the REST API
// alike. conclusion, runner_id, runner_name and head_branch are omitted
// when empty; unset times are "1970-01-01T00:00:00Z"; ids are small
// per-instance integers.
type jobModel struct {
	ID          *int64   `json:"id"`
	URL         string   `json:"url"`
	RunID       int64    `json:"run_id"`
	RunURL      string   `json:"run_url"`
	RunAttempt  int      `json:"run_attempt"`
	Name        string   `json:"name"`
	Labels      []string `json:"labels"`
	Status      string   `json:"status"`
	Conclusion  string   `json:"conclusion"`
	RunnerID    int64    `json:"runner_id"`
	RunnerName  string   `json:"runner_name"`
	CreatedAt   string   `json:"created_at"`
	StartedAt   string   `json:"started_at"`
	CompletedAt string   `json:"completed_at"`
	// Read for CI analytics from completed events. Gitea 1.27 sends no
	// workflow name in workflow_job.
	Steps []jobStep `json:"steps"`
}

type jobStep struct {
	Number      int    `json:"number"`
	Name        string `json:"name"`
	Conclusion  string `json:"conclusion"`
	StartedAt   string `json:"started_at"`
	CompletedAt string `json:"completed_at"`
}

var knownActions = map[corral.JobAction]bool{
	corral.ActionQueued:     true,
	corral.ActionWaiting:    true,
	corral.ActionInProgress: true,
	corral.ActionCompleted:  true,
}

// jobEvent returns nil, nil for an action corral does not know.
func (p jobPayload) jobEvent() (*corral.JobEvent, error) {
	if p.Action == nil || *p.Action == "" {
		return nil, badField("action", "missing")
	}
	action := corral.JobAction(*p.Action)
	if !knownActions[action] {
		return nil, nil
	}
	if p.WorkflowJob == nil {
		return nil, badField("workflow_job", "missing or null")
	}
	ev, err := p.WorkflowJob.event(action)
	if err != nil {
		return nil, err
	}
	if r := p.repo(); r != "" {
		ev.Repo = r
	}
	return &ev, nil
}

// event turns a job into a JobEvent with the given action.
func (j *jobModel) event(action corral.JobAction) (corral.JobEvent, error) {
	if j.ID == nil || *j.ID <= 0 {
		return corral.JobEvent{}, badField("workflow_job.id", "missing or not positive")
	}
	var ts [3]time.Time
	for i, f := range []struct{ name, v string }{
		{"created_at", j.CreatedAt}, {"started_at", j.StartedAt}, {"completed_at", j.CompletedAt},
	} {
		t, err := parseTime(f.v)
		if err != nil {
			return corral.JobEvent{}, badField("workflow_job."+f.name, err.Error())
		}
		ts[i] = t
	}
	created, started, completed := ts[0], ts[1], ts[2]
	ev := corral.JobEvent{
		Action:     action,
		ForgeJobID: *j.ID,
		RunID:      j.RunID,
		RunAttempt: j.RunAttempt,
		Repo:       repoFromURL(j.RunURL, j.URL),
		Name:       j.Name,
		Labels:     j.Labels,
		RunnerID:   j.RunnerID,
		RunnerName: j.RunnerName,
		Conclusion: j.Conclusion,
	}
	switch action {
	case corral.ActionInProgress:
		ev.At = firstSet(started, created)
	case corral.ActionCompleted:
		ev.At = firstSet(completed, started, created)
	default:
		ev.At = created
	}
	if action == corral.ActionCompleted {
		ev.CreatedAt, ev.StartedAt, ev.CompletedAt = created, started, completed
		for i, st := range j.Steps {
			if i == corral.MaxSteps {
				break
			}
			s := corral.Step{Number: st.Number, Name: st.Name, Conclusion: st.Conclusion}
			var err error
			if s.StartedAt, err = parseTime(st.StartedAt); err != nil {
				return corral.JobEvent{}, badField(fmt.Sprintf("workflow_job.steps[%d].started_at", i), err.Error())
			}
			if s.CompletedAt, err = parseTime(st.CompletedAt); err != nil {
				return corral.JobEvent{}, badField(fmt.Sprintf("workflow_job.steps[%d].completed_at", i), err.Error())
			}
			ev.Steps = append(ev.Steps, s)
		}
	}
	return ev, nil
}

// repoFromURL reads owner/name from an API URL .../repos/{o}/{r}/actions/...
func repoFromURL(urls ...string) string {
	for _, u := range urls {
		_, rest, ok := strings.Cut(u, "/repos/")
		if !ok {
			continue
		}
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) >= 2 && parts[0] != "" && parts[1] != "" {
			return parts[0] + "/" + parts[1]
		}
	}
	return ""
}

func firstSet(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// parseTime reads an RFC 3339 time; "" and Gitea's epoch mean unset.
func parseTime(s string) (time.Time, error) {
	if s == "" || s == unsetTime {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	if t.Unix() <= 0 {
		return time.Time{}, nil
	}
	return t, nil
}

func badField(field, what string) error {
	return fmt.Errorf("gitea webhook: workflow_job payload: field %s: %s: %w", field, what, corral.ErrBadInput)
}

// decode unmarshals body into v; JSON errors become ErrBadInput errors that
// name the offending field.
func decode(event string, body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("gitea webhook: %s payload is empty: %w", event, corral.ErrBadInput)
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Errorf("gitea webhook: %s payload: field %s: want %s, got JSON %s: %w", event, field, te.Type, te.Value, corral.ErrBadInput)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("gitea webhook: %s payload is not valid JSON (offset %d): %w", event, se.Offset, corral.ErrBadInput)
	}
	return fmt.Errorf("gitea webhook: %s payload: %v: %w", event, err, corral.ErrBadInput)
}
