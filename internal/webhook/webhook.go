// Package webhook is the HTTP endpoint forges deliver to: one path per
// target (/webhooks/{target}), the signature checked in constant time by
// the forge's parser before anything is decoded, a cap on the body size,
// dedup by delivery id, and 202 only after the delivery is committed.
package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/reqid"
)

// DefaultMaxBody caps a delivery's body. workflow_job payloads are about
// 10 KiB; GitHub's own cap is 25 MB, far more than any job event needs.
const DefaultMaxBody = 1 << 20

// Ingester records a verified delivery durably.
type Ingester interface {
	Ingest(ctx context.Context, t corral.Target, d corral.Delivery) (ledger.Result, error)
}

// Parsers gives the webhook parser of a forge family.
type Parsers interface {
	Parser(k corral.TargetKind) (corral.WebhookParser, error)
}

// Recorder observes deliveries (metrics); nil hooks are fine. result is
// one of accepted, duplicate, ignored, bad_signature, malformed, oversize,
// unknown_target, overloaded, error.
type Recorder interface {
	Delivery(target, result string)
}

// statusDuplicate is what serve returns (to the recorder, never to the
// forge, which got 202) for a delivery recorded before.
const statusDuplicate = http.StatusAlreadyReported

// Result names the outcome of a delivery from the status serve returned.
func Result(status int) string {
	switch status {
	case http.StatusAccepted:
		return "accepted"
	case statusDuplicate:
		return "duplicate"
	case http.StatusUnauthorized:
		return "bad_signature"
	case http.StatusBadRequest:
		return "malformed"
	case http.StatusRequestEntityTooLarge:
		return "oversize"
	case http.StatusNotFound:
		return "unknown_target"
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return "overloaded"
	default:
		return "error"
	}
}

// Handler serves POST /webhooks/{target}.
type Handler struct {
	mu      sync.RWMutex
	targets map[string]corral.Target
	parsers Parsers
	ing     Ingester
	maxBody int64
	gate    *gate // body bytes in flight (limits.go)
	rec     Recorder
	recent  *recent
	log     *slog.Logger
}

// New assembles a handler. It does no I/O.
func New(targets []corral.Target, parsers Parsers, ing Ingester, maxBody int64, rec Recorder, log *slog.Logger) *Handler {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{parsers: parsers, ing: ing, maxBody: maxBody, rec: rec, recent: newRecent(RecentSize), log: log.With("component", "webhook")}
	h.SetLimits(0, 0)
	h.SetTargets(targets)
	return h
}

// SetTargets replaces the known targets (config reload).
func (h *Handler) SetTargets(ts []corral.Target) {
	m := make(map[string]corral.Target, len(ts))
	for _, t := range ts {
		m[t.ID] = t
	}
	h.mu.Lock()
	h.targets = m
	h.mu.Unlock()
}

// Response is the JSON body of a 202.
type Response struct {
	Status    string `json:"status"` // "accepted", "duplicate" or "ignored"
	Delivery  string `json:"delivery"`
	Event     string `json:"event"`
	JobID     int64  `json:"job_id,omitempty"`
	Duplicate bool   `json:"duplicate"`
	Target    string `json:"target,omitempty"` // for App deliveries: the target chosen
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("target")
	seen := Seen{At: time.Now(), Target: id, Delivery: deliveryID(r.Header), Event: eventOf(r.Header)}
	code, err := h.serve(w, r, id, &seen)
	if h.rec != nil {
		h.rec.Delivery(id, Result(code))
	}
	seen.Result, seen.Status, seen.Took = Result(code), sentStatus(code), time.Since(seen.At)
	h.recent.add(seen)
	if err != nil {
		reqid.Logger(r, h.log).Warn("webhook refused", "target", id, "status", code, "delivery", deliveryID(r.Header), "err", err)
		httperr.Write(w, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, id string, seen *Seen) (int, error) {
	h.mu.RLock()
	t, ok := h.targets[id]
	h.mu.RUnlock()
	if !ok {
		err := fmt.Errorf("unknown target %q: %w", id, corral.ErrNotFound)
		return httperr.Status(err), err
	}
	parser, err := h.parsers.Parser(t.Kind)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	body, done, err := h.readBody(w, r, id)
	if err != nil {
		return httperr.Status(err), err
	}
	defer done()
	d, err := parser.ParseWebhook(r.Header, body, t.WebhookSecret)
	if err != nil {
		return httperr.Status(err), fmt.Errorf("target %s: %w", id, err)
	}
	res, err := h.ing.Ingest(r.Context(), t, d)
	if err != nil {
		return httperr.Status(err), err
	}
	resp := Response{Status: "accepted", Delivery: d.ID, Event: d.Event, JobID: res.JobID, Duplicate: res.Duplicate}
	seen.JobID = res.JobID
	if res.Duplicate {
		resp.Status = "duplicate"
	}
	httperr.WriteJSON(w, http.StatusAccepted, resp)
	if res.Duplicate {
		return statusDuplicate, nil
	}
	return http.StatusAccepted, nil
}
