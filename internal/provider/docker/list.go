package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
)

// List returns the containers labelled with controllerID on every endpoint
// that answers. An endpoint that does not answer is skipped (logged), so
// its instances look vanished and corral serves their jobs again. Only when
// no endpoint answers does List fail (ErrUnavailable), so that the restart
// of a lone engine does not make every instance look vanished at once.
// Docker sidecars (see dind.go) are part of their instance, not listed,
// except a sidecar whose runner container is gone: listed as that instance,
// not running once older than a Create can take, so the sweep deletes it.
func (p *Provider) List(ctx context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	results := make([][]corral.ProviderInstance, len(p.endpoints))
	errs := make([]error, len(p.endpoints))
	var wg sync.WaitGroup
	for i, ep := range p.endpoints {
		wg.Go(func() { results[i], errs[i] = p.listOn(ctx, ep, controllerID) })
	}
	wg.Wait()
	var out []corral.ProviderInstance
	failed := 0
	for i, ep := range p.endpoints {
		if errs[i] != nil {
			failed++
			p.log.Warn("endpoint unreachable; its instances are not listed", keyEndpoint, ep.name, keyErr, errs[i])
			continue
		}
		out = append(out, results[i]...)
	}
	if failed == len(p.endpoints) {
		return nil, &corral.CallError{Op: "docker list", Err: fmt.Errorf("%w: no Docker endpoint answers: %w", corral.ErrUnavailable, errors.Join(errs...))}
	}
	return out, nil
}

func (p *Provider) listOn(ctx context.Context, ep *endpoint, controllerID string) ([]corral.ProviderInstance, error) {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	res, err := ep.c.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelController+"="+controllerID),
	})
	if err != nil {
		return nil, apiError("list containers", err, nil)
	}
	now := p.clock.Now()
	out := make([]corral.ProviderInstance, 0, len(res.Items))
	runners := map[string]bool{}
	for _, c := range res.Items {
		if c.Labels[LabelSidecar] == "" {
			runners[c.Labels[LabelInstance]] = true
		}
	}
	for _, c := range res.Items {
		sidecar := c.Labels[LabelSidecar] != ""
		if sidecar && runners[c.Labels[LabelInstance]] {
			continue // part of a listed instance
		}
		created := time.Unix(c.Created, 0).UTC()
		running := c.State == container.StateRunning || c.State == container.StateRestarting ||
			// Created, not started yet: a Create in progress, unless old.
			(c.State == container.StateCreated && now.Sub(created) < createdGrace)
		// A sidecar without its runner container is what a crashed
		// Create left: an exited instance, for the sweep to delete.
		running = running && !(sidecar && now.Sub(created) >= createdGrace+dindReady)
		out = append(out, corral.ProviderInstance{
			ProviderID: providerID(ep.name, c.ID),
			InstanceID: c.Labels[LabelInstance],
			PoolID:     c.Labels[LabelPool],
			Running:    running,
			CreatedAt:  created,
		})
	}
	return out, nil
}

// Delete force-removes the instance's container (killing everything in
// it) with its anonymous volumes, and its Docker sidecar with the sidecar's
// volumes (see dind.go); the tmpfs workspace dies with it.
// Deleting a container that is gone is nil. A container without corral's
// labels is never removed. With a provider id that names no endpoint of
// this provider, every endpoint is searched by the instance label.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	epName, id, ok := splitID(inst.ProviderID)
	if ep := p.endpoint(epName); ok && ep != nil {
		if err := p.remove(ctx, ep, id, inst.InstanceID); err != nil {
			return &corral.CallError{Op: "docker delete", Target: inst.PoolID, Err: err}
		}
		return nil
	}
	if inst.InstanceID == "" {
		return nil
	}
	var errs []error
	for _, ep := range p.endpoints {
		res, err := ep.c.ContainerList(ctx, client.ContainerListOptions{
			All:     true,
			Filters: make(client.Filters).Add("label", LabelInstance+"="+inst.InstanceID),
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.name, apiError("list containers", err, nil)))
			continue
		}
		for _, c := range res.Items {
			if err := p.remove(ctx, ep, c.ID, inst.InstanceID); err != nil {
				errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &corral.CallError{Op: "docker delete", Target: inst.PoolID, Err: err}
	}
	return nil
}

// remove removes container id from ep if it carries corral's labels (and,
// when instanceID is set, that instance's).
func (p *Provider) remove(ctx context.Context, ep *endpoint, id, instanceID string) error {
	got, err := ep.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if kind(err) == corral.ErrNotFound {
			if instanceID == "" {
				return nil
			}
			if err := p.removeSidecars(ctx, ep, instanceID); err != nil {
				return fmt.Errorf("endpoint %s: %w", ep.name, err)
			}
			return nil
		}
		return fmt.Errorf("endpoint %s: %w", ep.name, apiError("inspect container "+id, err, nil))
	}
	labels := map[string]string{}
	if got.Container.Config != nil {
		labels = got.Container.Config.Labels
	}
	if labels[LabelController] == "" || (instanceID != "" && labels[LabelInstance] != instanceID) {
		return fmt.Errorf("%w: container %s on endpoint %s is not corral's instance %q", corral.ErrConflict, id, ep.name, instanceID)
	}
	_, err = ep.c.ContainerRemove(ctx, got.Container.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && kind(err) != corral.ErrNotFound {
		return fmt.Errorf("endpoint %s: %w", ep.name, apiError("remove container "+id, err, nil))
	}
	// The instance's Docker sidecar and socket volume, if any, go with it.
	if err := p.removeSidecars(ctx, ep, labels[LabelInstance]); err != nil {
		return fmt.Errorf("endpoint %s: %w", ep.name, err)
	}
	p.log.Info("instance deleted", keyInstance, labels[LabelInstance], keyEndpoint, ep.name, keyContainer, got.Container.ID)
	return nil
}
