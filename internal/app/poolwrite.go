package app

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// patchPool changes a live pool's settings through the catalog: the change
// is in the store when the answer comes, and every replica's scheduler uses
// it from its next pass. The config file stays the source of truth: a
// later SIGHUP, restart or `corral apply` of a file sets the file's values
// again (docs/api.md).
func (a *App) patchPool(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("pool")
	body, err := readWriteBody(r)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	pp, err := catalog.DecodePoolPatch(body)
	if err != nil {
		httperr.Write(w, err)
		return
	}
	// The provider is this replica's, and cannot change here; the pool's
	// tenant must be the caller's (another tenant's pool is not found).
	p, err := a.Catalog.UpdatePool(r.Context(), id, func(p *corral.Pool) error {
		if !auth.Visible(r.Context(), p.TenantID) {
			return fmt.Errorf("pool %q: %w", id, corral.ErrNotFound)
		}
		return pp.Apply(p)
	})
	if err != nil {
		if !errors.Is(err, corral.ErrNotFound) && !errors.Is(err, corral.ErrBadInput) {
			reqid.Logger(r, a.log).Warn("pool change through the API failed", "pool", id, "err", err)
		}
		httperr.Write(w, err)
		return
	}
	reqid.Logger(r, a.log).Info("pool changed through the API", "pool", p.ID, "token", tokenID(r), "catalog_version", a.Catalog.Current().Version)
	a.Scheduler.Wake()
	pools, _, err := a.livePools(r.Context(), a.scope(r))
	if err != nil {
		httperr.Write(w, err)
		return
	}
	for _, v := range pools {
		if v.ID == p.ID {
			httperr.WriteJSON(w, http.StatusOK, map[string]any{"pool": v})
			return
		}
	}
	httperr.Write(w, fmt.Errorf("pool %q: %w", id, corral.ErrNotFound))
}

// readWriteBody reads an API write's body, at most 64 KiB.
func readWriteBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %v: %w", err, corral.ErrBadInput)
	}
	if len(body) > 64<<10 {
		return nil, fmt.Errorf("body over 64 KiB: %w", corral.ErrBadInput)
	}
	return body, nil
}
