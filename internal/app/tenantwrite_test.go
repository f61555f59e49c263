package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/catalog"
	"github.com/corral-ci/corral/internal/corral"
)

func TestApp_TenantWrites(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		who, method, url, body, key string
		code                        int
	}{
		{"admin", "POST", "/api/v1/tenants", `{"id":"Bad Id"}`, "id", 400},
		{"admin", "POST", "/api/v1/tenants", `{"max_instances":2}`, "id", 400},
		{"admin", "POST", "/api/v1/tenants", `{"id":"neg","max_instances":-1}`, "max_instances", 400},
		{"admin", "POST", "/api/v1/tenants", `{"id":"str","max_instances":"many"}`, "max_instances", 400},
		{"admin", "POST", "/api/v1/tenants", `{"id":"col","colour":"red"}`, "colour", 400},
		{"admin", "POST", "/api/v1/tenants", `{"id":"other"}`, "exists", 409},
		{"admin", "PATCH", "/api/v1/tenants/default", `{"max_instances":-3}`, "max_instances", 400},
		{"admin", "PATCH", "/api/v1/tenants/default", `{"id":"renamed"}`, "id", 400},
		{"admin", "PATCH", "/api/v1/tenants/nope", `{"max_instances":1}`, "nope", 404},
		{"admin", "DELETE", "/api/v1/tenants/nope", ``, "nope", 404},
		// Owns target acme and pool linux: refused.
		{"admin", "DELETE", "/api/v1/tenants/default", ``, "acme", 409},
		// A tenant-admin creates no tenant and does not raise its own cap.
		{"tenant-admin", "POST", "/api/v1/tenants", `{"id":"mine","max_instances":100}`, "", 403},
		{"tenant-admin", "PATCH", "/api/v1/tenants/default", `{"max_instances":100}`, "", 403},
		{"tenant-admin", "DELETE", "/api/v1/tenants/other", ``, "", 403},
		{"tenant-read", "POST", "/api/v1/tenants", `{"id":"mine"}`, "", 403},
	} {
		code, out := f.write(t, tc.method, tc.url, tc.who, tc.body)
		if code != tc.code || !strings.Contains(out, tc.key) {
			t.Errorf("%s %s %s as %s: %d %s, want %d naming %q", tc.method, tc.url, tc.body, tc.who, code, out, tc.code, tc.key)
		}
	}
	if _, ok := f.a.Catalog.Current().Tenant("mine"); ok {
		t.Fatal("a refused write made tenant mine")
	}
	if tn, _ := f.a.Catalog.Current().Tenant("default"); tn.MaxInstances != 0 {
		t.Fatalf("a refused write changed tenant default: %+v", tn)
	}

	// The admin creates: in force at once.
	code, out := f.write(t, "POST", "/api/v1/tenants", "admin", `{"id":"gamma","max_instances":4}`)
	var got struct{ Tenant app.TenantView }
	if err := json.Unmarshal([]byte(out), &got); code != 201 || err != nil {
		t.Fatalf("POST: %d %s %v", code, out, err)
	}
	if got.Tenant != (app.TenantView{ID: "gamma", MaxInstances: 4, FromAPI: true}) {
		t.Fatalf("created: %+v", got.Tenant)
	}
	if tn, ok := f.a.Catalog.Current().Tenant("gamma"); !ok || tn.MaxInstances != 4 || !tn.FromAPI {
		t.Fatalf("catalog: %+v %v", tn, ok)
	}
	// Patches: an absent key keeps its value; the new cap is in force.
	if code, out := f.write(t, "PATCH", "/api/v1/tenants/gamma", "admin", `{}`); code != 200 || !strings.Contains(out, `"max_instances":4`) {
		t.Fatalf("PATCH {}: %d %s", code, out)
	}
	if code, out := f.write(t, "PATCH", "/api/v1/tenants/gamma", "admin", `{"max_instances":9}`); code != 200 || !strings.Contains(out, `"max_instances":9`) {
		t.Fatalf("PATCH: %d %s", code, out)
	}
	if tn, _ := f.a.Catalog.Current().Tenant("gamma"); tn.MaxInstances != 9 {
		t.Fatalf("catalog after PATCH: %+v", tn)
	}

	// Who sees what: admin all, a tenant token its own tenant only.
	list := func(who string) string {
		t.Helper()
		code, out := f.write(t, "GET", "/api/v1/tenants", who, "")
		var l struct{ Tenants []app.TenantView }
		if err := json.Unmarshal([]byte(out), &l); code != 200 || err != nil {
			t.Fatalf("GET as %s: %d %s %v", who, code, out, err)
		}
		var ids []string
		for _, tv := range l.Tenants {
			ids = append(ids, tv.ID)
			if tv.ID == "default" && (tv.Targets != 1 || tv.Pools != 1) {
				t.Errorf("tenant default as %s: %+v, want 1 target and 1 pool", who, tv)
			}
		}
		return strings.Join(ids, ",")
	}
	for who, want := range map[string]string{"admin": "default,gamma,other", "tenant-read": "default", "tenant-admin": "default",
		"other-tenant-read": "other", "other-tenant-admin": "other"} {
		if got := list(who); got != want {
			t.Errorf("GET /api/v1/tenants as %s: %s, want %s", who, got, want)
		}
	}

	// A config file that does not list gamma (SIGHUP, restart, corral
	// apply) keeps it; a diff shows no change for it.
	ctx := context.Background()
	snap := f.a.Catalog.Current()
	file := catalog.Desired{Targets: snap.Targets, Pools: snap.Pools}
	for _, tn := range snap.Tenants {
		if tn.ID != "gamma" {
			file.Tenants = append(file.Tenants, tn)
		}
	}
	if lines, err := catalog.Diff(ctx, f.st, file); err != nil || len(lines) != 0 {
		t.Fatalf("diff of a file without gamma: %q %v", lines, err)
	}
	if _, err := f.a.Catalog.Apply(ctx, file); err != nil {
		t.Fatal(err)
	}
	if tn, ok := f.a.Catalog.Current().Tenant("gamma"); !ok || tn.MaxInstances != 9 {
		t.Fatalf("gamma after applying a file without it: %+v %v", tn, ok)
	}

	// Deletes: 409 while it owns a target, 204 once empty.
	if code, out := f.write(t, "POST", "/api/v1/targets", "admin",
		`{"id":"gamma-t","tenant":"gamma","kind":"github","scope":"org","path":"g","token":"t","webhook_secret":"w"}`); code != 201 {
		t.Fatalf("POST target: %d %s", code, out)
	}
	if code, out := f.write(t, "DELETE", "/api/v1/tenants/gamma", "admin", ""); code != 409 || !strings.Contains(out, "gamma-t") {
		t.Fatalf("DELETE with a target: %d %s", code, out)
	}
	if code, out := f.write(t, "DELETE", "/api/v1/targets/gamma-t", "admin", ""); code != 204 {
		t.Fatalf("DELETE target: %d %s", code, out)
	}
	if code, out := f.write(t, "DELETE", "/api/v1/tenants/gamma", "admin", ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, out)
	}
	if _, ok := f.a.Catalog.Current().Tenant("gamma"); ok {
		t.Fatal("gamma is still in the catalog")
	}
	var stored []corral.Tenant
	_ = f.st.View(ctx, func(tx corral.ReadTx) error { var err error; stored, err = tx.Tenants(ctx); return err })
	for _, tn := range stored {
		if tn.ID == "gamma" {
			t.Fatal("gamma is still in the store")
		}
	}
}
