package reconciler_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/reconciler"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// hookForge is a fake forge that says whether it can list its webhook
// deliveries, as a GitHub client does (App: yes; token: no).
type hookForge struct {
	*fake.Forge
	can   bool
	calls *atomic.Int32
}

func (f hookForge) CanListDeliveries() bool { return f.can }

func (f hookForge) RedeliverFailed(context.Context, time.Time) (int, error) {
	f.calls.Add(1)
	if !f.can {
		return 0, fmt.Errorf("only GitHub App targets can list their webhook deliveries: %w", corral.ErrBadInput)
	}
	return 0, nil
}

// hookForges gives target "acme" a token client and "app" an App client.
type hookForges struct {
	token, app hookForge
}

func (f hookForges) Parser(k corral.TargetKind) (corral.WebhookParser, error) {
	return f.token.Parser(k)
}

func (f hookForges) Forge(t corral.Target) (corral.Forge, error) {
	if t.ID == "app" {
		return f.app, nil
	}
	return f.token, nil
}

func TestReconciler_Redeliver(t *testing.T) {
	g := newRig(t)
	fk := g.forge
	fs := hookForges{token: hookForge{fk, false, new(atomic.Int32)}, app: hookForge{fk, true, new(atomic.Int32)}}
	app := target
	app.ID = "app"
	logs := &strings.Builder{}
	r, err := reconciler.New(reconciler.Config{Store: g.st, Forges: fs, Targets: []corral.Target{target, app},
		Pools: []corral.Pool{testPool}, ControllerID: "test", Ledger: g.led, Retirer: g.s, Clock: g.clk,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := r.Redeliver(context.Background()); err != nil {
			t.Fatalf("redelivery sweep with a token target: %v", err)
		}
	}
	if n := fs.token.calls.Load(); n != 0 {
		t.Errorf("the token client was asked %d times", n)
	}
	if n := fs.app.calls.Load(); n != 3 {
		t.Errorf("the App client was asked %d times, want 3", n)
	}
	out := logs.String()
	if strings.Contains(out, "WARN") {
		t.Errorf("warnings logged:\n%s", out)
	}
	if strings.Count(out, "webhook redelivery") != 1 || !strings.Contains(out, "can=[app]") || !strings.Contains(out, "cannot=[acme]") {
		t.Errorf("want one line naming which targets can redeliver:\n%s", out)
	}
}
