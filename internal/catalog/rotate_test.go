package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/secretbox"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

// TestRotate: after rotation the new key opens every sealed secret and the
// old key opens none; the database file never holds a plaintext; a
// rotation given the wrong old key changes nothing.
func TestRotate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, dir+"/corral.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	oldBox, _ := secretbox.New(bytes.Repeat([]byte{1}, 32), dir)
	newBox, _ := secretbox.New(bytes.Repeat([]byte{2}, 32), dir)
	wrong, _ := secretbox.New(bytes.Repeat([]byte{3}, 32), dir)
	plain := map[string]string{"webhook_secret": "rotate-webhook-secret-1", "token": "ghp_rotate_token_22"}
	sealed := map[string]string{}
	for f, v := range plain {
		sealed[f], _ = oldBox.Seal(catalog.SealedName("acme", f), corral.Secret(v))
	}
	if err := st.Update(ctx, func(tx corral.Tx) error {
		if err := tx.PutTenant(ctx, corral.Tenant{ID: "default"}); err != nil {
			return err
		}
		if err := tx.PutTarget(ctx, corral.Target{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, Sealed: sealed}); err != nil {
			return err
		}
		return tx.PutTarget(ctx, corral.Target{ID: "plain", TenantID: "default", Kind: corral.KindGitHub})
	}); err != nil {
		t.Fatal(err)
	}
	stored := func() map[string]string {
		var ts []corral.Target
		_ = st.View(ctx, func(tx corral.ReadTx) error { ts, err = tx.Targets(ctx); return err })
		for _, x := range ts {
			if x.ID == "acme" {
				return x.Sealed
			}
		}
		t.Fatal("acme gone")
		return nil
	}
	if _, err := catalog.Rotate(ctx, st, wrong, newBox); err == nil {
		t.Fatal("rotation with the wrong old key succeeded")
	}
	for f, v := range stored() {
		if got, err := oldBox.Unseal(catalog.SealedName("acme", f), v); err != nil || got.Reveal() != plain[f] {
			t.Fatalf("a failed rotation changed %s: %v", f, err)
		}
	}
	n, err := catalog.Rotate(ctx, st, oldBox, newBox)
	if err != nil || n != 2 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	for f, v := range stored() {
		if got, err := newBox.Unseal(catalog.SealedName("acme", f), v); err != nil || got.Reveal() != plain[f] {
			t.Errorf("the new key does not open %s: %v", f, err)
		}
		if _, err := oldBox.Unseal(catalog.SealedName("acme", f), v); err == nil {
			t.Errorf("the old key still opens %s", f)
		}
	}
	// A catalog with the new key opens them.
	c := catalog.New(catalog.Config{Store: st, Box: newBox})
	if err := st.Update(ctx, func(tx corral.Tx) error { _, err := tx.BumpCatalogVersion(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if tg, _ := c.Current().Target("acme"); tg.Token.Reveal() != plain["token"] || tg.WebhookSecret.Reveal() != plain["webhook_secret"] {
		t.Error("a catalog with the new key does not open the credentials")
	}
	st.Close()
	files, _ := os.ReadDir(dir)
	for _, fe := range files {
		b, _ := os.ReadFile(dir + "/" + fe.Name())
		for _, v := range plain {
			if strings.Contains(string(b), v) {
				t.Errorf("%s holds a plaintext secret", fe.Name())
			}
		}
	}
}

// TestApply_KeepsAPITargets: applying a config file that does not list a
// target added through the API keeps it, and diff shows no change for
// it; a target of the file that the file drops is removed.
func TestApply_KeepsAPITargets(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/corral.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := catalog.New(catalog.Config{Store: st})
	file := catalog.Desired{Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "filed", TenantID: "default", Kind: corral.KindGitHub}, {ID: "dropped", TenantID: "default", Kind: corral.KindGitHub}}}
	if _, err := c.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutTarget(ctx, "api", func(corral.Target, bool) (corral.Target, error) {
		return corral.Target{ID: "api", TenantID: "default", Kind: corral.KindGitHub, FromAPI: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	file.Targets = file.Targets[:1]
	if lines, err := catalog.Diff(ctx, st, file); err != nil || len(lines) != 1 || !strings.Contains(lines[0], "dropped") {
		t.Fatalf("diff: %q %v", lines, err)
	}
	if _, err := c.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tg := range c.Current().Targets {
		ids = append(ids, tg.ID)
	}
	if got := strings.Join(ids, ","); got != "api,filed" && got != "filed,api" {
		t.Fatalf("targets after apply: %s", got)
	}
}

// TestApply_KeepsAPITenants: a tenant added through the API survives a
// config file that does not list it (SIGHUP, restart, corral apply); a file
// that lists it takes it over.
func TestApply_KeepsAPITenants(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/corral.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := catalog.New(catalog.Config{Store: st})
	file := catalog.Desired{Tenants: []corral.Tenant{{ID: "default"}, {ID: "dropped"}}}
	if _, err := c.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutTenant(ctx, "api", func(corral.Tenant, bool) (corral.Tenant, error) {
		return corral.Tenant{ID: "api", MaxInstances: 3, FromAPI: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	file.Tenants = file.Tenants[:1]
	if lines, err := catalog.Diff(ctx, st, file); err != nil || len(lines) != 1 || !strings.Contains(lines[0], "dropped") {
		t.Fatalf("diff: %q %v", lines, err)
	}
	if _, err := c.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tn := range c.Current().Tenants {
		ids = append(ids, tn.ID)
	}
	if got := strings.Join(ids, ","); got != "api,default" {
		t.Fatalf("tenants after apply: %s", got)
	}
	if tn, _ := c.Current().Tenant("api"); tn.MaxInstances != 3 || !tn.FromAPI {
		t.Fatalf("api tenant: %+v", tn)
	}
	// A file that lists it takes it over: a later file without it drops it.
	file.Tenants = append(file.Tenants, corral.Tenant{ID: "api", MaxInstances: 5})
	if _, err := c.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	if tn, _ := c.Current().Tenant("api"); tn.MaxInstances != 5 || tn.FromAPI {
		t.Fatalf("api tenant taken over by the file: %+v", tn)
	}
	file.Tenants = file.Tenants[:1]
	if _, err := c.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Current().Tenant("api"); ok {
		t.Fatal("a file's tenant survived a file without it")
	}
	// DeleteTenant of an unknown tenant is not found.
	if err := c.DeleteTenant(ctx, "nope"); !errors.Is(err, corral.ErrNotFound) {
		t.Fatalf("delete of an unknown tenant: %v", err)
	}
}
