package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/jackc/pgx/v5"
)

const tokenCols = "id, name, scope, tenant_id, hash, created_at, expires_at, revoked_at, last_used"

func scanToken(r pgx.Rows) (corral.Token, error) {
	var tk corral.Token
	return tk, r.Scan(&tk.ID, &tk.Name, (*string)(&tk.Scope), &tk.TenantID, &tk.Hash,
		ts{&tk.CreatedAt}, ts{&tk.ExpiresAt}, ts{&tk.RevokedAt}, ts{&tk.LastUsed})
}

func (t *tx) Tokens(ctx context.Context) ([]corral.Token, error) {
	out, err := queryAll(ctx, t, scanToken, "SELECT "+tokenCols+" FROM tokens ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

func (t *tx) TokenByHash(ctx context.Context, hash []byte) (corral.Token, error) {
	tk, err := queryOne(ctx, t, scanToken, "SELECT "+tokenCols+" FROM tokens WHERE hash = $1", hash)
	if err != nil {
		return tk, fmt.Errorf("token by hash: %w", err)
	}
	return tk, nil
}

// PutToken inserts with ON CONFLICT DO NOTHING: a duplicate id or hash is
// ErrConflict without aborting the transaction.
func (t *tx) PutToken(ctx context.Context, tk corral.Token) error {
	if tk.ID == "" || len(tk.Hash) == 0 {
		return fmt.Errorf("put token: empty id or hash: %w", corral.ErrBadInput)
	}
	tag, err := t.exec(ctx, "INSERT INTO tokens ("+tokenCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
		tk.ID, tk.Name, string(tk.Scope), tk.TenantID, tk.Hash,
		tv(tk.CreatedAt), tv(tk.ExpiresAt), tv(tk.RevokedAt), tv(tk.LastUsed))
	if err == nil && tag.RowsAffected() == 0 {
		err = corral.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("put token %s: %w", tk.ID, err)
	}
	return nil
}

func (t *tx) RevokeToken(ctx context.Context, id string, at time.Time) error {
	tag, err := t.exec(ctx, "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2", tv(at), id)
	if err == nil && tag.RowsAffected() == 0 {
		err = corral.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

func (t *tx) TouchToken(ctx context.Context, id string, at time.Time) error {
	tag, err := t.exec(ctx, "UPDATE tokens SET last_used = $1 WHERE id = $2", tv(at), id)
	if err == nil && tag.RowsAffected() == 0 {
		err = corral.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("touch token %s: %w", id, err)
	}
	return nil
}
