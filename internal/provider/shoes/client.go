package shoes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/plugin"
	"github.com/corral-ci/corral/internal/provider/pluginexec"
	"github.com/corral-ci/corral/internal/provider/shoes/shoespb"
)

// The go-plugin handshake of shoes plugins, as myshoes defines it: the
// plugin checks the magic cookie in its environment, and both sides must
// speak this protocol version over gRPC. PluginName is the name the gRPC
// client is dispensed under.
const (
	ProtocolVersion = 1
	magicKey        = "SHOES_PLUGIN_MAGIC_COOKIE"
	magicValue      = "are_you_a_shoes?"
	PluginName      = "shoes_grpc"
)

// Handshake is the handshake config of shoes plugins.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   magicKey,
	MagicCookieValue: magicValue,
}

// GRPCPlugin is the shoes service as a go-plugin plugin: corral uses its
// client half; a plugin sets Impl and calls Serve.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl shoespb.ShoesServer
}

// GRPCServer registers the shoes service.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("shoes: GRPCPlugin without an Impl")
	}
	shoespb.RegisterShoesServer(s, p.Impl)
	return nil
}

// GRPCClient returns the shoes service's client.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return shoespb.NewShoesClient(c), nil
}

// Serve serves srv as a shoes plugin on the process's standard streams,
// the way myshoes' plugins do; it returns when the client goes away.
func Serve(srv shoespb.ShoesServer) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         goplugin.PluginSet{PluginName: &GRPCPlugin{Impl: srv}},
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}

// conn is one running plugin process.
type conn struct {
	client *goplugin.Client
	shoes  shoespb.ShoesClient
	stderr *pluginexec.TailBuffer // its standard error and its forwarded output
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// environ is the plugin's environment: PATH and the configured variables
// (go-plugin adds its own); nothing else of corral's.
func (p *Provider) environ() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path}
	for k, v := range p.s.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// connect returns the running plugin, starting it (and its handshake)
// when there is none or the last one exited.
func (p *Provider) connect() (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil && !p.c.client.Exited() {
		return p.c, nil
	}
	if p.c != nil {
		p.c.client.Kill()
		p.c = nil
	}
	tail := pluginexec.NewTailBuffer(pluginexec.StderrTail)
	cmd := exec.Command(p.s.Path, p.s.Args...)
	cmd.Env = p.environ()
	cmd.Dir = "/"
	// Its own process group; Pdeathsig: a plugin still running when corral
	// dies (SIGKILL) dies with it. The machines it made live on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pluginexec.CloseInheritable()
	c := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          goplugin.PluginSet{PluginName: &GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		StartTimeout:     p.s.timeout(p.s.Timeouts.Start, DefaultStartTimeout),
		Stderr:           tail,
		SyncStdout:       tail,
		SyncStderr:       tail,
		SkipHostEnv:      true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off}),
	})
	fail := func(err error) (*conn, error) {
		c.Kill() // waits for its output readers: the tail is complete
		return nil, &plugin.PluginError{Provider: p.name, Path: p.s.Path, Command: "start", Stderr: tail.String(),
			Err: fmt.Errorf("%w: handshake: %w", corral.ErrUnavailable, err)}
	}
	rpc, err := c.Client()
	if err != nil {
		return fail(err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return fail(err)
	}
	sc, ok := raw.(shoespb.ShoesClient)
	if !ok {
		return fail(fmt.Errorf("dispensed %T", raw))
	}
	p.c = &conn{client: c, shoes: sc, stderr: tail}
	p.log.Info("shoes plugin started", "path", p.s.Path, "protocol", c.NegotiatedVersion())
	return p.c, nil
}

// kill ends c if it is still the current plugin.
func (p *Provider) kill(c *conn) {
	p.mu.Lock()
	if p.c == c {
		p.c = nil
	}
	p.mu.Unlock()
	c.client.Kill()
}

// Close kills the plugin process (the machines it made live on).
func (p *Provider) Close() error {
	p.mu.Lock()
	c := p.c
	p.c = nil
	p.mu.Unlock()
	if c != nil {
		c.client.Kill()
	}
	return nil
}

// call runs one RPC with its timeout. A plugin that does not answer in
// time is killed (and started again for the next call); one that died is
// reported as crashed; every failure is a *plugin.PluginError carrying the
// tail of the plugin's standard error. nothing tells, on failure, that the
// call did nothing: the plugin never got it (no handshake) or answered
// with an error itself.
func (p *Provider) call(ctx context.Context, method string, timeout time.Duration, fn func(context.Context, shoespb.ShoesClient) error) (nothing bool, err error) {
	c, err := p.connect()
	if err != nil {
		return true, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = fn(cctx, c.shoes)
	if err == nil {
		return true, nil
	}
	st, _ := status.FromError(err)
	var kind error
	switch {
	case ctx.Err() != nil:
		kind = fmt.Errorf("%w: cancelled: %w", corral.ErrUnavailable, ctx.Err())
	case errors.Is(cctx.Err(), context.DeadlineExceeded), st.Code() == codes.DeadlineExceeded && atDeadline(cctx):
		// gRPC sends the deadline to the plugin rounded down: its side
		// may end the call a moment before cctx expires here.
		p.kill(c)
		kind = fmt.Errorf("%w: no answer within %v: the plugin was killed", corral.ErrUnavailable, timeout)
	case st.Code() == codes.Unavailable || st.Code() == codes.Canceled:
		// The connection broke: most likely the plugin died. Wait a
		// moment for its exit, so that its last words are in the tail.
		for end := time.Now().Add(time.Second); !c.client.Exited() && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		exited := c.client.Exited()
		p.kill(c)
		if exited {
			kind = fmt.Errorf("%w: the plugin crashed: %s", corral.ErrUnavailable, st.Message())
		} else {
			kind = fmt.Errorf("%w: connection lost: %s", corral.ErrUnavailable, st.Message())
		}
	default:
		nothing = true
		kind = fmt.Errorf("%w: %s: %s", codeErr(st.Code()), st.Code(), st.Message())
	}
	return nothing, &plugin.PluginError{Provider: p.name, Path: p.s.Path, Command: method, Stderr: c.stderr.String(), Err: kind}
}

// atDeadline tells whether ctx's deadline is at most 50 ms away: a
// DeadlineExceeded answer then means the call's own time ran out, not an
// error the plugin met on its side.
func atDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < 50*time.Millisecond
}

// codeErr maps a gRPC status the plugin answered to corral's errors.
func codeErr(c codes.Code) error {
	switch c {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		return corral.ErrBadInput
	case codes.NotFound:
		return corral.ErrNotFound
	case codes.AlreadyExists:
		return corral.ErrConflict
	default:
		return corral.ErrUnavailable
	}
}
