package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/corral-ci/corral/internal/corral"
)

// Capacity says, per endpoint, how many corral containers hold a place
// (any controller's: created, running, paused or restarting) against its
// max_instances, or why it does not answer; corral doctor prints it. The
// error wraps corral.ErrUnavailable when no endpoint answers.
func (p *Provider) Capacity(ctx context.Context) (string, error) {
	parts := make([]string, len(p.endpoints))
	errs := make([]error, len(p.endpoints))
	var wg sync.WaitGroup
	for i, ep := range p.endpoints {
		wg.Go(func() {
			live, err := ep.live(ctx)
			switch {
			case err != nil:
				parts[i] = fmt.Sprintf("%s: does not answer", ep.name)
				errs[i] = fmt.Errorf("endpoint %s: %w", ep.name, err)
			case ep.max > 0:
				parts[i] = fmt.Sprintf("%s: %d of %d places taken", ep.name, live, ep.max)
			default:
				parts[i] = fmt.Sprintf("%s: %d containers, no cap", ep.name, live)
			}
		})
	}
	wg.Wait()
	summary := strings.Join(parts, "; ")
	down := 0
	for _, e := range errs {
		if e != nil {
			down++
		}
	}
	if down == len(p.endpoints) {
		return summary, fmt.Errorf("%w: no Docker endpoint answers: %w", corral.ErrUnavailable, errors.Join(errs...))
	}
	if down > 0 {
		return summary, errors.Join(errs...)
	}
	return summary, nil
}
