package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// A scheduler pass counts the live instances by pool and state at every
// pass: that count reads the partial index of live instances alone, in
// its order, whatever the fleet and however many deleted rows pile up.
func TestInstanceCounts_ReadLivePoolIndexOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.db")
	openTest(t, path) // migrates
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var def string
	if err := db.QueryRow("SELECT sql FROM sqlite_master WHERE name = 'instances_pool'").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "WHERE state <> 'deleted'") {
		t.Fatalf("instances_pool = %q, want a partial index of live rows", def)
	}
	rows, err := db.Query("EXPLAIN QUERY PLAN " + instanceCountsQuery)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	got := strings.Join(plan, "; ")
	if !strings.Contains(got, "COVERING INDEX instances_pool") || strings.Contains(got, "TEMP B-TREE") {
		t.Fatalf("plan = %q, want the covering partial index instances_pool and no sort", got)
	}
}
