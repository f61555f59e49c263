// Package docker is the provider whose instances are containers on one or
// more Docker Engines, driven through the Engine API
// (github.com/moby/moby/client).
//
// One instance is one container, named after the instance and labelled
// io.corral.controller, io.corral.pool and io.corral.instance, so that List
// and the reconciler's orphan sweep find it after a crash. The container:
//   - runs the bootstrap command under a small POSIX sh entry script (see
//     entry.go) that extracts the bootstrap files into the workspace and
//     enforces the deadline with `timeout`, so the instance dies at its
//     deadline even while corral is down; the image must therefore have
//     /bin/sh, date and timeout (and tar when there are bootstrap files);
//   - has the flavor's CPU and memory as hard limits (NanoCPUs, Memory,
//     MemorySwap = Memory: no swap);
//   - has its workspace (its working directory) and /tmp on tmpfs sized
//     from the flavor's disk, so the job's files never reach the host's
//     disk (tmpfs pages also count against the memory limit); with
//     ReadOnlyRoot nothing else is writable;
//   - runs under an init process (Init), unprivileged, and never gets the
//     host's Docker socket. Its only bind mount is InstanceSpec.RunnerDir
//     (when set: a directory holding the runner release corral manages,
//     a path on the engine's host, so only useful with a local engine),
//     read-only at corral.RunnerMount; an instance asking for
//     Docker gets a private daemon in a sidecar instead (see dind.go);
//   - gets credentials only through its environment, never in its command
//     line or labels; bootstrap files go through the container's stdin.
//
// Docker inside jobs (PoolOptions.DockerInDocker in InstanceSpec.Options, Config.DindImage): a
// per-instance daemon in a privileged sidecar container, reached through a
// socket volume shared only by the two containers and removed with them.
// The job's containers are isolated from the host's daemon and from other
// jobs, but a privileged sidecar is not a security boundary against a
// hostile job: use it for trusted jobs or on hosts given to one trust
// domain. Details in dind.go.
//
// With several endpoints each instance goes to the reachable one with the
// most free capacity; the instances of an endpoint that is down are not
// listed, so corral treats them as vanished and serves their jobs again.
package docker

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/corral"
)

// Labels that corral puts on its containers.
const (
	LabelController = "io.corral.controller"
	LabelPool       = "io.corral.pool"
	LabelInstance   = "io.corral.instance"
)

// Network modes.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// Defaults.
const (
	DefaultWorkspace = "/workspace"
	DefaultGrace     = 10 * time.Second
	// DefaultDiskMB sizes the workspace when the flavor names no disk.
	DefaultDiskMB = 1024
	// createdGrace is how long a container that was created but never
	// started counts as a Create in progress (listed running); older ones
	// are leftovers of a crashed Create and listed as not running.
	createdGrace = time.Minute
	// pingTimeout bounds the probe of one endpoint during placement and
	// listing, so that a dead endpoint cannot stall the others.
	pingTimeout = 5 * time.Second
)

// Log keys.
const (
	keyInstance  = "instance"
	keyPool      = "pool"
	keyEndpoint  = "endpoint"
	keyContainer = "container"
	keyErr       = "err"
)

// Endpoint is one Docker Engine.
type Endpoint struct {
	Name string // plain name, unique; part of the provider ids
	// Host: unix:///var/run/docker.sock, tcp://host:2376 (with the TLS
	// files; plain tcp only to a loopback address) or ssh://user@host[:port]
	// (runs `ssh ... docker system dial-stdio` on the remote host).
	Host                   string
	TLSCA, TLSCert, TLSKey string // files, for tcp://
	// MaxInstances caps the live corral containers on the endpoint (of
	// every controller); 0 means no cap.
	MaxInstances int
}

// Config configures a Provider.
type Config struct {
	Endpoints []Endpoint
	Network   string // "host" (default) or "none"
	// ReadOnlyRoot makes the root filesystem read-only: only the
	// workspace and /tmp (tmpfs) are writable.
	ReadOnlyRoot bool
	// Workspace is the runner's working directory, a tmpfs (default
	// /workspace). Relative bootstrap commands and files resolve as
	// documented in entry.go.
	Workspace string
	// Grace is the time between SIGTERM and SIGKILL at the deadline
	// (whole seconds; default 10s).
	Grace time.Duration
	// LogDriver is the containers' log driver; "" keeps the daemon's
	// default. The json-file log lives in the daemon's data root and goes
	// with the container at Delete; "none" keeps the runner's output off
	// the host's disk altogether.
	LogDriver string
	// SSHCommand is the argv prefix for ssh:// endpoints (default
	// ssh -o BatchMode=yes); the provider appends [-p port] user@host --
	// docker system dial-stdio.
	SSHCommand []string
	// DindImage is the image of the Docker-in-Docker sidecar started for
	// instances that ask for Docker (see dind.go); "" refuses them.
	DindImage string
	// DindCapabilities, when set, runs the sidecar unprivileged with these
	// capabilities (e.g. CAP_SYS_ADMIN), seccomp and AppArmor unconfined
	// and no masked /proc paths, instead of privileged: for engines that
	// cannot grant every capability (an engine itself in a container
	// without CAP_SYS_RESOURCE, where privileged containers fail). It is
	// no security boundary either.
	DindCapabilities []string
	Logger           *slog.Logger
	Clock            corral.Clock
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("docker provider: no endpoint"))
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		name := e.Name
		if name == "" && len(c.Endpoints) == 1 {
			name = "default"
		}
		if !namePattern.MatchString(name) {
			errs = append(errs, fmt.Errorf("docker provider: endpoint %d: name %q is not a plain name", i, e.Name))
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("docker provider: endpoint name %q is used twice", name))
		}
		seen[name] = true
		if err := checkHost(e); err != nil {
			errs = append(errs, fmt.Errorf("docker provider: endpoint %q: %w", name, err))
		}
		if e.MaxInstances < 0 {
			errs = append(errs, fmt.Errorf("docker provider: endpoint %q: negative max instances", name))
		}
	}
	switch c.Network {
	case "", NetworkHost, NetworkNone:
	default:
		errs = append(errs, fmt.Errorf("docker provider: network %q is not host or none", c.Network))
	}
	if c.Workspace != "" && (!strings.HasPrefix(c.Workspace, "/") || c.Workspace == "/" || strings.ContainsAny(c.Workspace, ":,\x00")) {
		errs = append(errs, fmt.Errorf("docker provider: workspace %q must be an absolute path other than /", c.Workspace))
	}
	for _, cp := range c.DindCapabilities {
		if cp == "" || strings.ContainsAny(cp, " ,=\x00") {
			errs = append(errs, fmt.Errorf("docker provider: dind capability %q", cp))
		}
	}
	if c.Grace < 0 {
		errs = append(errs, errors.New("docker provider: negative grace"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", corral.ErrBadInput, err)
	}
	return nil
}

func checkHost(e Endpoint) error {
	u, err := url.Parse(e.Host)
	if err != nil {
		return fmt.Errorf("host %q: %w", e.Host, err)
	}
	tls := e.TLSCA != "" || e.TLSCert != "" || e.TLSKey != ""
	switch u.Scheme {
	case "unix":
		if u.Path == "" {
			return fmt.Errorf("host %q has no socket path", e.Host)
		}
	case "tcp":
		if u.Host == "" {
			return fmt.Errorf("host %q has no address", e.Host)
		}
		if !tls && !isLoopback(u.Hostname()) {
			return fmt.Errorf("host %q: tcp to a remote engine needs TLS (tls_ca, tls_cert, tls_key)", e.Host)
		}
		if tls && (e.TLSCert == "") != (e.TLSKey == "") {
			return fmt.Errorf("host %q: tls_cert and tls_key go together", e.Host)
		}
	case "ssh":
		if u.Hostname() == "" {
			return fmt.Errorf("host %q has no host name", e.Host)
		}
	default:
		return fmt.Errorf("host %q: scheme must be unix, tcp or ssh", e.Host)
	}
	if tls && u.Scheme != "tcp" {
		return fmt.Errorf("host %q: TLS files only apply to tcp://", e.Host)
	}
	return nil
}

func isLoopback(h string) bool {
	return h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
}

// endpoint is one engine and its client.
type endpoint struct {
	name string
	host string
	max  int
	c    *client.Client

	mu       sync.Mutex
	inflight int // creates of this process between placement and start

	// placeMu, on an endpoint with a cap, is held from the count of its
	// containers to the create of a new one, so two creates of this process
	// never both take its last place.
	placeMu sync.Mutex
}

// Provider runs instances as containers. It is safe for concurrent use.
type Provider struct {
	cfg       Config
	log       *slog.Logger
	clock     corral.Clock
	endpoints []*endpoint
}

var _ corral.Provider = (*Provider)(nil)

// New validates cfg and returns a provider. It makes the clients but
// dials nothing: an engine is first contacted by a call.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Network == "" {
		cfg.Network = NetworkHost
	}
	if cfg.Workspace == "" {
		cfg.Workspace = DefaultWorkspace
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if len(cfg.SSHCommand) == 0 {
		cfg.SSHCommand = []string{"ssh", "-o", "BatchMode=yes"}
	}
	cfg.SSHCommand = slices.Clone(cfg.SSHCommand)
	p := &Provider{cfg: cfg, log: cfg.Logger, clock: cfg.Clock}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "provider/docker")
	if p.clock == nil {
		p.clock = corral.SystemClock{}
	}
	for _, e := range cfg.Endpoints {
		if e.Name == "" {
			e.Name = "default"
		}
		c, err := newClient(e, cfg.SSHCommand, p.log.With(keyEndpoint, e.Name))
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("%w: docker provider: endpoint %q: %w", corral.ErrBadInput, e.Name, err)
		}
		p.endpoints = append(p.endpoints, &endpoint{name: e.Name, host: e.Host, max: e.MaxInstances, c: c})
	}
	return p, nil
}

func newClient(e Endpoint, sshCmd []string, log *slog.Logger) (*client.Client, error) {
	u, err := url.Parse(e.Host)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "ssh":
		// The unix host only makes the client speak plain HTTP without a
		// proxy; every connection goes through the ssh dialer.
		return client.New(client.WithHost("unix:///var/run/docker.sock"), client.WithDialContext(sshDialer(sshCmd, u, log)))
	case "tcp":
		opts := []client.Opt{client.WithHost(e.Host)}
		if e.TLSCA != "" || e.TLSCert != "" || e.TLSKey != "" {
			opts = append(opts, client.WithTLSClientConfig(e.TLSCA, e.TLSCert, e.TLSKey))
		}
		return client.New(opts...)
	default:
		return client.New(client.WithHost(e.Host))
	}
}

// Close releases the engines' idle connections.
func (p *Provider) Close() {
	for _, e := range p.endpoints {
		_ = e.c.Close()
	}
}

func (p *Provider) endpoint(name string) *endpoint {
	for _, e := range p.endpoints {
		if e.name == name {
			return e
		}
	}
	return nil
}

// providerID joins an endpoint name and a container id; splitID parses it.
func providerID(ep, container string) string { return ep + "/" + container }

func splitID(id string) (ep, container string, ok bool) {
	return strings.Cut(id, "/")
}
