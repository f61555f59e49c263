package app

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
)

// TargetWrite is the body of POST /api/v1/targets (id required) and PATCH
// /api/v1/targets/{target} (a key that is absent keeps its value), in the
// config file's keys. The credentials (webhook_secret, token: a PAT or a
// GitHub App's private key) are write-only: sealed with the secret key
// before they reach the store, never answered, never logged; "" removes
// one.
type TargetWrite struct {
	ID            *string            `json:"id"`
	Tenant        *string            `json:"tenant"`
	Kind          *string            `json:"kind"`
	Scope         *string            `json:"scope"`
	Path          *string            `json:"path"`
	URL           *string            `json:"url"`
	WebhookSecret *corral.Secret     `json:"webhook_secret"`
	Token         *corral.Secret     `json:"token"`
	RunnerPrefix  *string            `json:"runner_prefix"`
	Settings      *map[string]string `json:"settings"`
	Mode          *string            `json:"mode"`
	PollInterval  *string            `json:"poll_interval"`
}

const targetWriteKeys = "id, tenant, kind, scope, path, url, webhook_secret, token, runner_prefix, settings, mode, poll_interval"

func decodeTargetWrite(r *http.Request) (TargetWrite, error) {
	body, err := readWriteBody(r)
	if err != nil {
		return TargetWrite{}, err
	}
	return catalog.DecodeStrict[TargetWrite](body, targetWriteKeys)
}

// merge lays tw over cur (the target as the catalog knows it, with its
// opened credentials) in the config file's terms.
func (tw TargetWrite) merge(cur corral.Target) (config.Target, error) {
	t := config.Target{ID: cur.ID, Tenant: cur.TenantID, Kind: string(cur.Kind), Scope: string(cur.Scope), Path: cur.Path,
		URL: cur.URL, WebhookSecret: cur.WebhookSecret, Token: cur.Token, RunnerPrefix: cur.RunnerPrefix,
		Settings: maps.Clone(cur.Settings), Mode: string(cur.Mode), PollInterval: cur.PollInterval}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&t.Tenant, tw.Tenant)
	set(&t.Kind, tw.Kind)
	set(&t.Scope, tw.Scope)
	set(&t.Path, tw.Path)
	set(&t.URL, tw.URL)
	set(&t.RunnerPrefix, tw.RunnerPrefix)
	set(&t.Mode, tw.Mode)
	if tw.WebhookSecret != nil {
		t.WebhookSecret = *tw.WebhookSecret
	}
	if tw.Token != nil {
		t.Token = *tw.Token
	}
	if tw.Settings != nil {
		t.Settings = maps.Clone(*tw.Settings)
	}
	if tw.PollInterval != nil {
		t.PollInterval = 0
		if *tw.PollInterval != "" {
			d, err := time.ParseDuration(*tw.PollInterval)
			if err != nil {
				return t, fmt.Errorf("poll_interval: want a duration like \"5s\", got %q: %w", *tw.PollInterval, corral.ErrBadInput)
			}
			t.PollInterval = d
		}
	}
	return t, nil
}

func (a *App) createTarget(w http.ResponseWriter, r *http.Request) {
	tw, err := decodeTargetWrite(r)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	if tw.ID == nil || *tw.ID == "" {
		httperr.Write(w, fmt.Errorf("id: required: %w", corral.ErrBadInput))
		return
	}
	if tw.Tenant == nil && auth.TenantOf(r.Context()) != "" {
		tn := auth.TenantOf(r.Context())
		tw.Tenant = &tn
	}
	a.writeTarget(w, r, *tw.ID, tw, true)
}

func (a *App) patchTarget(w http.ResponseWriter, r *http.Request) {
	tw, err := decodeTargetWrite(r)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	id := r.PathValue("target")
	if tw.ID != nil && *tw.ID != id {
		httperr.Write(w, fmt.Errorf("id: a target's id cannot change: %w", corral.ErrBadInput))
		return
	}
	a.writeTarget(w, r, id, tw, false)
}

// writeTarget checks the target with the config file's rules, seals its
// credentials and stores it through the catalog.
func (a *App) writeTarget(w http.ResponseWriter, r *http.Request, id string, tw TargetWrite, create bool) {
	snap := a.Catalog.Current()
	var tenants []string
	for _, t := range snap.Tenants {
		tenants = append(tenants, t.ID)
	}
	t, err := a.Catalog.PutTarget(r.Context(), id, func(stored corral.Target, exists bool) (corral.Target, error) {
		switch {
		case create && exists:
			if !auth.Visible(r.Context(), stored.TenantID) {
				// Another tenant's id: refused without telling whose.
				return corral.Target{}, fmt.Errorf("id: target %q exists already: %w", id, corral.ErrConflict)
			}
			return corral.Target{}, fmt.Errorf("id: target %q exists already (PATCH it): %w", id, corral.ErrConflict)
		case !create && (!exists || !auth.Visible(r.Context(), stored.TenantID)):
			return corral.Target{}, fmt.Errorf("target %q: %w", id, corral.ErrNotFound)
		}
		cur := stored
		if live, ok := snap.Target(id); ok { // with its opened credentials
			cur.WebhookSecret, cur.Token = live.WebhookSecret, live.Token
		}
		ct, err := tw.merge(cur)
		if err != nil {
			return corral.Target{}, err
		}
		if !auth.Visible(r.Context(), ct.Tenant) {
			return corral.Target{}, fmt.Errorf("tenant: a tenant-admin token writes its own tenant's targets only: %w", corral.ErrForbidden)
		}
		var others []corral.Target
		for _, o := range snap.Targets {
			if o.ID != id {
				others = append(others, o)
			}
		}
		nt, err := config.CheckTarget(ct, tenants, others)
		if err != nil {
			return corral.Target{}, err
		}
		// Added through the API (a config file's target PATCHed stays the
		// file's). Seal what was written now; keep the ciphertext of the rest.
		nt.FromAPI = !exists || stored.FromAPI
		nt.Sealed = maps.Clone(stored.Sealed)
		for field, v := range map[string]*corral.Secret{"webhook_secret": tw.WebhookSecret, "token": tw.Token} {
			if v == nil {
				continue
			}
			if nt.Sealed == nil {
				nt.Sealed = map[string]string{}
			}
			if *v == "" {
				nt.Sealed[field] = ""
				delete(nt.Sealed, field)
				continue
			}
			if a.opt.SecretBox == nil {
				return corral.Target{}, fmt.Errorf("%s: this corral has no secret key to seal it with (set %s on every replica): %w", field, "CORRAL_SECRET_KEY", corral.ErrUnavailable)
			}
			s, err := a.opt.SecretBox.Seal(catalog.SealedName(id, field), *v)
			if err != nil {
				return corral.Target{}, err
			}
			nt.Sealed[field] = s
		}
		if len(nt.Sealed) == 0 {
			nt.Sealed = nil
		}
		return nt, nil
	})
	if err != nil {
		var ve *config.ValidationError
		switch {
		case errors.As(err, &ve):
			httperr.Write(w, fmt.Errorf("%s: %w", strings.ReplaceAll(ve.Error(), "\n", "; "), corral.ErrBadInput))
		default:
			if !errors.Is(err, corral.ErrNotFound) && !errors.Is(err, corral.ErrBadInput) && !errors.Is(err, corral.ErrConflict) && !errors.Is(err, corral.ErrForbidden) {
				a.log.Warn("target write through the API failed", "target", id, "err", err)
			}
			httperr.Write(w, err)
		}
		return
	}
	a.log.Info("target written through the API", "target", t.ID, "created", create, "token", tokenID(r), "catalog_version", a.Catalog.Current().Version)
	a.Scheduler.Wake()
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	live, _ := a.Catalog.Current().Target(t.ID)
	httperr.WriteJSON(w, code, map[string]any{"target": a.targetView(live, nil, false)})
}

func (a *App) deleteTarget(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("target")
	err := a.Catalog.DeleteTarget(r.Context(), id, func(t corral.Target) error {
		if !auth.Visible(r.Context(), t.TenantID) {
			return fmt.Errorf("target %q: %w", id, corral.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	a.log.Info("target deleted through the API", "target", id, "token", tokenID(r))
	w.WriteHeader(http.StatusNoContent)
}
