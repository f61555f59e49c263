package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

const grantCols = "hash, instance_id, sealed, fetch_by, call_by, used"

func scanGrant(sc scanner) (corral.InstanceGrant, error) {
	var g corral.InstanceGrant
	var used string
	err := sc.Scan(&g.Hash, &g.InstanceID, &g.Sealed, micros{&g.FetchBy}, micros{&g.CallBy}, &used)
	g.Used = splitUsed(used)
	return g, err
}

func splitUsed(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, "\n") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (t *tx) InstanceGrant(ctx context.Context, hash []byte) (corral.InstanceGrant, error) {
	g, err := queryOne(ctx, t, scanGrant, "SELECT "+grantCols+" FROM instance_grants WHERE hash = ?", hash)
	if err != nil {
		return g, fmt.Errorf("instance grant: %w", err)
	}
	return g, nil
}

func (t *tx) PutInstanceGrant(ctx context.Context, g corral.InstanceGrant) error {
	if g.InstanceID == "" || len(g.Hash) == 0 {
		return fmt.Errorf("put instance grant: empty instance id or hash: %w", corral.ErrBadInput)
	}
	if _, err := t.exec(ctx, "DELETE FROM instance_grants WHERE instance_id = ?", g.InstanceID); err != nil {
		return fmt.Errorf("put instance grant %s: %w", g.InstanceID, err)
	}
	used := "\n" + strings.Join(g.Used, "\n")
	if len(g.Used) > 0 {
		used += "\n"
	}
	_, err := t.exec(ctx, "INSERT INTO instance_grants ("+grantCols+") VALUES (?, ?, ?, ?, ?, ?)",
		g.Hash, g.InstanceID, g.Sealed, g.FetchBy.UnixMicro(), g.CallBy.UnixMicro(), used)
	if isUnique(err) {
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
	n, err := t.exec(ctx, "UPDATE instance_grants SET used = used || ? WHERE hash = ? AND instr(used, ?) = 0",
		piece+"\n", hash, "\n"+piece+"\n")
	if err == nil && n == 0 {
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
	if _, err := t.exec(ctx, "DELETE FROM instance_grants WHERE instance_id = ?", instanceID); err != nil {
		return fmt.Errorf("delete instance grants %s: %w", instanceID, err)
	}
	return nil
}

func (t *tx) SweepInstanceGrants(ctx context.Context, before time.Time) (int, error) {
	n, err := t.exec(ctx, "DELETE FROM instance_grants WHERE call_by < ?", before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sweep instance grants: %w", err)
	}
	return int(n), nil
}
