package doctor

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/config"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

func TestClock(t *testing.T) {
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	hdr := func(d time.Duration) http.Header {
		return http.Header{"Date": {now.Add(d).Format(http.TimeFormat)}}
	}
	for _, c := range []struct {
		name string
		h    http.Header
		want Status
		says string
	}{
		{"in step", hdr(0), OK, "within 1s"},
		{"29 s ahead", hdr(29 * time.Second), OK, "within 29s"},
		{"31 s ahead", hdr(31 * time.Second), Fail, "31s ahead of"},
		{"2 min behind", hdr(-2 * time.Minute), Fail, "2m0s behind"},
		{"no Date", http.Header{}, Warn, "no Date header"},
		{"bad Date", http.Header{"Date": {"yesterday"}}, Warn, "does not parse"},
	} {
		r := Clock("clock x", c.h, now, now.Add(200*time.Millisecond))
		if r.Status != c.want || !strings.Contains(r.Message, c.says) {
			t.Errorf("%s: %+v, want %s saying %q", c.name, r, c.want, c.says)
		}
		if r.Status == Fail && r.Fix == "" {
			t.Errorf("%s: a failure must say how to fix it", c.name)
		}
	}
}

func TestConfig_BadLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "corral.yaml")
	body := "targets:\n  - {id: a, kind: github, scope: org, path: o, webhook_secret: w, token: k}\npools:\n  - {id: p, labels: [x], provider: process, flavor: 2cpu4gb20gb, max_instances: nope}\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r, cfg, _ := Config(p, func(string) string { return "" })
	if r.Status != Fail || cfg != nil || !strings.Contains(r.Message, "corral.yaml:4") {
		t.Fatalf("%+v, want a failure naming corral.yaml:4", r)
	}
}

// TestStore opens a real SQLite store (migrated by corral's own Open),
// then forgets one migration: doctor must notice, and never migrate.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir, Store: corral.Secret("sqlite")}
	ctx := context.Background()
	if r := Store(ctx, cfg); r.Status != Warn || !strings.Contains(r.Message, "does not exist yet") {
		t.Fatalf("no database: %+v", r)
	}
	path := filepath.Join(dir, "corral.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if r := Store(ctx, cfg); r.Status != OK || !strings.Contains(r.Message, "migrations applied") {
		t.Fatalf("migrated: %+v", r)
	}
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	last := ms[len(ms)-1]
	if _, err := db.Exec("DELETE FROM schema_migrations WHERE version = ?", last.Version); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // twice: doctor must not have applied it
		if r := Store(ctx, cfg); r.Status != Warn || !strings.Contains(r.Message, last.Name) {
			t.Fatalf("one migration missing: %+v", r)
		}
	}
	if r := Store(ctx, &config.Config{DataDir: dir, Store: corral.Secret("mysql://u:pw@h/db")}); r.Status != Fail || strings.Contains(r.Message, "pw") {
		t.Fatalf("unknown store: %+v", r)
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	rs := []Result{ok("config", "fine"), warn("store", "do this", "hmm"), fail("clock x", "sync", "off")}
	if err := Print(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ok ") || !strings.HasPrefix(lines[1], "WARN") ||
		!strings.HasPrefix(lines[2], "FAIL") || !strings.HasSuffix(lines[2], "→ sync") {
		t.Fatalf("output:\n%s", b.String())
	}
	if !Failed(rs) || Failed(rs[:2]) {
		t.Fatal("Failed")
	}
}

// TestStore_Postgres: a fresh PostgreSQL database has no migrations (a
// warning, and doctor creates nothing); after corral's Open all are
// applied; a stopped server's DSN fails without showing its password.
func TestStore_Postgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	cfg := &config.Config{DataDir: t.TempDir(), Store: corral.Secret(dsn)}
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := Store(ctx, cfg); r.Status != Warn || !strings.Contains(r.Message, fmt.Sprintf("%d of %d migrations not applied", len(ms), len(ms))) {
			t.Fatalf("fresh database: %+v", r)
		}
	}
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if r := Store(ctx, cfg); r.Status != OK || !strings.Contains(r.Message, "PostgreSQL answers") {
		t.Fatalf("migrated: %+v", r)
	}
	down := &config.Config{Store: corral.Secret("postgres://corral:s3cretPassw0rd@127.0.0.1:1/corral?connect_timeout=2")}
	if r := Store(ctx, down); r.Status != Fail || strings.Contains(r.Message, "s3cretPassw0rd") {
		t.Fatalf("unreachable: %+v", r)
	}
}
