package app

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// Operations (tenant-admin for the tenant's own objects, admin for all).
// Each writes the store, so that every replica obeys it: a pool's state is
// read by the scheduler at each reservation; a stopped instance is
// draining, and the leader deletes it; a retried job is routed.

// poolOp sets the state of the pool named in the path.
func (a *App) poolOp(st corral.PoolState) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("pool")
		var pool *corral.Pool
		for _, p := range a.Catalog.Current().Pools {
			if p.ID == id && auth.Visible(r.Context(), p.TenantID) {
				pool = &p
				break
			}
		}
		if pool == nil {
			httperr.Write(w, fmt.Errorf("pool %q: %w", id, corral.ErrNotFound))
			return
		}
		now := a.opt.Clock.Now()
		err := a.opt.Store.Update(r.Context(), func(tx corral.Tx) error {
			// Under the reservation lock: no reservation of this pool
			// commits after the new state without having read it.
			if err := tx.LockLimits(r.Context(), pool.TenantID, pool.ID); err != nil {
				return err
			}
			return tx.SetPoolState(r.Context(), pool.ID, st, now)
		})
		if err != nil {
			httperr.Write(w, err)
			return
		}
		reqid.Logger(r, a.log).Info("pool state set through the API", "pool", pool.ID, "state", st, "token", tokenID(r))
		a.Scheduler.Wake()
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"pool": pool.ID, "state": st})
	}
}

func (a *App) stopInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	force := false
	if s := r.URL.Query().Get("force"); s != "" {
		var err error
		if force, err = strconv.ParseBool(s); err != nil {
			httperr.Write(w, fmt.Errorf("force=%q is not true or false: %w", s, corral.ErrBadInput))
			return
		}
	}
	var in corral.Instance
	err := a.opt.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		in, err = tx.Instance(r.Context(), id)
		if err == nil && !auth.Visible(r.Context(), in.TenantID) {
			err = corral.ErrNotFound
		}
		return err
	})
	switch {
	case errors.Is(err, corral.ErrNotFound):
		err = fmt.Errorf("instance %q: %w", id, corral.ErrNotFound)
	case err != nil:
	case in.State == corral.InstDraining || in.State == corral.InstDeleted:
		err = fmt.Errorf("instance %s is already %s: %w", id, in.State, corral.ErrConflict)
	case in.State == corral.InstBusy && !force:
		err = fmt.Errorf("instance %s runs job %d: its runner is busy (force=true stops it anyway, and the job fails): %w", id, in.JobID, corral.ErrBusy)
	default:
		err = a.stop(r, in, force)
	}
	if err != nil {
		httperr.Write(w, err)
		return
	}
	reqid.Logger(r, a.log).Info("instance stopped through the API", "instance", in.ID, "state", in.State, "forced", force, "token", tokenID(r))
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"instance": in.ID, "state": corral.InstDraining, "was": in.State, "forced": force})
}

func (a *App) retryJob(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		httperr.Write(w, fmt.Errorf("job id %q: %w", r.PathValue("id"), corral.ErrBadInput))
		return
	}
	j, err := a.Ledger.RetryJob(r.Context(), id, auth.TenantOf(r.Context()))
	if errors.Is(err, corral.ErrNotFound) {
		err = fmt.Errorf("job %d: %w", id, corral.ErrNotFound)
	}
	if err != nil {
		httperr.Write(w, err)
		return
	}
	httperr.WriteJSON(w, http.StatusOK, viewJob(j))
}

// tokenID names the caller's token in the log (never its secret).
func tokenID(r *http.Request) string {
	tk, _ := auth.FromContext(r.Context())
	return tk.ID
}

// stop sends the instance to be deleted: unless forced, its runner's
// registration goes first, which the forge refuses while the runner is
// busy (a busy runner is never killed unless forced). The write goes to
// the store, not through the leader's fence: the leader's scheduler
// deletes every draining instance.
func (a *App) stop(r *http.Request, in corral.Instance, force bool) error {
	ctx := r.Context()
	if !force && in.State != corral.InstPending {
		var target *corral.Target
		for _, t := range a.Catalog.Current().Targets {
			if t.ID == in.TargetID {
				target = &t
				break
			}
		}
		if target == nil {
			return fmt.Errorf("instance %s: target %q is no longer configured (force=true stops it anyway): %w", in.ID, in.TargetID, corral.ErrConflict)
		}
		f, err := a.opt.Forges.Forge(*target)
		if err != nil {
			return err
		}
		if err := f.RemoveRunner(ctx, corral.Runner{ID: in.RunnerID, Name: in.Name}); err != nil && !errors.Is(err, corral.ErrNotFound) {
			if errors.Is(err, corral.ErrBusy) {
				return fmt.Errorf("instance %s: the forge says its runner %s is busy: %w", in.ID, in.Name, corral.ErrBusy)
			}
			return fmt.Errorf("instance %s: remove runner %s: %w", in.ID, in.Name, err)
		}
	}
	now := a.opt.Clock.Now()
	err := a.opt.Store.Update(ctx, func(tx corral.Tx) error {
		cur, err := tx.Instance(ctx, in.ID)
		if err != nil {
			return err
		}
		switch {
		case cur.State == corral.InstDraining || cur.State == corral.InstDeleted:
			return fmt.Errorf("instance %s is already %s: %w", in.ID, cur.State, corral.ErrConflict)
		case cur.State == corral.InstBusy && !force:
			return fmt.Errorf("instance %s became busy: %w", in.ID, corral.ErrBusy)
		}
		if err := cur.Transition(corral.InstDraining); err != nil {
			return err
		}
		cur.Reason, cur.DrainAt, cur.UpdatedAt = "stopped through the API", now, now
		return tx.PutInstance(ctx, &cur)
	})
	if err == nil {
		a.Scheduler.Wake()
	}
	return err
}

// targetOp pauses or resumes the target named in the path: a paused
// target's jobs wait (none is lost or refused), its free runners take no
// new one, and no new runner is made for it, on every replica.
func (a *App) targetOp(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("target")
		t, ok := a.Catalog.Current().Target(id)
		if !ok || !auth.Visible(r.Context(), t.TenantID) {
			httperr.Write(w, fmt.Errorf("target %q: %w", id, corral.ErrNotFound))
			return
		}
		now := a.opt.Clock.Now()
		err := a.opt.Store.Update(r.Context(), func(tx corral.Tx) error {
			// Under the global and tenant reservation lock: no reservation
			// for this target commits after the pause without having read it.
			if err := tx.LockLimits(r.Context(), t.TenantID, ""); err != nil {
				return err
			}
			return tx.SetTargetPaused(r.Context(), t.ID, paused, now)
		})
		if err != nil {
			httperr.Write(w, err)
			return
		}
		a.log.Info("target state set through the API", "target", t.ID, "paused", paused, "token", tokenID(r))
		a.Scheduler.Wake()
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"target": t.ID, "paused": paused})
	}
}
