package docker

// Docker inside jobs (PoolOptions.DockerInDocker in InstanceSpec.Options).
//
// The host's Docker socket is never given to an instance. An instance that
// asks for Docker gets its own daemon instead, in a sidecar container
// created before the runner's and removed with it:
//   - the sidecar runs Config.DindImage (an image with /bin/sh, date,
//     timeout and dockerd, containerd, runc and containerd-shim-runc-v2 in
//     PATH) as `dockerd --host unix:///run/corral-dind/docker.sock
//     --bridge=none --iptables=false --data-root /var/lib/corral-dind`
//     under the same entry script as the runner, so it also dies at the
//     instance's deadline;
//   - its data root is a tmpfs sized from the flavor's disk: the nested
//     daemon's images and containers never reach the host's disk and go
//     with the sidecar;
//   - the socket directory is a volume created for the instance and shared
//     by the sidecar and the runner container only; the runner gets
//     DOCKER_HOST=unix:///run/corral-dind/docker.sock;
//   - the sidecar, like the volume, carries the instance's labels and
//     LabelSidecar. List reports a sidecar only when its runner container
//     is gone (a crashed Create), as an exited instance, so the orphan
//     sweep deletes it; Delete removes the runner, the sidecar and the
//     volume.
//
// Trade-off: a nested daemon needs a privileged container (or, with
// Config.DindCapabilities, one with those capabilities, seccomp and
// AppArmor unconfined and no masked /proc paths: no safer). The job's
// containers are isolated from the host's daemon (it cannot list, start or
// mount anything through it) and from other jobs (each has its own daemon,
// data root and socket), but a privileged sidecar is NOT a security
// boundary against a hostile job: code that controls the nested daemon can
// start privileged containers in the sidecar and from there reach the
// host's kernel, devices and file systems. Use Docker-in-Docker for trusted
// jobs, or on hosts (or VMs) dedicated to one trust domain.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
)

// LabelSidecar marks the sidecar containers and volumes of an instance;
// its value says what the sidecar is ("dind").
const LabelSidecar = "io.corral.sidecar"

const (
	sidecarDind = "dind"
	// DindSocketDir is the directory of the nested daemon's socket in the
	// sidecar and in the runner container.
	DindSocketDir = "/run/corral-dind"
	// DindHost is the runner's DOCKER_HOST.
	DindHost     = "unix://" + DindSocketDir + "/docker.sock"
	dindDataRoot = "/var/lib/corral-dind"
	envDockerHst = "DOCKER_HOST"
	// dindReady bounds the wait for the nested daemon's socket.
	dindReady = 2 * time.Minute
)

func sidecarName(spec corral.InstanceSpec) string { return spec.Name + "-dind" }

func sidecarLabels(spec corral.InstanceSpec) map[string]string {
	return map[string]string{
		LabelController: spec.ControllerID,
		LabelPool:       spec.PoolID,
		LabelInstance:   spec.InstanceID,
		LabelSidecar:    sidecarDind,
	}
}

// dind is what createDind made: the socket volume and the sidecar.
type dind struct{ volume, container string }

// createDind creates the socket volume and starts the sidecar on ep, and
// waits until its daemon listens. It returns what it made, also on
// failure, for the caller to remove (removeDind).
func (p *Provider) createDind(ctx context.Context, ep *endpoint, spec corral.InstanceSpec, env []string) (dind, error) {
	var d dind
	// VolumeCreate returns an existing volume of that name: never adopt
	// (and later remove) another instance's.
	if _, err := ep.c.VolumeInspect(ctx, sidecarName(spec), client.VolumeInspectOptions{}); err == nil {
		return d, fmt.Errorf("%w: volume %s exists", corral.ErrConflict, sidecarName(spec))
	} else if kind(err) != corral.ErrNotFound {
		return d, apiError("inspect volume "+sidecarName(spec), err, nil)
	}
	vol, err := ep.c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: sidecarName(spec), Labels: sidecarLabels(spec)})
	if err != nil {
		return d, apiError("create volume "+sidecarName(spec), err, nil)
	}
	d.volume = vol.Volume.Name
	disk := spec.Flavor.DiskMB
	if disk <= 0 {
		disk = DefaultDiskMB
	}
	init := true
	cfg := &container.Config{
		Image:      p.cfg.DindImage,
		Entrypoint: entrypoint,
		Cmd: []string{"dockerd", "--host", DindHost, "--bridge=none", "--iptables=false",
			"--ip-masq=false", "--data-root", dindDataRoot, "--pidfile", DindSocketDir + "/dockerd.pid"},
		Env:    env,
		Labels: sidecarLabels(spec),
		Healthcheck: &container.HealthConfig{
			Test:     []string{"CMD", "test", "-S", DindSocketDir + "/docker.sock"},
			Interval: 200 * time.Millisecond, Timeout: 5 * time.Second, Retries: 1 << 20,
		},
	}
	host := &container.HostConfig{
		NetworkMode: container.NetworkMode(p.cfg.Network),
		Init:        &init,
		Privileged:  len(p.cfg.DindCapabilities) == 0, // see the trade-off above
		Tmpfs:       map[string]string{dindDataRoot: "rw,exec,dev,suid,mode=0711,size=" + strconv.Itoa(disk) + "m"},
		Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: vol.Volume.Name, Target: DindSocketDir}},
	}
	if caps := p.cfg.DindCapabilities; len(caps) > 0 {
		host.CapAdd = slices.Clone(caps)
		host.SecurityOpt = []string{"seccomp=unconfined", "apparmor=unconfined"}
		host.MaskedPaths, host.ReadonlyPaths = []string{}, []string{} // none
	}
	if p.cfg.LogDriver != "" {
		host.LogConfig = container.LogConfig{Type: p.cfg.LogDriver}
	}
	res, err := ep.c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: sidecarName(spec), Config: cfg, HostConfig: host})
	if err != nil {
		if kind(err) == corral.ErrNotFound {
			return d, fmt.Errorf("%w: dind image %q: %s", corral.ErrNotFound, p.cfg.DindImage, err)
		}
		return d, apiError("create dind sidecar "+sidecarName(spec), err, nil)
	}
	d.container = res.ID
	if _, err := ep.c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return d, apiError("start dind sidecar "+sidecarName(spec), err, nil)
	}
	return d, p.waitDind(ctx, ep, res.ID)
}

// removeDind removes what createDind made.
func (p *Provider) removeDind(ctx context.Context, ep *endpoint, d dind) error {
	if d.container != "" {
		if _, err := ep.c.ContainerRemove(ctx, d.container, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && kind(err) != corral.ErrNotFound {
			return apiError("remove sidecar "+d.container, err, nil)
		}
	}
	if d.volume != "" {
		if _, err := ep.c.VolumeRemove(ctx, d.volume, client.VolumeRemoveOptions{Force: true}); err != nil && kind(err) != corral.ErrNotFound {
			return apiError("remove volume "+d.volume, err, nil)
		}
	}
	return nil
}

// dindEnviron is the sidecar's environment: the entry script's, with the
// data root as its working directory. It holds no secret.
func (p *Provider) dindEnviron(spec corral.InstanceSpec) []string {
	env := []string{
		envInstance + "=" + spec.InstanceID,
		envPool + "=" + spec.PoolID,
		envWorkspace + "=" + dindDataRoot,
		envGrace + "=" + strconv.Itoa(max(1, int((p.cfg.Grace+time.Second-1)/time.Second))),
	}
	if !spec.Deadline.IsZero() {
		env = append(env, envDeadline+"="+strconv.FormatInt(ceilUnix(spec.Deadline), 10))
	}
	return env
}

// waitDind polls the sidecar's health until its daemon's socket exists.
func (p *Provider) waitDind(ctx context.Context, ep *endpoint, id string) error {
	ctx, cancel := context.WithTimeout(ctx, dindReady)
	defer cancel()
	for {
		got, err := ep.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return apiError("inspect dind sidecar", err, nil)
		}
		st := got.Container.State
		switch {
		case st == nil:
		case !st.Running:
			return fmt.Errorf("%w: dind sidecar exited (code %d) before its daemon listened", corral.ErrUnavailable, st.ExitCode)
		case st.Health != nil && st.Health.Status == container.Healthy:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: dind sidecar's daemon did not listen: %w", corral.ErrUnavailable, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeSidecars removes the sidecar containers of the instance on ep with
// their anonymous volumes, then its sidecar volumes.
func (p *Provider) removeSidecars(ctx context.Context, ep *endpoint, instanceID string) error {
	f := make(client.Filters).Add("label", LabelInstance+"="+instanceID).Add("label", LabelSidecar)
	cs, err := ep.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return apiError("list sidecars", err, nil)
	}
	for _, c := range cs.Items {
		if _, err := ep.c.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && kind(err) != corral.ErrNotFound {
			return apiError("remove sidecar "+c.ID, err, nil)
		}
	}
	vs, err := ep.c.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return apiError("list sidecar volumes", err, nil)
	}
	for _, v := range vs.Items {
		if _, err := ep.c.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil && kind(err) != corral.ErrNotFound {
			return apiError("remove volume "+v.Name, err, nil)
		}
	}
	return nil
}
