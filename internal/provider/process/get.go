package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/corral-ci/corral/internal/corral"
)

// Get returns one instance by its provider id as List would show it, or
// corral.ErrNotFound when its directory or state is gone.
func (p *Provider) Get(_ context.Context, providerID string) (corral.ProviderInstance, error) {
	if err := checkID(providerID); err != nil {
		return corral.ProviderInstance{}, err
	}
	st, err := readState(filepath.Join(p.cfg.Dir, providerID))
	if errors.Is(err, fs.ErrNotExist) {
		return corral.ProviderInstance{}, fmt.Errorf("%w: instance %s", corral.ErrNotFound, providerID)
	}
	if err != nil {
		return corral.ProviderInstance{}, fmt.Errorf("%w: instance %s: %w", corral.ErrUnavailable, providerID, err)
	}
	return corral.ProviderInstance{
		ProviderID: providerID,
		InstanceID: st.InstanceID,
		PoolID:     st.PoolID,
		Running:    st.Pid != 0 && alive(st.Pid, st.StartTicks),
		CreatedAt:  st.CreatedAt,
	}, nil
}
