package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
	"github.com/corral-ci/corral/internal/route"
)

// PoolPatch is the body of PATCH /api/v1/pools/{pool}: the settings an
// operator may change on a live pool, in the config file's keys and
// spellings. A key that is absent keeps its value. The pool's id, tenant,
// provider, arch, targets, provider options and schedules are changed in
// the config file (then SIGHUP or `corral apply`), not here.
type PoolPatch struct {
	Labels         *[]string `json:"labels"`
	Image          *string   `json:"image"`
	Flavor         *string   `json:"flavor"`     // capacity word, e.g. 2cpu4gb
	MaxFlavor      *string   `json:"max_flavor"` // capacity word; "" = no cap
	Priority       *int      `json:"priority"`
	MaxInstances   *int      `json:"max_instances"`
	MinIdle        *int      `json:"min_idle"`
	Concurrency    *int      `json:"concurrency"`
	Headroom       *string   `json:"headroom"` // "2" or "25%"
	BootTimeout    *string   `json:"boot_timeout"`
	MaxJobRuntime  *string   `json:"max_job_runtime"`
	IdleTimeout    *string   `json:"idle_timeout"`
	MaxLifetime    *string   `json:"max_lifetime"`
	PricePerMinute *float64  `json:"price_per_minute"`
}

// poolPatchKeys are PoolPatch's keys, for the error on an unknown one.
const poolPatchKeys = "labels, image, flavor, max_flavor, priority, max_instances, min_idle, concurrency, headroom, boot_timeout, max_job_runtime, idle_timeout, max_lifetime, price_per_minute"

// apply edits p; every bad value is named with its key.
func (pp PoolPatch) apply(p *corral.Pool) error {
	var probs []string
	bad := func(key, format string, args ...any) {
		probs = append(probs, key+": "+fmt.Sprintf(format, args...))
	}
	if pp.Labels != nil {
		if len(*pp.Labels) == 0 {
			bad("labels", "a pool needs at least one label")
		}
		p.Labels = slices.Clone(*pp.Labels)
	}
	if pp.Image != nil {
		p.Image = *pp.Image
	}
	capacity := func(key, s string, keepArch string) (corral.Flavor, bool) {
		f, ok, err := route.ParseCapacity(s)
		switch {
		case err != nil:
			bad(key, "%v", err)
		case !ok:
			bad(key, "want a capacity word like 4cpu8gb40gb, got %q", s)
		}
		f.Arch = keepArch
		return f, ok && err == nil
	}
	if pp.Flavor != nil {
		if f, ok := capacity("flavor", *pp.Flavor, p.Flavor.Arch); ok {
			p.Flavor = f
		}
	}
	if pp.MaxFlavor != nil {
		if *pp.MaxFlavor == "" {
			p.Max = corral.Flavor{}
		} else if f, ok := capacity("max_flavor", *pp.MaxFlavor, p.Max.Arch); ok {
			p.Max = f
		}
	}
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setInt(&p.Priority, pp.Priority)
	setInt(&p.MaxInstances, pp.MaxInstances)
	setInt(&p.MinIdle, pp.MinIdle)
	setInt(&p.Concurrency, pp.Concurrency)
	if pp.Headroom != nil {
		c, pct, err := corral.ParseHeadroom(*pp.Headroom)
		if err != nil {
			bad("headroom", "%v", err)
		}
		p.HeadroomCount, p.HeadroomPercent = c, pct
	}
	for _, d := range []struct {
		key string
		v   *string
		dst *time.Duration
	}{{"boot_timeout", pp.BootTimeout, &p.BootTimeout}, {"max_job_runtime", pp.MaxJobRuntime, &p.MaxJobRuntime},
		{"idle_timeout", pp.IdleTimeout, &p.IdleTimeout}, {"max_lifetime", pp.MaxLifetime, &p.MaxLifetime}} {
		if d.v == nil {
			continue
		}
		v, err := time.ParseDuration(*d.v)
		if err != nil || v <= 0 {
			bad(d.key, `want a positive duration like "10m" or "2h", got %q`, *d.v)
			continue
		}
		*d.dst = v
	}
	if pp.PricePerMinute != nil {
		p.PricePerMinute = *pp.PricePerMinute
	}
	if len(probs) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(probs, "; "), corral.ErrBadInput)
	}
	return nil
}

// patchPool changes a live pool's settings through the catalog: the change
// is in the store when the answer comes, and every replica's scheduler uses
// it from its next pass. The config file stays the source of truth: a
// later SIGHUP, restart or `corral apply` of a file sets the file's values
// again (docs/api.md).
func (a *App) patchPool(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("pool")
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		httperr.Write(w, fmt.Errorf("read body: %v: %w", err, corral.ErrBadInput))
		return
	}
	if len(body) > 64<<10 {
		httperr.Write(w, fmt.Errorf("body over 64 KiB: %w", corral.ErrBadInput))
		return
	}
	var pp PoolPatch
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pp); err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "json: unknown field ") {
			msg += " (settable: " + poolPatchKeys + ")"
		}
		httperr.Write(w, fmt.Errorf("body: %s: %w", msg, corral.ErrBadInput))
		return
	}
	if dec.More() {
		httperr.Write(w, fmt.Errorf("body: one JSON object expected: %w", corral.ErrBadInput))
		return
	}
	// The provider is this replica's, and cannot change here; the pool's
	// tenant must be the caller's (another tenant's pool is not found).
	p, err := a.Catalog.UpdatePool(r.Context(), id, func(p *corral.Pool) error {
		if !auth.Visible(r.Context(), p.TenantID) {
			return fmt.Errorf("pool %q: %w", id, corral.ErrNotFound)
		}
		return pp.apply(p)
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
