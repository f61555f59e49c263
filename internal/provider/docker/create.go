package docker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
)

// containerName is what Docker accepts as a container name.
var containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func createError(spec corral.InstanceSpec, err error) error {
	return &corral.CallError{Op: "docker create", Target: spec.PoolID, Err: err}
}

// Create places the instance on the reachable endpoint with the most free
// capacity, creates its container, sends it its bootstrap files and starts
// it. It returns once the container is started.
func (p *Provider) Create(ctx context.Context, spec corral.InstanceSpec) (corral.ProviderInstance, error) {
	if err := checkSpec(spec); err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	opts, err := poolOptions(spec)
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	if opts.DockerInDocker && p.cfg.DindImage == "" {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: Docker in the instance asked for, but no dind image is configured", corral.ErrBadInput))
	}
	if _, ok := spec.Bootstrap.Env[envDockerHst]; ok && opts.DockerInDocker {
		return corral.ProviderInstance{}, createError(spec, fmt.Errorf("%w: environment variable %s is reserved with Docker in the instance", corral.ErrBadInput, envDockerHst))
	}
	env, err := p.environ(spec)
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	var files []byte
	if len(spec.Bootstrap.Files) > 0 {
		if files, err = filesTar(spec.Bootstrap.Files); err != nil {
			return corral.ProviderInstance{}, createError(spec, err)
		}
	}
	order, err := p.place(ctx)
	if err != nil {
		return corral.ProviderInstance{}, createError(spec, err)
	}
	secrets := secretsOf(spec.Bootstrap)
	var errs []error
	for _, ep := range order {
		inst, err := p.createOn(ctx, ep, spec, env, files, secrets)
		if err == nil {
			return inst, nil
		}
		errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.name, err))
		// Only a failing engine, or one another create filled meanwhile,
		// makes another one worth a try.
		if !(errors.Is(err, corral.ErrUnavailable) || errors.Is(err, errFull)) || ctx.Err() != nil {
			break
		}
	}
	return corral.ProviderInstance{}, createError(spec, errors.Join(errs...))
}

func checkSpec(spec corral.InstanceSpec) error {
	switch {
	case spec.InstanceID == "" || spec.ControllerID == "":
		return fmt.Errorf("%w: empty instance or controller id", corral.ErrBadInput)
	case !containerName.MatchString(spec.Name):
		return fmt.Errorf("%w: instance name %q is not a valid container name", corral.ErrBadInput, spec.Name)
	case spec.Image == "":
		return fmt.Errorf("%w: no image", corral.ErrBadInput)
	case len(spec.Bootstrap.Command) == 0 || spec.Bootstrap.Command[0] == "":
		return fmt.Errorf("%w: empty bootstrap command", corral.ErrBadInput)
	case spec.Flavor.CPU < 0 || spec.Flavor.MemoryMB < 0 || spec.Flavor.DiskMB < 0:
		return fmt.Errorf("%w: negative flavor %+v", corral.ErrBadInput, spec.Flavor)
	case spec.RunnerDir != "" && (!path.IsAbs(spec.RunnerDir) || path.Clean(spec.RunnerDir) == "/" || strings.ContainsRune(spec.RunnerDir, 0)):
		return fmt.Errorf("%w: runner directory %q must be an absolute path other than /", corral.ErrBadInput, spec.RunnerDir)
	}
	return nil
}

// place probes every endpoint at once and returns the reachable ones with
// free capacity, most free first, each with one create reserved; the
// caller's createOn releases it. Its errors: ErrUnavailable when no engine
// answers, ErrLimit when every reachable one is full.
func (p *Provider) place(ctx context.Context) ([]*endpoint, error) {
	type probe struct {
		ep   *endpoint
		live int
		err  error
	}
	probes := make([]probe, len(p.endpoints))
	var wg sync.WaitGroup
	for i, ep := range p.endpoints {
		wg.Go(func() {
			live, err := ep.live(ctx)
			probes[i] = probe{ep: ep, live: live, err: err}
		})
	}
	wg.Wait()
	var errs []error
	var order []*endpoint
	free := map[*endpoint]int{}
	for _, pr := range probes {
		if pr.err != nil {
			p.log.Warn("endpoint unreachable; skipped for creates", keyEndpoint, pr.ep.name, keyErr, pr.err)
			errs = append(errs, fmt.Errorf("endpoint %s: %w", pr.ep.name, pr.err))
			continue
		}
		pr.ep.mu.Lock()
		f := math.MaxInt32 - pr.live - pr.ep.inflight
		if pr.ep.max > 0 {
			f = pr.ep.max - pr.live - pr.ep.inflight
		}
		pr.ep.mu.Unlock()
		if f > 0 {
			free[pr.ep] = f
			order = append(order, pr.ep)
		}
	}
	if len(order) == 0 {
		if len(errs) == len(p.endpoints) {
			return nil, fmt.Errorf("%w: no Docker endpoint answers: %w", corral.ErrUnavailable, errors.Join(errs...))
		}
		return nil, fmt.Errorf("%w: every reachable Docker endpoint is at its max instances", corral.ErrLimit)
	}
	slices.SortStableFunc(order, func(a, b *endpoint) int { return free[b] - free[a] })
	return order, nil
}

// errFull says an endpoint's cap was reached between placement and create.
var errFull = fmt.Errorf("%w: endpoint at its max instances", corral.ErrLimit)

// live counts the corral containers (of any controller) on the endpoint
// that hold its capacity: created (not yet started), running, paused or
// restarting. An exited container's runner is done.
func (ep *endpoint) live(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	res, err := ep.c.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelController),
	})
	if err != nil {
		return 0, fmt.Errorf("%w: list containers: %w", kind(err), err)
	}
	n := 0
	for _, c := range res.Items {
		if c.Labels[LabelSidecar] != "" {
			continue
		}
		switch c.State {
		case container.StateExited, container.StateDead, container.StateRemoving:
			continue
		}
		n++
	}
	return n, nil
}

// createOn creates and starts the container on ep. On failure it removes
// what it created.
func (p *Provider) createOn(ctx context.Context, ep *endpoint, spec corral.InstanceSpec, env []string, files []byte, secrets []string) (corral.ProviderInstance, error) {
	ep.mu.Lock()
	ep.inflight++
	ep.mu.Unlock()
	defer func() {
		ep.mu.Lock()
		ep.inflight--
		ep.mu.Unlock()
	}()
	// cleanup removes what a failed create made, with a fresh context: the
	// caller's may be what failed.
	var made dind
	cleanup := func(id string) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
		defer cancel()
		if id != "" {
			if _, rerr := ep.c.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil {
				p.log.Warn("remove container of failed create", keyEndpoint, ep.name, keyContainer, id, keyErr, scrub(rerr.Error(), secrets))
			}
		}
		if made != (dind{}) {
			if rerr := p.removeDind(rctx, ep, made); rerr != nil {
				p.log.Warn("remove dind sidecar of failed create", keyEndpoint, ep.name, keyInstance, spec.InstanceID, keyErr, rerr)
			}
		}
	}
	cfg, host := p.containerConfig(spec, env, files != nil)
	if opts, _ := poolOptions(spec); opts.DockerInDocker { // checked by Create
		var err error
		if made, err = p.createDind(ctx, ep, spec, p.dindEnviron(spec)); err != nil {
			cleanup("")
			return corral.ProviderInstance{}, err
		}
		cfg.Env = append(cfg.Env, envDockerHst+"="+DindHost)
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: made.volume, Target: DindSocketDir})
	}
	res, err := ep.createCapped(ctx, client.ContainerCreateOptions{Name: spec.Name, Config: cfg, HostConfig: host})
	if err != nil {
		if errors.Is(err, errFull) {
			cleanup("")
			return corral.ProviderInstance{}, err
		}
		cleanup("")
		if kind(err) == corral.ErrNotFound {
			return corral.ProviderInstance{}, fmt.Errorf("%w: image %q: %s", corral.ErrNotFound, spec.Image, scrub(err.Error(), secrets))
		}
		return corral.ProviderInstance{}, apiError("create container "+spec.Name, err, secrets)
	}
	id := res.ID
	if err := p.start(ctx, ep, id, files); err != nil {
		cleanup(id)
		return corral.ProviderInstance{}, apiError("start container "+spec.Name, err, secrets)
	}
	p.log.Info("instance started", keyInstance, spec.InstanceID, keyPool, spec.PoolID, keyEndpoint, ep.name, keyContainer, id)
	return corral.ProviderInstance{
		ProviderID: providerID(ep.name, id),
		InstanceID: spec.InstanceID,
		PoolID:     spec.PoolID,
		Running:    true,
		CreatedAt:  p.clock.Now().UTC(),
	}, nil
}

// createCapped creates the container. On an endpoint with a cap it counts
// the endpoint's containers again under placeMu first, so the placement's
// count, read without the lock, cannot let two creates take one place: a
// container counts from its create on (state "created").
func (ep *endpoint) createCapped(ctx context.Context, opts client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	if ep.max <= 0 {
		return ep.c.ContainerCreate(ctx, opts)
	}
	ep.placeMu.Lock()
	defer ep.placeMu.Unlock()
	n, err := ep.live(ctx)
	if err != nil {
		return client.ContainerCreateResult{}, err
	}
	if n >= ep.max {
		return client.ContainerCreateResult{}, errFull
	}
	return ep.c.ContainerCreate(ctx, opts)
}

// start starts the container; with bootstrap files it first attaches to
// its stdin, then writes their tar there once it runs.
func (p *Provider) start(ctx context.Context, ep *endpoint, id string, files []byte) error {
	if files == nil {
		_, err := ep.c.ContainerStart(ctx, id, client.ContainerStartOptions{})
		return err
	}
	att, err := ep.c.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: true})
	if err != nil {
		return err
	}
	defer att.Close()
	if _, err := ep.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return err
	}
	if _, err := att.Conn.Write(files); err != nil {
		return fmt.Errorf("send bootstrap files: %w", err)
	}
	// End of stdin: with StdinOnce the engine closes the container's stdin.
	return att.CloseWrite()
}

// containerConfig builds the container from the spec: see the package
// documentation.
func (p *Provider) containerConfig(spec corral.InstanceSpec, env []string, stdin bool) (*container.Config, *container.HostConfig) {
	cfg := &container.Config{
		Image:      spec.Image,
		Entrypoint: entrypoint,
		Cmd:        slices.Clone(spec.Bootstrap.Command),
		Env:        env,
		Labels: map[string]string{
			LabelController: spec.ControllerID,
			LabelPool:       spec.PoolID,
			LabelInstance:   spec.InstanceID,
		},
		OpenStdin:   stdin,
		StdinOnce:   stdin,
		AttachStdin: stdin,
	}
	disk := spec.Flavor.DiskMB
	if disk <= 0 {
		disk = DefaultDiskMB
	}
	tmpfs := "rw,exec,nosuid,nodev,mode=1777,size=" + strconv.Itoa(disk) + "m"
	init := true
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(p.cfg.Network),
		ReadonlyRootfs: p.cfg.ReadOnlyRoot,
		Init:           &init,
		Privileged:     false,
		Tmpfs:          map[string]string{p.cfg.Workspace: tmpfs, "/tmp": tmpfs},
	}
	if spec.Flavor.CPU > 0 {
		host.NanoCPUs = int64(spec.Flavor.CPU) * 1e9
	}
	if spec.Flavor.MemoryMB > 0 {
		host.Memory = int64(spec.Flavor.MemoryMB) << 20
		host.MemorySwap = host.Memory
	}
	if p.cfg.LogDriver != "" {
		host.LogConfig = container.LogConfig{Type: p.cfg.LogDriver}
	}
	if spec.RunnerDir != "" {
		host.Mounts = append(host.Mounts, mount.Mount{
			Type: mount.TypeBind, Source: path.Clean(spec.RunnerDir), Target: corral.RunnerMount, ReadOnly: true,
		})
	}
	return cfg, host
}
