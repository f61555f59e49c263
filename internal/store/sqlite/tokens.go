package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

const tokenCols = "id, name, scope, tenant_id, hash, created_at, expires_at, revoked_at, last_used"

func scanToken(sc scanner) (corral.Token, error) {
	var tk corral.Token
	return tk, sc.Scan(&tk.ID, &tk.Name, (*string)(&tk.Scope), &tk.TenantID, &tk.Hash,
		micros{&tk.CreatedAt}, micros{&tk.ExpiresAt}, micros{&tk.RevokedAt}, micros{&tk.LastUsed})
}

func (t *tx) Tokens(ctx context.Context) ([]corral.Token, error) {
	out, err := queryAll(ctx, t, scanToken, "SELECT "+tokenCols+" FROM tokens ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (corral.Token, error) {
	tk, err := queryOne(ctx, t, scanToken, "SELECT "+tokenCols+" FROM tokens WHERE hash = ?", hash)
	if err != nil {
		return tk, fmt.Errorf("token by hash: %w", err)
	}
	return tk, nil
}

func (t *tx) PutToken(ctx context.Context, tk corral.Token) error {
	if tk.ID == "" || len(tk.Hash) == 0 {
		return fmt.Errorf("put token: empty id or hash: %w", corral.ErrBadInput)
	}
	_, err := t.exec(ctx, "INSERT INTO tokens ("+tokenCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		tk.ID, tk.Name, string(tk.Scope), tk.TenantID, tk.Hash,
		tk.CreatedAt.UnixMicro(), tv(tk.ExpiresAt), tv(tk.RevokedAt), tv(tk.LastUsed))
	if isUnique(err) {
		err = corral.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("put token %s: %w", tk.ID, err)
	}
	return nil
}

func (t *tx) RevokeToken(ctx context.Context, id string, at time.Time) error {
	n, err := t.exec(ctx, "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", at.UnixMicro(), id)
	if err == nil && n == 0 {
		err = corral.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

func (t *tx) TouchToken(ctx context.Context, id string, at time.Time) error {
	n, err := t.exec(ctx, "UPDATE tokens SET last_used = ? WHERE id = ?", at.UnixMicro(), id)
	if err == nil && n == 0 {
		err = corral.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("touch token %s: %w", id, err)
	}
	return nil
}
