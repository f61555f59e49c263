package shoes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/plugin"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// TestFaults: a plugin that fails its handshake, is no plugin at all,
// hangs in AddInstance or crashes in it gives a *plugin.PluginError that
// names the provider and the call and carries the plugin's stderr; the
// plugin process is gone afterwards and the next call starts a new one.
func TestFaults(t *testing.T) {
	cases := []struct {
		fault string
		args  []string
		want  []string
	}{
		{"handshake", nil, []string{"start", "handshake", "cannot reach the backend (fault: handshake)"}},
		{"", []string{notPluginArg}, []string{"start", "handshake", "hello, I am not a plugin"}},
		{"hang", nil, []string{"AddInstance", "no answer within 2s: the plugin was killed", "AddInstance hangs (fault: hang)"}},
		{"crash", nil, []string{"AddInstance", "the plugin crashed", "AddInstance about to die (fault: crash)"}},
	}
	for _, c := range cases {
		name := c.fault
		if name == "" {
			name = "not_a_plugin"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "off")
			h.fault = c.fault
			s := h.settings()
			s.Timeouts = Timeouts{Start: 5 * time.Second, Create: 2 * time.Second}
			if c.args != nil {
				s.Path, s.Args = h.exe, c.args
			}
			p := h.provider(t, s)
			spec := providertest.Spec(t, h, "ctl-fault", nil)
			start := time.Now()
			_, err := p.Create(context.Background(), spec)
			if err == nil {
				t.Fatal("Create through a faulty plugin succeeded")
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("the fault took %v to report", took)
			}
			var pe *plugin.PluginError
			if !errors.As(err, &pe) || !errors.Is(err, corral.ErrUnavailable) {
				t.Fatalf("error %T %q: want an unavailable *plugin.PluginError", err, err)
			}
			for _, w := range append(c.want, "plugin shoes-test") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			p.mu.Lock()
			running := p.c != nil
			p.mu.Unlock()
			if running {
				t.Errorf("the faulty plugin is still the provider's running plugin")
			}
			// No plugin process of this harness is left (its environment
			// names the harness's machine directory).
			providertest.Eventually(t, "no plugin process left", func() bool {
				return providertest.FindProc(func(pid int) bool {
					return providertest.ProcHasEntry(pid, "CORRAL_SHOES_DIR="+h.dir)
				}) == 0
			})
			// A refused or failed create leaves a record only when the
			// plugin may have made the machine (hang, crash).
			_, statErr := os.Stat(filepath.Join(h.state, spec.InstanceID+".json"))
			kept := statErr == nil
			if wantKept := c.fault == "hang" || c.fault == "crash"; kept != wantKept {
				t.Errorf("record kept = %v, want %v", kept, wantKept)
			}
			if kept {
				// Delete tries the runner name as the cloud id and forgets it.
				if err := p.Delete(context.Background(), corral.ProviderInstance{InstanceID: spec.InstanceID}); err == nil {
					if _, err := os.Stat(filepath.Join(h.state, spec.InstanceID+".json")); err == nil {
						t.Errorf("record still there after Delete")
					}
				}
			}
		})
	}
}

// TestFault_Recovers: after the plugin crashed, the next call starts it
// again and works.
func TestFault_Recovers(t *testing.T) {
	h := newHarness(t, "off")
	p := h.provider(t, h.settings())
	ctl := providertest.Unique("ctl-")
	a := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
	p.mu.Lock()
	first := p.c.client
	p.mu.Unlock()
	first.Kill() // the plugin dies under corral
	b := providertest.Create(t, p, providertest.Spec(t, h, ctl, nil))
	list, err := p.List(context.Background(), ctl)
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v; want %s and %s", list, err, a.InstanceID, b.InstanceID)
	}
}
