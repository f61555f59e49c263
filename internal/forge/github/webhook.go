// Package github is corral's adapter for GitHub (github.com, GHEC, GHES).
// For now it holds the webhook parser; the REST client comes later.
package github

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

// Header names GitHub sets on every webhook delivery.
const (
	HeaderEvent     = "X-GitHub-Event"
	HeaderDelivery  = "X-GitHub-Delivery"
	HeaderSignature = "X-Hub-Signature-256"
)

// DefaultMaxBody is GitHub's own cap on webhook payloads (25 MB).
const DefaultMaxBody = 25 << 20

const signaturePrefix = "sha256="

// Parser verifies and decodes GitHub webhooks. It implements
// corral.WebhookParser.
type Parser struct {
	// MaxBody caps the body size in bytes; 0 means DefaultMaxBody.
	MaxBody int64
}

var _ corral.WebhookParser = Parser{}

// Sign returns the X-Hub-Signature-256 value for body: "sha256=" and the
// lowercase hex HMAC-SHA256 of the exact bytes. The stand-in GitHub and tests
// use it to sign what they send.
func Sign(secret corral.Secret, body []byte) string {
	return signaturePrefix + hmacsig.Sum(secret, body)
}

// ParseWebhook checks the signature over the exact body in constant time,
// then decodes the delivery. workflow_job deliveries with a known action set
// Delivery.Job; every other event (ping, workflow_run, ...) and a
// workflow_job action corral does not know yield a Delivery with Job nil, so
// that the caller acknowledges and ignores them.
func (p Parser) ParseWebhook(h http.Header, body []byte, secret corral.Secret) (corral.Delivery, error) {
	max := p.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	if int64(len(body)) > max {
		return corral.Delivery{}, fmt.Errorf("github webhook: body of %d bytes is over the cap of %d: %w", len(body), max, corral.ErrTooLarge)
	}
	if err := verify(h.Get(HeaderSignature), body, secret); err != nil {
		return corral.Delivery{}, err
	}
	d := corral.Delivery{
		ID:    strings.TrimSpace(h.Get(HeaderDelivery)),
		Event: strings.TrimSpace(h.Get(HeaderEvent)),
	}
	if d.ID == "" {
		return corral.Delivery{}, fmt.Errorf("github webhook: missing %s header: %w", HeaderDelivery, corral.ErrBadInput)
	}
	if d.Event == "" {
		return corral.Delivery{}, fmt.Errorf("github webhook: missing %s header: %w", HeaderEvent, corral.ErrBadInput)
	}
	if d.Event != "workflow_job" {
		var env envelope
		if err := decode(d.Event, body, &env); err != nil {
			return corral.Delivery{}, err
		}
		d.InstallationID, d.Repo = env.ids()
		return d, nil
	}
	var jp jobPayload
	if err := decode(d.Event, body, &jp); err != nil {
		return corral.Delivery{}, err
	}
	d.InstallationID, d.Repo = jp.envelope.ids()
	job, err := jp.jobEvent()
	if err != nil {
		return corral.Delivery{}, err
	}
	d.Job = job
	return d, nil
}

func verify(header string, body []byte, secret corral.Secret) error {
	if secret.Reveal() == "" {
		return fmt.Errorf("github webhook: no webhook secret configured; unsigned deliveries are refused: %w", corral.ErrUnauthorized)
	}
	if header == "" {
		return fmt.Errorf("github webhook: missing %s header: %w", HeaderSignature, corral.ErrUnauthorized)
	}
	hexSig, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return fmt.Errorf("github webhook: %s does not start with %q: %w", HeaderSignature, signaturePrefix, corral.ErrUnauthorized)
	}
	ok, err := hmacsig.Check(secret, body, hexSig)
	if err != nil {
		return fmt.Errorf("github webhook: %s is not hex: %w", HeaderSignature, corral.ErrUnauthorized)
	}
	if !ok {
		return fmt.Errorf("github webhook: signature does not match: %w", corral.ErrUnauthorized)
	}
	return nil
}

// envelope is the part of every payload that routes a delivery.
type envelope struct {
	Installation *struct {
		ID int64 `json:"id"`
	} `json:"installation"`
	Repository *struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
}

func (e envelope) ids() (installation int64, repo string) {
	if e.Installation != nil {
		installation = e.Installation.ID
	}
	if e.Repository != nil {
		repo = e.Repository.FullName
	}
	return installation, repo
}

type jobPayload struct {
	envelope
	Action      *string      `json:"action"`
	WorkflowJob *workflowJob `json:"workflow_job"`
}

// workflowJob holds the fields corral reads. Pointers tell absent or null
// from zero; times stay strings so a bad one names its field.
type workflowJob struct {
	ID          *int64   `json:"id"`
	RunID       int64    `json:"run_id"`
	RunAttempt  int      `json:"run_attempt"`
	Name        string   `json:"name"`
	Labels      []string `json:"labels"`
	Status      string   `json:"status"`
	Conclusion  *string  `json:"conclusion"`
	RunnerID    *int64   `json:"runner_id"`
	RunnerName  *string  `json:"runner_name"`
	CreatedAt   *string  `json:"created_at"`
	StartedAt   *string  `json:"started_at"`
	CompletedAt *string  `json:"completed_at"`
	// Read for CI analytics from completed events.
	WorkflowName string    `json:"workflow_name"`
	Steps        []jobStep `json:"steps"`
}

type jobStep struct {
	Number      int     `json:"number"`
	Name        string  `json:"name"`
	Conclusion  *string `json:"conclusion"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
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
	wj := p.WorkflowJob
	if wj == nil {
		return nil, badField("workflow_job", "missing or null")
	}
	if wj.ID == nil || *wj.ID <= 0 {
		return nil, badField("workflow_job.id", "missing or not positive")
	}
	created, err := parseTime("workflow_job.created_at", wj.CreatedAt)
	if err != nil {
		return nil, err
	}
	started, err := parseTime("workflow_job.started_at", wj.StartedAt)
	if err != nil {
		return nil, err
	}
	completed, err := parseTime("workflow_job.completed_at", wj.CompletedAt)
	if err != nil {
		return nil, err
	}
	ev := &corral.JobEvent{
		Action:     action,
		ForgeJobID: *wj.ID,
		RunID:      wj.RunID,
		RunAttempt: wj.RunAttempt,
		Name:       wj.Name,
		Labels:     wj.Labels,
	}
	_, ev.Repo = p.envelope.ids()
	if wj.RunnerID != nil {
		ev.RunnerID = *wj.RunnerID
	}
	if wj.RunnerName != nil {
		ev.RunnerName = *wj.RunnerName
	}
	if wj.Conclusion != nil {
		ev.Conclusion = *wj.Conclusion
	}
	// The time of the event: its own stamp when present, else the latest
	// one the payload carries (old examples lack created_at).
	switch action {
	case corral.ActionInProgress:
		ev.At = firstSet(started, created, completed)
	case corral.ActionCompleted:
		ev.At = firstSet(completed, started, created)
	default:
		ev.At = firstSet(created, started, completed)
	}
	if action == corral.ActionCompleted {
		ev.Workflow = wj.WorkflowName
		ev.CreatedAt, ev.StartedAt, ev.CompletedAt = created, started, completed
		if ev.Steps, err = steps(wj.Steps); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// steps reads a job's steps (at most corral.MaxSteps); a bad time names
// its step.
func steps(in []jobStep) ([]corral.Step, error) {
	var out []corral.Step
	for i, st := range in {
		if i == corral.MaxSteps {
			break
		}
		s := corral.Step{Number: st.Number, Name: st.Name}
		if st.Conclusion != nil {
			s.Conclusion = *st.Conclusion
		}
		var err error
		if s.StartedAt, err = parseTime(fmt.Sprintf("workflow_job.steps[%d].started_at", i), st.StartedAt); err != nil {
			return nil, err
		}
		if s.CompletedAt, err = parseTime(fmt.Sprintf("workflow_job.steps[%d].completed_at", i), st.CompletedAt); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func firstSet(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

func parseTime(field string, s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return time.Time{}, badField(field, fmt.Sprintf("%q is not an RFC 3339 time", *s))
	}
	return t, nil
}

func badField(field, what string) error {
	return fmt.Errorf("github webhook: workflow_job payload: field %s: %s: %w", field, what, corral.ErrBadInput)
}

// decode unmarshals body into v and turns JSON errors into ErrBadInput
// errors that name the offending field.
func decode(event string, body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("github webhook: %s payload is empty: %w", event, corral.ErrBadInput)
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
		return fmt.Errorf("github webhook: %s payload: field %s: want %s, got JSON %s: %w",
			event, field, te.Type, te.Value, corral.ErrBadInput)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("github webhook: %s payload is not valid JSON (offset %d): %w", event, se.Offset, corral.ErrBadInput)
	}
	return fmt.Errorf("github webhook: %s payload: %v: %w", event, err, corral.ErrBadInput)
}
