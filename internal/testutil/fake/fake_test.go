package fake

import (
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// harness runs providertest's suite on the in-memory provider: the core's
// unit tests lean on it, so it keeps the Provider contract too.
type harness struct{ p *Provider }

const testImage = "fake-test-runner"

func (h *harness) New(*testing.T) corral.Provider {
	if h.p == nil {
		h.p = NewProvider()
		h.p.Images = []string{testImage}
		return h.p
	}
	return h.p.Reopen()
}

func (h *harness) Image(*testing.T) string { return testImage }
func (h *harness) Command() []string       { return []string{providertest.RunnerArg} }

func (h *harness) Output(_ *testing.T, inst corral.ProviderInstance) string {
	return h.p.Output(inst.InstanceID)
}

func (h *harness) Leftovers(_ *testing.T, inst corral.ProviderInstance) []string {
	if h.p == nil {
		return nil
	}
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	if _, ok := h.p.Instances[inst.InstanceID]; ok {
		return []string{"instance " + inst.InstanceID}
	}
	return nil
}

func (h *harness) Processes(_ *testing.T, marker string) int { return h.p.Processes(marker) }

func TestProvider_Suite(t *testing.T) {
	providertest.Run(t, &harness{})
}
