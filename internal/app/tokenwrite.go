package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
)

// TokenCreate is the body of POST /api/v1/tokens.
type TokenCreate struct {
	Name   string `json:"name"`
	Scope  string `json:"scope"`
	Tenant string `json:"tenant"`  // tenant scopes; a tenant-admin's own by default
	Expire string `json:"expires"` // a duration like "720h"; "" = never
}

// createToken mints a token and answers its secret, once: the store keeps
// only its hash. An admin mints any scope; a tenant-admin mints
// tenant-read and tenant-admin tokens of its own tenant only. The secret
// is never logged.
func (a *App) createToken(w http.ResponseWriter, r *http.Request) {
	var tc TokenCreate
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tc); err != nil {
		httperr.Write(w, fmt.Errorf("body: %v (keys: name, scope, tenant, expires): %w", err, corral.ErrBadInput))
		return
	}
	scope := corral.TokenScope(tc.Scope)
	own := auth.TenantOf(r.Context())
	if own != "" {
		if tc.Tenant == "" {
			tc.Tenant = own
		}
		if !scope.Tenanted() || tc.Tenant != own {
			httperr.Write(w, fmt.Errorf("scope: a tenant-admin token mints tenant-read or tenant-admin tokens of its own tenant only: %w", corral.ErrForbidden))
			return
		}
	}
	if tc.Name == "" {
		httperr.Write(w, fmt.Errorf("name: required: %w", corral.ErrBadInput))
		return
	}
	if scope.Tenanted() {
		if _, ok := a.Catalog.Current().Tenant(tc.Tenant); !ok {
			httperr.Write(w, fmt.Errorf("tenant: unknown tenant %q: %w", tc.Tenant, corral.ErrBadInput))
			return
		}
	}
	var expires time.Duration
	if tc.Expire != "" {
		d, err := time.ParseDuration(tc.Expire)
		if err != nil || d <= 0 {
			httperr.Write(w, fmt.Errorf("expires: want a positive duration like \"720h\", got %q: %w", tc.Expire, corral.ErrBadInput))
			return
		}
		expires = d
	}
	secret, tk, err := auth.New(tc.Name, scope, tc.Tenant, expires, a.opt.Clock.Now())
	if err != nil {
		httperr.Write(w, err)
		return
	}
	if err := a.opt.Store.Update(r.Context(), func(tx corral.Tx) error { return tx.PutToken(r.Context(), tk) }); err != nil {
		httperr.Write(w, err)
		return
	}
	a.log.Info("token created through the API", "id", tk.ID, "scope", tk.Scope, "tenant", tk.TenantID, "by", tokenID(r))
	httperr.WriteJSON(w, http.StatusCreated, map[string]any{"token": ViewToken(tk), "secret": secret})
}

// revokeToken revokes a token; a tenant-admin revokes its own tenant's
// tokens only (another's is not found).
func (a *App) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	now := a.opt.Clock.Now()
	var tk corral.Token
	err := a.opt.Store.Update(r.Context(), func(tx corral.Tx) error {
		tks, err := tx.Tokens(r.Context())
		if err != nil {
			return err
		}
		found := false
		for _, t := range tks {
			if t.ID == id && (auth.TenantOf(r.Context()) == "" || t.TenantID == auth.TenantOf(r.Context())) {
				tk, found = t, true
			}
		}
		if !found {
			return fmt.Errorf("token %q: %w", id, corral.ErrNotFound)
		}
		return tx.RevokeToken(r.Context(), id, now)
	})
	if err != nil {
		if !errors.Is(err, corral.ErrNotFound) {
			a.log.Warn("token revocation through the API failed", "id", id, "err", err)
		}
		httperr.Write(w, err)
		return
	}
	a.log.Info("token revoked through the API", "id", tk.ID, "by", tokenID(r))
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"id": tk.ID, "revoked": true})
}
