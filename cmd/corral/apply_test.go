package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// catalogState reads the store's catalog version and its pools' encoded
// max_instances, to see whether a command wrote anything.
func catalogState(t *testing.T, dir string) (int64, []corral.Pool) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var v int64
	var ps []corral.Pool
	err = st.View(ctx, func(tx corral.ReadTx) error {
		var err error
		if v, err = tx.CatalogVersion(ctx); err != nil {
			return err
		}
		ps, err = tx.Pools(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, ps
}

// apply twice: the second writes nothing; an edit of one key is one diff
// line; a broken line is reported with file:line and writes nothing;
// secrets never reach the output.
func TestRun_ApplyDiff(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, "data_dir: "+dir+"\n"+routeConfig)

	out, _, err := runSplit("diff", "-f", file)
	if err != nil || !strings.Contains(out, "+ pool onprem") || !strings.Contains(out, "+ target acme") {
		t.Fatalf("diff against an empty store: %v\n%s", err, out)
	}
	if v, _ := catalogState(t, dir); v != 0 {
		t.Fatalf("diff wrote: catalog version %d", v)
	}
	out, _, err = runSplit("apply", "-f", file)
	if err != nil || !strings.Contains(out, "applied: ") {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	v1, pools := catalogState(t, dir)
	if v1 == 0 || len(pools) != 2 {
		t.Fatalf("after apply: version %d, pools %+v", v1, pools)
	}
	out, _, err = runSplit("apply", "-f", file)
	if err != nil || strings.TrimSpace(out) != "no changes" {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	if v, _ := catalogState(t, dir); v != v1 {
		t.Fatalf("second apply moved the catalog version %d → %d", v1, v)
	}

	// One edit: max_instances of onprem 8 → 12.
	edited := strings.Replace(routeConfig, "max_instances: 8}", "max_instances: 12}", 1)
	if edited == routeConfig {
		t.Fatal("test config changed; the edit did not apply")
	}
	file2 := writeFile(t, "data_dir: "+dir+"\n"+edited)
	out, _, err = runSplit("diff", "-f", file2)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); len(got) != 1 || got[0] != "pool onprem: max_instances 8 → 12" {
		t.Fatalf("diff after one edit = %q, want exactly the one line", got)
	}
	for _, secret := range []string{"webhook_secret", ": w", ": k"} {
		if strings.Contains(out, secret) {
			t.Errorf("diff output holds %q", secret)
		}
	}
	if v, _ := catalogState(t, dir); v != v1 {
		t.Fatal("diff wrote")
	}
	if out, _, err = runSplit("apply", "-f", file2); err != nil {
		t.Fatalf("apply edit: %v\n%s", err, out)
	}
	v2, pools := catalogState(t, dir)
	if v2 != v1+1 {
		t.Fatalf("apply of one edit: version %d → %d, want one bump", v1, v2)
	}
	for _, p := range pools {
		if p.ID == "onprem" && p.MaxInstances != 12 {
			t.Fatalf("onprem max_instances = %d after apply", p.MaxInstances)
		}
	}

	// A removed pool and an added one.
	moved := strings.Replace(edited, "id: cloud,", "id: gpu,", 1)
	out, _, err = runSplit("diff", "-f", writeFile(t, "data_dir: "+dir+"\n"+moved))
	if err != nil || !strings.Contains(out, "+ pool gpu") || !strings.Contains(out, "- pool cloud") {
		t.Fatalf("diff add/remove: %v\n%s", err, out)
	}

	// A broken line: file:line, nothing written.
	broken := strings.Replace(edited, "max_instances: 12}", "max_instances: lots}", 1)
	bf := writeFile(t, "data_dir: "+dir+"\n"+broken)
	for _, cmd := range []string{"diff", "apply"} {
		out, errOut, err := runSplit(cmd, "-f", bf)
		if err == nil {
			t.Fatalf("%s of a broken file succeeded:\n%s", cmd, out)
		}
		if !regexp.MustCompile(regexp.QuoteMeta(bf) + `:5\b`).MatchString(err.Error()) {
			t.Errorf("%s: error %q does not name %s:5 (stderr %q)", cmd, err, bf, errOut)
		}
	}
	if v, pools := catalogState(t, dir); v != v2 || len(pools) != 2 {
		t.Fatalf("a broken apply wrote: version %d (want %d), pools %d", v, v2, len(pools))
	}
}
