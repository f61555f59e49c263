package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/corral-ci/corral/internal/corral"
)

const grantCols = "hash, instance_id, sealed, fetch_by, call_by, used"

func scanGrant(r pgx.Rows) (corral.InstanceGrant, error) {
	var g corral.InstanceGrant
	var used string
	err := r.Scan(&g.Hash, &g.InstanceID, &g.Sealed, ts{&g.FetchBy}, ts{&g.CallBy}, &used)
	for p := range strings.SplitSeq(used, "\n") {
		if p != "" {
			g.Used = append(g.Used, p)
		}
	}
	return g, err
}

func (t *tx) InstanceGrant(ctx context.Context, hash []byte) (corral.InstanceGrant, error) {
	g, err := queryOne(ctx, t, scanGrant, "SELECT "+grantCols+" FROM instance_grants WHERE hash = $1", hash)
	if err != nil {
		return g, fmt.Errorf("instance grant: %w", err)
	}
	return g, nil
}

// PutInstanceGrant inserts with ON CONFLICT DO NOTHING: a duplicate hash
// is ErrConflict without aborting the transaction.
func (t *tx) PutInstanceGrant(ctx context.Context, g corral.InstanceGrant) error {
	if g.InstanceID == "" || len(g.Hash) == 0 {
		return fmt.Errorf("put instance grant: empty instance id or hash: %w", corral.ErrBadInput)
	}
	if _, err := t.exec(ctx, "DELETE FROM instance_grants WHERE instance_id = $1", g.InstanceID); err != nil {
		return fmt.Errorf("put instance grant %s: %w", g.InstanceID, err)
	}
	used := "\n" + strings.Join(g.Used, "\n")
	if len(g.Used) > 0 {
		used += "\n"
	}
	tag, err := t.exec(ctx, "INSERT INTO instance_grants ("+grantCols+") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
		g.Hash, g.InstanceID, g.Sealed, tv(g.FetchBy), tv(g.CallBy), used)
	if err == nil && tag.RowsAffected() == 0 {
		err = corral.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("put instance grant %s: %w", g.InstanceID, err)
	}
	return nil
}

func (t *tx) UseInstanceGrant(ctx context.Context, hash []byte, piece string) error {
	if piece == "" || strings.Contains(piece, "\n") {
		return fmt.Errorf("use instance grant: piece %q: %w", piece, corral.ErrBadInput)
	}
	tag, err := t.exec(ctx, "UPDATE instance_grants SET used = used || $1 WHERE hash = $2 AND strpos(used, $3) = 0",
		piece+"\n", hash, "\n"+piece+"\n")
	if err == nil && tag.RowsAffected() == 0 {
		if _, gerr := t.InstanceGrant(ctx, hash); gerr != nil {
			err = gerr
		} else {
			err = corral.ErrConflict
		}
	}
	if err != nil {
		return fmt.Errorf("use instance grant (%s): %w", piece, err)
	}
	return nil
}

func (t *tx) DeleteInstanceGrants(ctx context.Context, instanceID string) error {
	if _, err := t.exec(ctx, "DELETE FROM instance_grants WHERE instance_id = $1", instanceID); err != nil {
		return fmt.Errorf("delete instance grants %s: %w", instanceID, err)
	}
	return nil
}

func (t *tx) SweepInstanceGrants(ctx context.Context, before time.Time) (int, error) {
	tag, err := t.exec(ctx, "DELETE FROM instance_grants WHERE call_by < $1", tv(before))
	if err != nil {
		return 0, fmt.Errorf("sweep instance grants: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
