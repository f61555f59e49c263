package process

import (
	"context"
	"errors"
	"strings"
)

// Describe says which isolation the provider gives on this host (shown in
// /readyz).
func (p *Provider) Describe() string {
	summary, _ := p.Isolation()
	return summary
}

// Health reports the parts of the isolation the host refuses (not root,
// namespaces refused, no writable cgroups), so that /readyz shows them
// next to the provider; nil when every part is in force.
func (p *Provider) Health(context.Context) error {
	_, degraded := p.Isolation()
	if len(degraded) == 0 {
		return nil
	}
	return errors.New("isolation degraded: " + strings.Join(degraded, "; "))
}
