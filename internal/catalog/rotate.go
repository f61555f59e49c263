package catalog

import (
	"context"
	"fmt"
	"maps"

	"github.com/corral-ci/corral/internal/corral"
)

// Sealer seals and opens values (secretbox.Box).
type Sealer interface {
	Unsealer
	Seal(name string, s corral.Secret) (string, error)
}

// Rotate re-seals every sealed secret of the store (the credentials of
// targets written through the API) from the old key to the new one, in one
// transaction: a secret that does not open with the old key fails the
// whole rotation and nothing changes. It bumps the catalog version, so
// every replica reloads; each must have the new key by then. n counts the
// secrets re-sealed.
func Rotate(ctx context.Context, st corral.Store, old, new Sealer) (n int, err error) {
	err = st.Update(ctx, func(tx corral.Tx) error {
		n = 0
		targets, err := tx.Targets(ctx)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if len(t.Sealed) == 0 {
				continue
			}
			sealed := maps.Clone(t.Sealed)
			for field, v := range t.Sealed {
				name := SealedName(t.ID, field)
				plain, err := old.Unseal(name, v)
				if err != nil {
					return fmt.Errorf("target %s %s: %w", t.ID, field, err)
				}
				if sealed[field], err = new.Seal(name, plain); err != nil {
					return err
				}
				n++
			}
			t.Sealed = sealed
			if err := tx.PutTarget(ctx, t); err != nil {
				return err
			}
		}
		if n > 0 {
			_, err = tx.BumpCatalogVersion(ctx)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("rotate secrets: %w", err)
	}
	return n, nil
}
