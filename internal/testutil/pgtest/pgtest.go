package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding an admin DSN to a running
// server; when set, no server is started.
const EnvDSN = "CORRAL_TEST_POSTGRES_DSN"

var shared struct {
	once   sync.Once
	admin  string
	server *Server // nil when EnvDSN is used
	dir    string
	err    error
}

func adminDSN() (string, error) {
	shared.once.Do(func() {
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			shared.admin = dsn
			return
		}
		dir, err := os.MkdirTemp("", "corral-pgtest-")
		if err != nil {
			shared.err = fmt.Errorf("pgtest: %w", err)
			return
		}
		srv, err := StartServer(dir)
		if err != nil {
			_ = os.RemoveAll(dir)
			shared.err = err
			return
		}
		shared.server, shared.dir, shared.admin = srv, dir, srv.AdminDSN()
	})
	return shared.admin, shared.err
}

// DSN returns a DSN to a fresh, empty database with a unique name, dropped
// when t ends. Without a server or binaries it skips t, except when the
// environment variable CI is "true": there it fails t, because CI must never
// skip the PostgreSQL suite.
func DSN(t testing.TB) string {
	t.Helper()
	admin, err := adminDSN()
	if errors.Is(err, ErrNoPostgres) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: PostgreSQL tests must not be skipped)", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return freshDatabase(t, admin)
}

// DSNOn is DSN on the server s (one a test started itself, say with
// StartDurableServer): a fresh database, dropped when t ends.
func DSNOn(t testing.TB, s *Server) string {
	t.Helper()
	return freshDatabase(t, s.AdminDSN())
}

func freshDatabase(t testing.TB, admin string) string {
	t.Helper()
	name := "corral_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Main runs the tests, then stops the server DSN started, if any. Use it as
// `func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		_ = os.RemoveAll(shared.dir)
	}
	return code
}

func adminExec(ctx context.Context, dsn, sql string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
