package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// OpenRetired records the configured provider instances in the store and
// opens the retired ones: instances recorded by an earlier start that are
// gone from the config but still have live instances in the store. A
// retired provider makes nothing new (no pool names it); it deletes its
// instances once their jobs finish, and is forgotten (ForgetRetired) once
// none is left. A retired provider whose stored definition cannot be
// opened is reported: logged, and its live instances carry the error as
// their LastError, never leaked silently.
func OpenRetired(ctx context.Context, st corral.Store, configured []corral.ProviderDef, env Env, now time.Time) (map[string]corral.Provider, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	err := st.Update(ctx, func(tx corral.Tx) error {
		for _, d := range configured {
			names[d.Name] = true
			d.UpdatedAt = now
			if err := tx.PutProviderDef(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record providers: %w", err)
	}
	if err := ForgetRetired(ctx, st, names, log); err != nil {
		return nil, err
	}
	defs, live, err := retiredDefs(ctx, st, names)
	if err != nil {
		return nil, err
	}
	out := map[string]corral.Provider{}
	for _, d := range defs {
		ins := live[d.Name]
		p, err := Open(ctx, d, env)
		if err != nil {
			log.Error("retired provider cannot be opened: its instances are left running", "provider", d.Name,
				"type", d.Type, "instances", len(ins), "err", err)
			report(ctx, st, ins, fmt.Sprintf("provider %s is gone from the config and its stored definition cannot be opened: %v", d.Name, err), log)
			continue
		}
		log.Warn("provider gone from the config is retired: it makes nothing new and deletes its instances once their jobs finish",
			"provider", d.Name, "type", d.Type, "instances", len(ins))
		out[d.Name] = p
	}
	return out, nil
}

// ForgetRetired deletes the stored definitions of provider instances that
// are not configured and have no live instance left, and logs each.
func ForgetRetired(ctx context.Context, st corral.Store, configured map[string]bool, log *slog.Logger) error {
	defs, live, err := retiredDefs(ctx, st, configured)
	if err != nil {
		return err
	}
	for _, d := range defs {
		if len(live[d.Name]) > 0 {
			continue
		}
		err := st.Update(ctx, func(tx corral.Tx) error {
			// Checked again in the transaction that forgets it.
			ins, err := tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
			if err != nil {
				return err
			}
			for _, in := range ins {
				if in.Provider == d.Name {
					return errStillUsed
				}
			}
			return tx.DeleteProviderDef(ctx, d.Name)
		})
		switch {
		case errors.Is(err, errStillUsed):
		case err != nil:
			return fmt.Errorf("forget retired provider %s: %w", d.Name, err)
		default:
			log.Info("retired provider forgotten: none of its instances is left", "provider", d.Name, "type", d.Type)
		}
	}
	return nil
}

var errStillUsed = errors.New("provider still has live instances")

// retiredDefs returns the stored definitions that are not configured, and
// the live instances by provider name.
func retiredDefs(ctx context.Context, st corral.Store, configured map[string]bool) ([]corral.ProviderDef, map[string][]corral.Instance, error) {
	var defs []corral.ProviderDef
	live := map[string][]corral.Instance{}
	err := st.View(ctx, func(tx corral.ReadTx) error {
		all, err := tx.ProviderDefs(ctx)
		if err != nil {
			return err
		}
		for _, d := range all {
			if !configured[d.Name] {
				defs = append(defs, d)
			}
		}
		if len(defs) == 0 {
			return nil
		}
		ins, err := tx.Instances(ctx, corral.InstanceFilter{States: corral.LiveInstanceStates})
		for _, in := range ins {
			live[in.Provider] = append(live[in.Provider], in)
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("retired providers: %w", err)
	}
	return defs, live, nil
}

// report records msg as the LastError of each instance.
func report(ctx context.Context, st corral.Store, ins []corral.Instance, msg string, log *slog.Logger) {
	for _, in := range ins {
		err := st.Update(ctx, func(tx corral.Tx) error {
			cur, err := tx.Instance(ctx, in.ID)
			if err != nil || !cur.State.Live() {
				return err
			}
			cur.LastError = msg
			return tx.PutInstance(ctx, &cur)
		})
		if err != nil {
			log.Warn("record instance error", "instance", in.ID, "err", err)
		}
		log.Error("instance of an unopenable retired provider", "instance", in.ID, "provider", in.Provider, "state", in.State)
	}
}
