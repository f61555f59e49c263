package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// toySettings is the settings of a provider type registered by this test
// only.
type toySettings struct {
	Zone string `json:"zone"`
}

func (s *toySettings) Validate() error {
	if s.Zone == "" {
		return provider.FieldErrors{{Field: "zone", Msg: "required"}}
	}
	return nil
}

// opened records the toy providers opened, by name.
var opened = map[string]*fake.Provider{}

func init() {
	provider.Register(provider.Type{
		Name:        "toy",
		NewSettings: func() provider.Settings { return &toySettings{} },
		Open: func(_ context.Context, name string, s provider.Settings, _ provider.Env) (corral.Provider, error) {
			if s.(*toySettings).Zone == "broken" {
				return nil, errors.New("zone broken is unreachable")
			}
			p := fake.NewProvider()
			opened[name] = p
			return p, nil
		},
	})
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T) corral.Store {
	t.Helper()
	st, err := sqlite.Open(tctx(t), filepath.Join(t.TempDir(), "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func def(name, zone string) corral.ProviderDef {
	return corral.ProviderDef{Name: name, Type: "toy", Settings: json.RawMessage(`{"zone":"` + zone + `"}`)}
}

func TestOpen_ValidatesStoredSettings(t *testing.T) {
	ctx := tctx(t)
	if _, err := provider.Open(ctx, def("a", ""), provider.Env{}); !errors.Is(err, corral.ErrBadInput) && !strings.Contains(err.Error(), "zone: required") {
		t.Errorf("Open with no zone = %v, want the settings' problem", err)
	}
	bad := corral.ProviderDef{Name: "a", Type: "toy", Settings: json.RawMessage(`{"zone":"z","extra":1}`)}
	if _, err := provider.Open(ctx, bad, provider.Env{}); !errors.Is(err, corral.ErrBadInput) {
		t.Errorf("Open with an unknown key = %v, want ErrBadInput", err)
	}
	if _, err := provider.Open(ctx, corral.ProviderDef{Name: "a", Type: "nope"}, provider.Env{}); err == nil || !strings.Contains(err.Error(), "toy") {
		t.Errorf("Open of an unknown type = %v, want an error listing the types", err)
	}
	if p, err := provider.Open(ctx, def("a", "z"), provider.Env{}); err != nil || p == nil {
		t.Errorf("Open = %v, %v", p, err)
	}
}

func putInstances(t *testing.T, st corral.Store, ins ...corral.Instance) {
	t.Helper()
	err := st.Update(tctx(t), func(tx corral.Tx) error {
		for i := range ins {
			if err := tx.PutInstance(context.Background(), &ins[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func storedNames(t *testing.T, st corral.Store) []string {
	t.Helper()
	var names []string
	err := st.View(tctx(t), func(tx corral.ReadTx) error {
		defs, err := tx.ProviderDefs(context.Background())
		for _, d := range defs {
			names = append(names, d.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestOpenRetired: providers recorded earlier but gone from the config
// are opened while they have live instances, forgotten once they have
// none, and reported (log and the instances' LastError) when their stored
// definition cannot be opened.
func TestOpenRetired(t *testing.T) {
	st := openStore(t)
	ctx := tctx(t)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// A first start declares four toy providers.
	all := []corral.ProviderDef{def("keep", "a"), def("gone-busy", "b"), def("gone-idle", "c"), def("gone-broken", "broken")}
	if _, err := provider.OpenRetired(ctx, st, all, provider.Env{}, now); err != nil {
		t.Fatal(err)
	}
	putInstances(t, st,
		corral.Instance{ID: "i1", Name: "n1", Provider: "gone-busy", State: corral.InstBusy},
		corral.Instance{ID: "i2", Name: "n2", Provider: "gone-idle", State: corral.InstDeleted},
		corral.Instance{ID: "i3", Name: "n3", Provider: "gone-broken", State: corral.InstIdle},
	)
	// The next start declares only "keep".
	var logs bytes.Buffer
	env := provider.Env{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	retired, err := provider.OpenRetired(ctx, st, []corral.ProviderDef{def("keep", "a2")}, env, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(retired) != 1 || retired["gone-busy"] == nil || opened["gone-busy"] == nil {
		t.Errorf("retired = %v, want only gone-busy opened", retired)
	}
	if got, want := strings.Join(storedNames(t, st), ","), "gone-broken,gone-busy,keep"; got != want {
		t.Errorf("stored providers = %s, want %s (gone-idle forgotten)", got, want)
	}
	for _, want := range []string{"retired provider forgotten", "provider=gone-idle", "retired provider cannot be opened", "provider=gone-broken", "zone broken is unreachable"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	var i3 corral.Instance
	_ = st.View(ctx, func(tx corral.ReadTx) error { i3, err = tx.Instance(ctx, "i3"); return err })
	if !strings.Contains(i3.LastError, "provider gone-broken is gone from the config") {
		t.Errorf("instance of the unopenable provider: LastError = %q", i3.LastError)
	}

	// Its last instance deleted, the retired provider is forgotten.
	putInstances(t, st, corral.Instance{ID: "i1", Name: "n1", Provider: "gone-busy", State: corral.InstDeleted})
	logs.Reset()
	if err := provider.ForgetRetired(ctx, st, map[string]bool{"keep": true}, env.Logger); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(storedNames(t, st), ","), "gone-broken,keep"; got != want {
		t.Errorf("stored providers = %s, want %s", got, want)
	}
	if !strings.Contains(logs.String(), "provider=gone-busy") {
		t.Errorf("forgetting gone-busy was not logged:\n%s", logs.String())
	}
}

func TestRegister_Twice(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering a type twice did not panic")
		}
	}()
	provider.Register(provider.Type{Name: "toy", NewSettings: func() provider.Settings { return &toySettings{} },
		Open: func(context.Context, string, provider.Settings, provider.Env) (corral.Provider, error) {
			return nil, nil
		}})
}
