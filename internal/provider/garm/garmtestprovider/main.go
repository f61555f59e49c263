// Command garmtestprovider is a garm external provider for corral's tests:
// it speaks garm's external-provider protocol (GARM_COMMAND and the other
// GARM_* variables, the bootstrap JSON on standard input, instance JSON
// on standard output, exit code 30 for "not found") and backs instances by
// real processes, with the code of corral's process provider. Each
// instance runs this same binary as its "userdata", which does what garm's
// cloud-init does: report its status to the callback URL, fetch the runner
// credential from the metadata URL with its instance token (the JIT
// config's files, or a registration token), then start the runner.
//
// Its config file (GARM_PROVIDER_CONFIG_FILE, JSON):
//
//	{"dir": "/var/lib/garmtest", "namespaces": "off"}
//
// Test switches (in the provider's environment, set through corral's
// provider env): GARMTEST_FAULT=hang|crash|garbage|badstatus|noid makes
// every command misbehave that way; GARMTEST_BOOT_DELAY=3s makes every
// instance wait before it fetches its bootstrap.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/garm"
	"github.com/corral-ci/corral/internal/provider/process"
)

// Variables of the instance's userdata (the process provider hands them
// over; the runner never sees them).
const (
	envMetadata = "GARMTEST_METADATA_URL"
	envCallback = "GARMTEST_CALLBACK_URL"
	envToken    = "GARMTEST_TOKEN"
	envImage    = "GARMTEST_IMAGE"
	envName     = "GARMTEST_NAME"
	envFault    = "GARMTEST_FAULT"
	// envBootDelay (a duration, in the provider's environment) makes each
	// instance wait that long before it fetches its bootstrap.
	envBootDelay = "GARMTEST_BOOT_DELAY"
)

const exitNotFound = 30

type config struct {
	Dir        string `json:"dir"`
	Namespaces string `json:"namespaces"`
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "shim":
			os.Exit(shim(os.Args[2:]))
		case "userdata":
			os.Exit(userdata())
		}
	}
	os.Exit(provide())
}

func shim(args []string) int {
	err := process.RunShim(context.Background(), args)
	var ee *process.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "garmtestprovider shim:", err)
		return 2
	}
	return 0
}

// fail prints the error on standard error, as garm's providers do, and
// returns the exit code.
func fail(code int, format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "garmtestprovider: "+format+"\n", a...)
	return code
}

func provide() int {
	command := os.Getenv("GARM_COMMAND")
	switch os.Getenv(envFault) {
	case "hang":
		fmt.Fprintln(os.Stderr, "garmtestprovider: hanging on purpose")
		time.Sleep(time.Hour)
	case "crash":
		fmt.Fprintln(os.Stderr, "garmtestprovider: crashing on purpose")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Second)
	case "garbage":
		fmt.Fprintln(os.Stderr, "garmtestprovider: printing garbage on purpose")
		fmt.Println("this is not json {")
		return 0
	case "badstatus":
		fmt.Fprintln(os.Stderr, "garmtestprovider: a status garm does not know")
		out, _ := json.Marshal(garm.Instance{ProviderID: "p-1", Name: bootName(), Status: "exploding"})
		fmt.Println(string(out))
		return 0
	case "noid":
		fmt.Fprintln(os.Stderr, "garmtestprovider: an instance without provider_id")
		out, _ := json.Marshal(garm.Instance{Name: bootName(), Status: "running"})
		fmt.Println(string(out))
		return 0
	}
	// The environment garm's providers check before any command.
	controller, cfgPath := os.Getenv("GARM_CONTROLLER_ID"), os.Getenv("GARM_PROVIDER_CONFIG_FILE")
	switch {
	case command == "":
		return fail(1, "missing GARM_COMMAND")
	case cfgPath == "":
		return fail(1, "missing GARM_PROVIDER_CONFIG_FILE")
	case controller == "" && command != "GetVersion":
		return fail(1, "missing GARM_CONTROLLER_ID")
	}
	if v := os.Getenv("GARM_INTERFACE_VERSION"); v != garm.Version010 && v != garm.Version011 && v != "" {
		return fail(1, "unsupported interface version: %s", v)
	}
	p, cfg, err := open(cfgPath)
	if err != nil {
		return fail(1, "%v", err)
	}
	ctx := context.Background()
	pool, id := os.Getenv("GARM_POOL_ID"), os.Getenv("GARM_INSTANCE_ID")
	switch command {
	case "CreateInstance":
		if pool == "" {
			return fail(1, "missing pool ID")
		}
		return create(ctx, p, cfg, controller, pool)
	case "GetInstance":
		if id == "" || pool == "" {
			return fail(1, "missing instance ID or pool ID")
		}
		inst, err := p.Get(ctx, id)
		if errors.Is(err, corral.ErrNotFound) {
			return fail(exitNotFound, "instance %s not found", id)
		}
		if err != nil {
			return fail(1, "get %s: %v", id, err)
		}
		return print(wire(inst))
	case "ListInstances":
		if pool == "" {
			return fail(1, "missing pool ID")
		}
		list, err := p.List(ctx, controller)
		if err != nil {
			return fail(1, "list: %v", err)
		}
		out := []garm.Instance{}
		for _, inst := range list {
			if inst.PoolID == pool {
				out = append(out, wire(inst))
			}
		}
		return print(out)
	case "DeleteInstance":
		if id == "" || pool == "" {
			return fail(1, "missing instance ID or pool ID")
		}
		// The id is the provider id, or the name when creation failed
		// before one: here both name the process instance.
		inst, err := p.Get(ctx, id)
		if errors.Is(err, corral.ErrNotFound) {
			return 0 // deleting a missing instance is a no-op
		}
		if err != nil {
			return fail(1, "delete %s: %v", id, err)
		}
		if err := p.Delete(ctx, inst); err != nil {
			return fail(1, "delete %s: %v", id, err)
		}
		return 0
	case "RemoveAllInstances":
		list, err := p.List(ctx, controller)
		if err != nil {
			return fail(1, "list: %v", err)
		}
		for _, inst := range list {
			if err := p.Delete(ctx, inst); err != nil {
				return fail(1, "delete %s: %v", inst.ProviderID, err)
			}
		}
		return 0
	case "StartInstance", "StopInstance":
		return fail(1, "%s: processes cannot be stopped and started again", command)
	case "GetVersion":
		fmt.Println("v0.0.1-corral-test")
		return 0
	}
	return fail(1, "unknown GARM_COMMAND: %s", command)
}

func bootName() string {
	var b garm.Bootstrap
	_ = json.NewDecoder(os.Stdin).Decode(&b)
	return b.Name
}

func open(path string) (*process.Provider, config, error) {
	var c config
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, c, fmt.Errorf("error accessing config file: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return nil, c, fmt.Errorf("config file %s: %w", path, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, c, err
	}
	p, err := process.New(process.Config{Dir: c.Dir, Shim: []string{exe, "shim"}, Namespaces: c.Namespaces, Keep: []string{exe}})
	return p, c, err
}

// lock serializes creates of concurrent invocations: the process provider
// picks a free runner uid from the instances on disk.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".create.lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func create(ctx context.Context, p *process.Provider, cfg config, controller, pool string) int {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil || len(bytes.TrimSpace(raw)) == 0 {
		return fail(1, "CreateInstance requires data passed into stdin")
	}
	var b garm.Bootstrap
	if err := json.Unmarshal(raw, &b); err != nil {
		return fail(1, "failed to decode instance params: %v", err)
	}
	switch {
	case b.Name == "":
		return fail(1, "missing bootstrap params")
	case b.MetadataURL == "" || b.CallbackURL == "" || b.InstanceToken == "":
		return fail(1, "bootstrap params lack metadata-url, callback-url or instance-token")
	case b.PoolID != pool:
		return fail(1, "bootstrap pool_id %q is not GARM_POOL_ID %q", b.PoolID, pool)
	}
	if os.Getenv("GARM_INTERFACE_VERSION") == garm.Version011 {
		spec, err := base64.StdEncoding.DecodeString(os.Getenv("GARM_POOL_EXTRASPECS"))
		if err != nil || !json.Valid(spec) {
			return fail(1, "GARM_POOL_EXTRASPECS is not base64 of JSON")
		}
	}
	if _, err := os.Stat(b.Image); err != nil {
		return fail(exitNotFound, "image %q not found: %v", b.Image, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(1, "%v", err)
	}
	unlock, err := lock(cfg.Dir)
	if err != nil {
		return fail(1, "lock: %v", err)
	}
	defer unlock()
	spec := corral.InstanceSpec{
		InstanceID: b.Name, Name: b.Name, ControllerID: controller, PoolID: pool,
		Image: exe, Flavor: corral.Flavor{CPU: 1}, Labels: b.Labels,
		Bootstrap: corral.Bootstrap{Command: []string{"userdata"}, Env: map[string]corral.Secret{
			envMetadata: corral.Secret(b.MetadataURL), envCallback: corral.Secret(b.CallbackURL),
			envToken: corral.Secret(b.InstanceToken), envImage: corral.Secret(b.Image), envName: corral.Secret(b.Name),
		}, Files: map[string]corral.Secret{}},
	}
	if d := os.Getenv(envBootDelay); d != "" {
		spec.Bootstrap.Env[envBootDelay] = corral.Secret(d)
	}
	inst, err := p.Create(ctx, spec)
	if err != nil {
		if errors.Is(err, corral.ErrNotFound) {
			return fail(exitNotFound, "create %s: %v", b.Name, err)
		}
		return fail(1, "create %s: %v", b.Name, err)
	}
	return print(wire(inst))
}

func wire(inst corral.ProviderInstance) garm.Instance {
	status := "stopped"
	if inst.Running {
		status = "running"
	}
	return garm.Instance{ProviderID: inst.ProviderID, Name: inst.InstanceID, OSType: "linux", OSName: "corral-process",
		OSArch: "amd64", Status: status}
}

func print(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Println(string(b))
	return 0
}
