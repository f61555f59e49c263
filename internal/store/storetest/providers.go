package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// testProviderDefs: provider instances' definitions round-trip (settings
// JSON as written), are replaced by name and forgotten on delete.
func testProviderDefs(t *testing.T, s corral.Store) {
	ctx := context.Background()
	rack := corral.ProviderDef{Name: "rack1", Type: "docker",
		Settings: json.RawMessage(`{"endpoints":[{"name":"a","host":"tcp://10.0.0.1:2376","tls_ca":"/etc/corral/ca.pem"}]}`), UpdatedAt: T0}
	local := corral.ProviderDef{Name: "local", Type: "process", Settings: json.RawMessage(`{}`), UpdatedAt: T0.Add(time.Second)}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.PutProviderDef(ctx, rack); err != nil {
			return err
		}
		return tx.PutProviderDef(ctx, local)
	})
	got := providerDefs(t, s)
	if want := []corral.ProviderDef{local, rack}; !sameDefs(got, want) {
		t.Fatalf("ProviderDefs = %+v, want %+v (by name)", got, want)
	}
	rack.Settings, rack.UpdatedAt = json.RawMessage(`{"network":"none"}`), T0.Add(time.Hour)
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.PutProviderDef(ctx, rack) })
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.DeleteProviderDef(ctx, "local") })
	update(t, s, func(ctx context.Context, tx corral.Tx) error { return tx.DeleteProviderDef(ctx, "never-declared") })
	if got := providerDefs(t, s); !sameDefs(got, []corral.ProviderDef{rack}) {
		t.Fatalf("after replace and delete: ProviderDefs = %+v, want only %+v", got, rack)
	}
	err := s.Update(ctx, func(tx corral.Tx) error { return tx.PutProviderDef(ctx, corral.ProviderDef{Name: "x"}) })
	wantErr(t, "PutProviderDef without a type", err, corral.ErrBadInput)
}

func providerDefs(t *testing.T, s corral.Store) []corral.ProviderDef {
	t.Helper()
	var out []corral.ProviderDef
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		var err error
		out, err = tx.ProviderDefs(ctx)
		return err
	})
	return out
}

func sameDefs(got, want []corral.ProviderDef) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		var gs, ws any
		if json.Unmarshal(g.Settings, &gs) != nil || json.Unmarshal(w.Settings, &ws) != nil || !reflect.DeepEqual(gs, ws) {
			return false
		}
		if g.Name != w.Name || g.Type != w.Type || !g.UpdatedAt.Equal(w.UpdatedAt) {
			return false
		}
	}
	return true
}
