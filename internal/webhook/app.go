package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// A GitHub App has ONE webhook URL for every installation. ServeApp takes
// those deliveries at /webhooks/app/{app id} and routes each to the target
// it belongs to: the targets whose settings name that app_id (and, when
// set, installation_id), the most specific scope first (the repository,
// then its organization, then an enterprise target).

// ServeApp serves POST /webhooks/app/{app}.
func (h *Handler) ServeApp(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	seen := Seen{At: time.Now(), Target: "app:" + app, Delivery: deliveryID(r.Header), Event: eventOf(r.Header)}
	code, err := h.serveApp(w, r, app, &seen)
	if h.rec != nil {
		h.rec.Delivery("app:"+app, Result(code))
	}
	seen.Result, seen.Status, seen.Took = Result(code), sentStatus(code), time.Since(seen.At)
	h.recent.add(seen)
	if err != nil {
		reqid.Logger(r, h.log).Warn("app webhook refused", "app", app, "status", code, "delivery", deliveryID(r.Header), "err", err)
		httperr.Write(w, err)
	}
}

func (h *Handler) appTargets(app string) []corral.Target {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []corral.Target
	for _, t := range h.targets {
		if t.Kind == corral.KindGitHub && (t.Settings["app_id"] == app || t.Settings["app_hook"] == app) {
			out = append(out, t)
		}
	}
	return out
}

func (h *Handler) serveApp(w http.ResponseWriter, r *http.Request, app string, seen *Seen) (int, error) {
	ts := h.appTargets(app)
	if len(ts) == 0 {
		err := fmt.Errorf("no target uses GitHub App %q: %w", app, corral.ErrNotFound)
		return httperr.Status(err), err
	}
	parser, err := h.parsers.Parser(corral.KindGitHub)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	body, done, err := h.readBody(w, r, "app:"+app)
	if err != nil {
		return httperr.Status(err), err
	}
	defer done()
	// Targets of one App share its webhook secret (the config requires
	// it); two Apps on different hosts may share a name, so each distinct
	// secret is tried, and only the targets with the one that verified
	// take part in routing.
	var d corral.Delivery
	var secret corral.Secret
	tried := map[corral.Secret]bool{}
	for _, t := range ts {
		if tried[t.WebhookSecret] {
			continue
		}
		tried[t.WebhookSecret] = true
		d, err = parser.ParseWebhook(r.Header, body, t.WebhookSecret)
		if err == nil {
			secret = t.WebhookSecret
			break
		}
		if !errors.Is(err, corral.ErrUnauthorized) {
			break // malformed: no other secret makes it readable
		}
	}
	if err != nil {
		return httperr.Status(err), fmt.Errorf("app %s: %w", app, err)
	}
	ts = slices.DeleteFunc(ts, func(t corral.Target) bool { return t.WebhookSecret != secret })
	if d.Job == nil {
		// ping and other events: acknowledged, nothing to record.
		httperr.WriteJSON(w, http.StatusAccepted, Response{Status: "ignored", Delivery: d.ID, Event: d.Event})
		return http.StatusAccepted, nil
	}
	t, ok := routeApp(ts, d)
	if !ok {
		err := fmt.Errorf("app %s: no target for installation %d and repository %q: %w", app, d.InstallationID, d.Repo, corral.ErrNotFound)
		return httperr.Status(err), err
	}
	res, err := h.ing.Ingest(r.Context(), t, d)
	if err != nil {
		return httperr.Status(err), err
	}
	resp := Response{Status: "accepted", Delivery: d.ID, Event: d.Event, JobID: res.JobID, Duplicate: res.Duplicate, Target: t.ID}
	seen.JobID, seen.Routed = res.JobID, t.ID
	if res.Duplicate {
		resp.Status = "duplicate"
	}
	httperr.WriteJSON(w, http.StatusAccepted, resp)
	if res.Duplicate {
		return statusDuplicate, nil
	}
	return http.StatusAccepted, nil
}

// routeApp picks the target a delivery of an App belongs to.
func routeApp(ts []corral.Target, d corral.Delivery) (corral.Target, bool) {
	repo := d.Repo
	if repo == "" && d.Job != nil {
		repo = d.Job.Repo
	}
	owner, _, _ := strings.Cut(repo, "/")
	best, rank := corral.Target{}, 0
	for _, t := range ts {
		if id := t.Settings["installation_id"]; id != "" && d.InstallationID != 0 && id != strconv.FormatInt(d.InstallationID, 10) {
			continue
		}
		r := 0
		switch t.Scope {
		case corral.ScopeRepo:
			if strings.EqualFold(t.Path, repo) {
				r = 3
			}
		case corral.ScopeOrg:
			if strings.EqualFold(t.Path, owner) {
				r = 2
			}
		case corral.ScopeEnterprise:
			r = 1 // an enterprise target takes what no repo or org target claims
		}
		if r > rank {
			best, rank = t, r
		}
	}
	return best, rank > 0
}
