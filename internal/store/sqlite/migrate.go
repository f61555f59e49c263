package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/corral-ci/corral/internal/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrate applies the embedded migrations not yet recorded in
// schema_migrations, each in its own IMMEDIATE transaction, so that two
// processes opening the same file at once apply each migration once.
func migrate(ctx context.Context, c *sql.Conn, log *slog.Logger) error {
	ms, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if err := apply(ctx, c, m, log); err != nil {
			return fmt.Errorf("migrate %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, c *sql.Conn, m store.Migration, log *slog.Logger) (err error) {
	if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var one int
	err = c.QueryRowContext(ctx, "SELECT 1 FROM schema_migrations WHERE version = ?", m.Version).Scan(&one)
	switch {
	case err == nil: // applied before
		_, err = c.ExecContext(ctx, "COMMIT")
		return err
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if _, err = c.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err = c.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.Version, m.Name, time.Now().UnixMicro()); err != nil {
		return err
	}
	if _, err = c.ExecContext(ctx, "COMMIT"); err != nil {
		return err
	}
	log.Info("applied schema migration", "version", m.Version, "name", m.Name)
	return nil
}

// Migrations returns the schema migrations this build applies, in order
// (corral doctor compares them with schema_migrations).
func Migrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrationFS, "migrations")
}
