package app

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
)

// TenantView is one tenant as the API shows it: its settings and what it
// owns now.
type TenantView struct {
	ID           string `json:"id"`
	MaxInstances int    `json:"max_instances"` // 0: no cap
	// FromAPI: added through the API (a config file that does not list it
	// keeps it).
	FromAPI bool `json:"from_api"`
	Targets int  `json:"targets"`
	Pools   int  `json:"pools"`
	// Instances counts its live instances (every state but deleted).
	Instances int `json:"instances"`
}

func (a *App) listTenants(w http.ResponseWriter, r *http.Request) {
	snap := a.Catalog.Current()
	out := make([]TenantView, 0, len(snap.Tenants))
	err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		for _, t := range snap.Tenants {
			if !auth.Visible(r.Context(), t.ID) {
				continue
			}
			v, err := tenantView(r, tx, snap.Targets, snap.Pools, t)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		httperr.Write(w, err)
		return
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"tenants": out})
}

func tenantView(r *http.Request, tx corral.ReadTx, targets []corral.Target, pools []corral.Pool, t corral.Tenant) (TenantView, error) {
	v := TenantView{ID: t.ID, MaxInstances: t.MaxInstances, FromAPI: t.FromAPI}
	for _, x := range targets {
		if x.TenantID == t.ID {
			v.Targets++
		}
	}
	for _, p := range pools {
		if p.TenantID == t.ID {
			v.Pools++
		}
	}
	n, err := tx.CountInstances(r.Context(), corral.CountFilter{TenantID: t.ID})
	v.Instances = n
	return v, err
}

// TenantWrite is the body of POST /api/v1/tenants (id required) and PATCH
// /api/v1/tenants/{tenant} (a key that is absent keeps its value), in the
// config file's keys.
type TenantWrite struct {
	ID           *string `json:"id"`
	MaxInstances *int    `json:"max_instances"`
}

const tenantWriteKeys = "id, max_instances"

func decodeTenantWrite(r *http.Request) (TenantWrite, error) {
	body, err := readWriteBody(r)
	if err != nil {
		return TenantWrite{}, err
	}
	return catalog.DecodeStrict[TenantWrite](body, tenantWriteKeys)
}

func (a *App) createTenant(w http.ResponseWriter, r *http.Request) {
	tw, err := decodeTenantWrite(r)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	if tw.ID == nil || *tw.ID == "" {
		httperr.Write(w, fmt.Errorf("id: required: %w", corral.ErrBadInput))
		return
	}
	a.writeTenant(w, r, *tw.ID, tw, true)
}

func (a *App) patchTenant(w http.ResponseWriter, r *http.Request) {
	tw, err := decodeTenantWrite(r)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	id := r.PathValue("tenant")
	if tw.ID != nil && *tw.ID != id {
		httperr.Write(w, fmt.Errorf("id: a tenant's id cannot change: %w", corral.ErrBadInput))
		return
	}
	a.writeTenant(w, r, id, tw, false)
}

// writeTenant checks the tenant with the config file's rules and stores it
// through the catalog.
func (a *App) writeTenant(w http.ResponseWriter, r *http.Request, id string, tw TenantWrite, create bool) {
	t, err := a.Catalog.PutTenant(r.Context(), id, func(stored corral.Tenant, exists bool) (corral.Tenant, error) {
		switch {
		case create && exists:
			return corral.Tenant{}, fmt.Errorf("id: tenant %q exists already (PATCH it): %w", id, corral.ErrConflict)
		case !create && !exists:
			return corral.Tenant{}, fmt.Errorf("tenant %q: %w", id, corral.ErrNotFound)
		}
		ct := config.Tenant{ID: id, MaxInstances: stored.MaxInstances}
		if tw.MaxInstances != nil {
			ct.MaxInstances = *tw.MaxInstances
		}
		nt, err := config.CheckTenant(ct)
		if err != nil {
			return corral.Tenant{}, err
		}
		// Added through the API (a config file's tenant PATCHed stays the
		// file's).
		nt.FromAPI = !exists || stored.FromAPI
		return nt, nil
	})
	if err != nil {
		var ve *config.ValidationError
		switch {
		case errors.As(err, &ve):
			httperr.Write(w, fmt.Errorf("%s: %w", strings.ReplaceAll(ve.Error(), "\n", "; "), corral.ErrBadInput))
		default:
			if !errors.Is(err, corral.ErrNotFound) && !errors.Is(err, corral.ErrBadInput) && !errors.Is(err, corral.ErrConflict) {
				a.log.Warn("tenant write through the API failed", "tenant", id, "err", err)
			}
			httperr.Write(w, err)
		}
		return
	}
	a.log.Info("tenant written through the API", "tenant", t.ID, "created", create, "max_instances", t.MaxInstances, "token", tokenID(r), "catalog_version", a.Catalog.Current().Version)
	a.Scheduler.Wake()
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	snap := a.Catalog.Current()
	var v TenantView
	if err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		v, err = tenantView(r, tx, snap.Targets, snap.Pools, t)
		return err
	}); err != nil {
		httperr.Write(w, err)
		return
	}
	httperr.WriteJSON(w, code, map[string]any{"tenant": v})
}

func (a *App) deleteTenant(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("tenant")
	if err := a.Catalog.DeleteTenant(r.Context(), id); err != nil {
		httperr.Write(w, err)
		return
	}
	a.log.Info("tenant deleted through the API", "tenant", id, "token", tokenID(r))
	w.WriteHeader(http.StatusNoContent)
}
