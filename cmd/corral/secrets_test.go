package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/secretbox"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// TestRun_SecretsRotate: `corral secrets rotate` re-seals a target's
// sealed credential in the config's store; the new key opens it, the old
// one no longer does; a wrong old key fails and changes nothing.
func TestRun_SecretsRotate(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, "data_dir: "+dir+"\n"+routeConfig)
	oldKey, newKey := bytes.Repeat([]byte{4}, 32), bytes.Repeat([]byte{5}, 32)
	oldFile, newFile, wrongFile := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key"), filepath.Join(dir, "wrong.key")
	for f, k := range map[string][]byte{oldFile: oldKey, newFile: newKey, wrongFile: bytes.Repeat([]byte{6}, 32)} {
		if err := os.WriteFile(f, k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Create the store, then plant a sealed token as an API write would.
	if _, _, err := runSplit("token", "list", "-config", cfg); err != nil {
		t.Fatal(err)
	}
	oldBox, _ := secretbox.New(oldKey, "")
	newBox, _ := secretbox.New(newKey, "")
	name := catalog.SealedName("api-made", "token")
	sealed, _ := oldBox.Seal(name, "ghp_cli_rotate_token")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, func(tx corral.Tx) error {
		return tx.PutTarget(ctx, corral.Target{ID: "api-made", TenantID: "default", Kind: corral.KindGitHub, Sealed: map[string]string{"token": sealed}})
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, _, err := runSplit("secrets", "rotate", "-config", cfg, "-old-key", wrongFile, "-new-key", newFile); err == nil {
		t.Fatal("rotation with a wrong old key succeeded")
	}
	out, _, err := runSplit("secrets", "rotate", "-config", cfg, "-old-key", oldFile, "-new-key", newFile)
	if err != nil || !strings.Contains(out, "re-sealed 1 secrets") {
		t.Fatalf("rotate: %q %v", out, err)
	}
	st, err = sqlite.Open(ctx, filepath.Join(dir, "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ts []corral.Target
	_ = st.View(ctx, func(tx corral.ReadTx) error { ts, err = tx.Targets(ctx); return err })
	for _, x := range ts {
		if x.ID != "api-made" {
			continue
		}
		if got, err := newBox.Unseal(name, x.Sealed["token"]); err != nil || got.Reveal() != "ghp_cli_rotate_token" {
			t.Fatalf("the new key does not open it: %v", err)
		}
		if _, err := oldBox.Unseal(name, x.Sealed["token"]); err == nil {
			t.Fatal("the old key still opens it")
		}
		return
	}
	t.Fatal("target api-made is gone")
}
