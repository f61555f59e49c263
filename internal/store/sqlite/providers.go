package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/corral-ci/corral/internal/corral"
)

func (t *tx) ProviderDefs(ctx context.Context) ([]corral.ProviderDef, error) {
	out, err := queryAll(ctx, t, func(sc scanner) (corral.ProviderDef, error) {
		var d corral.ProviderDef
		var settings string
		err := sc.Scan(&d.Name, &d.Type, &settings, micros{&d.UpdatedAt})
		d.Settings = json.RawMessage(settings)
		return d, err
	}, "SELECT name, type, settings, updated_at FROM providers ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	return out, nil
}

func (t *tx) PutProviderDef(ctx context.Context, d corral.ProviderDef) error {
	if d.Name == "" || d.Type == "" {
		return fmt.Errorf("put provider: empty name or type: %w", corral.ErrBadInput)
	}
	settings := string(d.Settings)
	if settings == "" {
		settings = "{}"
	}
	_, err := t.exec(ctx, `INSERT INTO providers (name, type, settings, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET type = excluded.type, settings = excluded.settings, updated_at = excluded.updated_at`,
		d.Name, d.Type, settings, tv(d.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put provider %s: %w", d.Name, err)
	}
	return nil
}

func (t *tx) DeleteProviderDef(ctx context.Context, name string) error {
	if _, err := t.exec(ctx, "DELETE FROM providers WHERE name = ?", name); err != nil {
		return fmt.Errorf("delete provider %s: %w", name, err)
	}
	return nil
}
