package providerplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// Provider is what a plugin implements. Serve calls one method per
// invocation. A returned *Error keeps its kind; any other error is sent
// as kind internal.
type Provider interface {
	// Create starts the instance and returns it (state running). It must
	// not wait for the runner, and what it starts must not depend on the
	// plugin process, which exits right after.
	Create(ctx context.Context, spec Spec) (Instance, error)
	// Delete destroys the instance and what it wrote; an instance that is
	// already gone is no error.
	Delete(ctx context.Context, ref InstanceRef) error
	// Get returns one instance, or an *Error of kind not_found.
	Get(ctx context.Context, ref InstanceRef) (Instance, error)
	// List returns every instance tagged with controllerID, running or
	// stopped.
	List(ctx context.Context, controllerID string) ([]Instance, error)
	// Health reports whether the backend can create instances now.
	Health(ctx context.Context) error
}

// Info names the plugin in its handshake.
type Info struct {
	Name    string
	Version string
}

// Errorf returns an *Error of the kind.
func Errorf(kind, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// ConfigFile is the plugin's config file as corral names it (config_file
// in corral's config); empty when none.
func ConfigFile() string { return os.Getenv(EnvConfigFile) }

// Serve answers the one command of this invocation and exits the process:
// 0 on success, 1 on failure. SIGTERM and SIGINT cancel the context given
// to the Provider.
func Serve(info Info, p Provider) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := ServeIO(ctx, info, p, os.Getenv(EnvCommand), os.Stdin, os.Stdout)
	stop()
	os.Exit(code)
}

// maxRequest bounds the request read from standard input.
const maxRequest = 16 << 20

// ServeIO is Serve on given streams; it returns the exit code.
func ServeIO(ctx context.Context, info Info, p Provider, command string, in io.Reader, out io.Writer) int {
	resp, err := serve(ctx, info, p, command, in)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Kind: KindInternal, Message: err.Error()}
		}
		resp = map[string]any{"error": pe}
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(resp); err != nil {
		fmt.Fprintln(os.Stderr, "providerplugin: encode response:", err)
		return 1
	}
	if _, werr := out.Write(buf.Bytes()); werr != nil {
		fmt.Fprintln(os.Stderr, "providerplugin: write response:", werr)
		return 1
	}
	if err != nil {
		return 1
	}
	return 0
}

func serve(ctx context.Context, info Info, p Provider, command string, in io.Reader) (any, error) {
	raw, err := io.ReadAll(io.LimitReader(in, maxRequest+1))
	if err != nil {
		return nil, Errorf(KindBadInput, "read request: %v", err)
	}
	if len(raw) > maxRequest {
		return nil, Errorf(KindBadInput, "request larger than %d bytes", maxRequest)
	}
	var req Request
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, Errorf(KindBadInput, "decode request: %v", err)
	}
	if command == "" {
		command = req.Command
	}
	if req.Command != "" && req.Command != command {
		return nil, Errorf(KindBadInput, "command %q in the environment, %q in the request", command, req.Command)
	}
	if command == CmdHandshake {
		offered := req.Protocols
		if len(offered) == 0 {
			offered = []int{req.Protocol}
		}
		if !slices.Contains(offered, ProtocolVersion) {
			return nil, Errorf(KindIncompatible, "plugin %s speaks protocol %d, corral offers %v", info.Name, ProtocolVersion, offered)
		}
		return Response{Handshake: &Handshake{Protocol: ProtocolVersion, Name: info.Name, Version: info.Version}}, nil
	}
	if req.Protocol != ProtocolVersion {
		return nil, Errorf(KindIncompatible, "plugin %s speaks protocol %d, the request is protocol %d", info.Name, ProtocolVersion, req.Protocol)
	}
	switch command {
	case CmdCreate:
		if req.Spec == nil {
			return nil, Errorf(KindBadInput, "create without spec")
		}
		inst, err := p.Create(ctx, *req.Spec)
		if err != nil {
			return nil, err
		}
		return Response{Instance: &inst}, nil
	case CmdDelete, CmdGet:
		if req.Instance == nil {
			return nil, Errorf(KindBadInput, "%s without instance", command)
		}
		if command == CmdDelete {
			return struct{}{}, p.Delete(ctx, *req.Instance)
		}
		inst, err := p.Get(ctx, *req.Instance)
		if err != nil {
			return nil, err
		}
		return Response{Instance: &inst}, nil
	case CmdList:
		list, err := p.List(ctx, req.ControllerID)
		if err != nil {
			return nil, err
		}
		if list == nil {
			list = []Instance{}
		}
		return struct {
			Instances []Instance `json:"instances"`
		}{list}, nil
	case CmdHealth:
		if err := p.Health(ctx); err != nil {
			return Response{Health: &Health{OK: false, Message: err.Error()}}, nil
		}
		return Response{Health: &Health{OK: true}}, nil
	default:
		return nil, Errorf(KindBadInput, "unknown command %q", command)
	}
}
