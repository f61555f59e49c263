package docker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
)

// Stats reads the container's CPU time and memory use from the engine's
// stats API (one sample, no stream): cpu_stats.cpu_usage.total_usage,
// memory_stats.usage and, on cgroup v1 engines, memory_stats.max_usage
// (cgroup v2 engines give no peak: the sampler keeps the highest usage
// it saw).
func (p *Provider) Stats(ctx context.Context, inst corral.ProviderInstance) (corral.Usage, error) {
	epName, id, ok := splitID(inst.ProviderID)
	ep := p.endpoint(epName)
	if !ok || ep == nil {
		return corral.Usage{}, fmt.Errorf("%w: provider id %q names no endpoint of this provider", corral.ErrNotFound, inst.ProviderID)
	}
	res, err := ep.c.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return corral.Usage{}, &corral.CallError{Op: "docker stats", Target: inst.PoolID, Err: apiError("container stats", err, nil)}
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return corral.Usage{}, &corral.CallError{Op: "docker stats", Target: inst.PoolID, Err: fmt.Errorf("%w: decode stats of %s: %w", corral.ErrUnavailable, id, err)}
	}
	return corral.Usage{
		CPUSeconds:      float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9,
		MemoryBytes:     int64(s.MemoryStats.Usage),
		MemoryPeakBytes: int64(s.MemoryStats.MaxUsage),
	}, nil
}
