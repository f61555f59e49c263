// Command corral-shoes-process is a shoes provider plugin in the manner of
// myshoes' (shoes-lxd, shoes-aws, ...): it serves the shoes gRPC service
// through hashicorp/go-plugin with myshoes' handshake, and backs each
// machine by a real process of this host (corral's process provider):
// AddInstance runs the setup script it is given as the instance's program,
// DeleteInstance kills the instance's process tree and removes its
// directory. It exists to test corral's shoes provider type; it needs no
// cloud.
//
// Like myshoes' plugins it is configured by environment variables:
//
//	CORRAL_SHOES_DIR         where the instances live (required, absolute)
//	CORRAL_SHOES_NAMESPACES  auto (default), on or off (process provider isolation)
//	CORRAL_SHOES_KEEP        host paths (':'-separated) runners see even under the private /tmp:
//	                         the runner program the setup script starts
//	CORRAL_SHOES_HIDE        host paths (':'-separated) runners must not see (corral's data directory)
//	CORRAL_SHOES_FAULT       for tests only: handshake, hang or crash
//
// Instances run under this binary acting as their shim
// (`corral-shoes-process shim ...`), in a session of their own, so they
// outlive the plugin process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/process"
	"github.com/corral-ci/corral/internal/provider/shoes"
	"github.com/corral-ci/corral/internal/provider/shoes/shoespb"
)

// Environment of the plugin.
const (
	EnvDir        = "CORRAL_SHOES_DIR"
	EnvNamespaces = "CORRAL_SHOES_NAMESPACES"
	EnvKeep       = "CORRAL_SHOES_KEEP"
	EnvHide       = "CORRAL_SHOES_HIDE"
	EnvFault      = "CORRAL_SHOES_FAULT"
)

// ShoesType is what AddInstance answers as the machine's kind.
const ShoesType = "corral-process"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "shim" {
		os.Exit(shim(os.Args[2:]))
	}
	fault := os.Getenv(EnvFault)
	if fault == "handshake" {
		fmt.Fprintln(os.Stderr, "corral-shoes-process: cannot reach the backend (fault: handshake)")
		os.Exit(1)
	}
	srv, err := open()
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-shoes-process:", err)
		os.Exit(1)
	}
	srv.fault = fault
	shoes.Serve(srv)
}

func shim(args []string) int {
	err := process.RunShim(context.Background(), args)
	var ee *process.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "corral-shoes-process shim:", err)
		return 2
	}
	return 0
}

type server struct {
	shoespb.UnimplementedShoesServer
	dir   string
	p     *process.Provider
	fault string
}

func open() (*server, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%s must be an absolute directory, got %q", EnvDir, dir)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	keep := []string{exe}
	if k := os.Getenv(EnvKeep); k != "" {
		keep = append(keep, strings.Split(k, ":")...)
	}
	var hide []string
	if h := os.Getenv(EnvHide); h != "" {
		hide = strings.Split(h, ":")
	}
	p, err := process.New(process.Config{
		Dir:        dir,
		Shim:       []string{exe, "shim"},
		Namespaces: os.Getenv(EnvNamespaces),
		Keep:       keep,
		Hide:       hide,
	})
	if err != nil {
		return nil, err
	}
	return &server{dir: dir, p: p}, nil
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// controller tags this plugin's instances for the process provider; the
// shoes protocol knows no controller.
const controller = "shoes"

// setupFile is the setup script's name in the instance's directory.
const setupFile = "shoes-setup.sh"

// flavors are what the process provider is asked for per resource type
// (cgroup limits when root).
var flavors = map[shoespb.Size]corral.Flavor{
	shoespb.Size_SIZE_NANO: {CPU: 1, MemoryMB: 512}, shoespb.Size_SIZE_MICRO: {CPU: 1, MemoryMB: 1024},
	shoespb.Size_SIZE_SMALL: {CPU: 1, MemoryMB: 2048}, shoespb.Size_SIZE_MEDIUM: {CPU: 2, MemoryMB: 4096},
}

func (s *server) AddInstance(ctx context.Context, req *shoespb.AddRequest) (*shoespb.AddResponse, error) {
	switch s.fault {
	case "hang":
		fmt.Fprintln(os.Stderr, "corral-shoes-process: AddInstance hangs (fault: hang)")
		<-ctx.Done()
		time.Sleep(time.Hour) // ignores even the cancel
	case "crash":
		// The original standard error, not go-plugin's forwarded one: a
		// dying process cannot wait for a stream to flush.
		fmt.Fprintln(os.NewFile(2, "stderr"), "corral-shoes-process: AddInstance about to die (fault: crash)")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	if !plainName.MatchString(req.GetRunnerName()) {
		return nil, status.Errorf(codes.InvalidArgument, "runner name %q is not a plain name", req.GetRunnerName())
	}
	if req.GetSetupScript() == "" {
		return nil, status.Error(codes.InvalidArgument, "empty setup script")
	}
	unlock, err := process.LockDir(s.dir)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer unlock()
	id := req.GetRunnerName()
	inst, err := s.p.Create(ctx, corral.InstanceSpec{
		InstanceID: id, Name: id, ControllerID: controller, PoolID: controller,
		Image:     "/bin/sh",
		Flavor:    flavors[req.GetSize()],
		Labels:    req.GetLabels(),
		Bootstrap: corral.Bootstrap{Command: []string{setupFile}, Files: map[string]corral.Secret{setupFile: corral.Secret(req.GetSetupScript())}},
	})
	switch {
	case errors.Is(err, corral.ErrConflict):
		return nil, status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, corral.ErrBadInput):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &shoespb.AddResponse{CloudId: inst.ProviderID, ShoesType: ShoesType, Size: req.GetSize()}, nil
}

func (s *server) DeleteInstance(ctx context.Context, req *shoespb.DeleteRequest) (*shoespb.DeleteResponse, error) {
	id := req.GetCloudId()
	if !plainName.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "cloud id %q is not a plain name", id)
	}
	if _, err := os.Lstat(filepath.Join(s.dir, id)); errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "no instance %s", id)
	}
	if err := s.p.Delete(ctx, corral.ProviderInstance{ProviderID: id, InstanceID: id}); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &shoespb.DeleteResponse{}, nil
}
