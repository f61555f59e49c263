// Package provider is the registry of provider types. Each type (process,
// docker, plugin, and later VMs and Kubernetes) registers itself once by
// name from its own package, with its settings struct, its pool-options
// struct and its constructor; package builtin lists the types corral is
// built with. The config declares named instances of these types, and
// corral opens every instance through the registry.
//
// Adding a provider type takes its own package (with a Register call in an
// init function) plus one blank import in package builtin.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/corral-ci/corral/internal/corral"
)

// Settings is a provider instance's settings, a pointer to the type's own
// struct. It is decoded from the config file strictly (by its yaml tags)
// and stored as JSON (by its json tags) in the store's providers table, so
// that a provider removed from the config can still be opened to delete
// what it made. Secrets must stay references (env:NAME, file paths), never
// values.
type Settings interface {
	// Validate reports every problem at once, as a FieldErrors when the
	// problems belong to keys (so the config names their lines).
	Validate() error
}

// PoolOptions is what a pool asks of its provider beyond the domain's
// Pool (e.g. Docker-in-Docker), a pointer to the type's own struct. It
// travels opaquely as JSON in corral.Pool.ProviderOptions and
// corral.InstanceSpec.Options; the provider decodes it again.
type PoolOptions interface {
	// Validate checks the options against the settings of the provider
	// instance the pool names.
	Validate(s Settings) error
}

// Env is what corral gives every provider it opens.
type Env struct {
	DataDir    string // corral's data directory (absolute)
	Executable string // corral's own binary
	// InstancesDir and InstanceDiskMB are the top-level instances_dir and
	// instance_disk_mb keys: defaults of the process type.
	InstancesDir   string
	InstanceDiskMB int
	Logger         *slog.Logger
	// Metadata is corral's metadata endpoint for instances that fetch
	// their bootstrap themselves with a per-instance token (the instances
	// of garm's external providers); nil when corral serves none.
	Metadata InstanceMetadata
}

// InstanceMetadata hands an instance its bootstrap over HTTP, guarded by a
// token bound to that one instance.
type InstanceMetadata interface {
	// Grant keeps spec's bootstrap for its instance and returns where and
	// with which token the instance fetches it.
	Grant(spec corral.InstanceSpec) (MetadataGrant, error)
	// Revoke ends the instance's grant (its token is refused from then on).
	Revoke(instanceID string)
}

// MetadataGrant is what an instance needs to fetch its bootstrap.
type MetadataGrant struct {
	MetadataURL string // base of the metadata paths, e.g. http://corral:8080/api/v1/metadata
	CallbackURL string // base of the callback paths, e.g. http://corral:8080/api/v1/callbacks
	Token       string // the per-instance bearer token
	// JIT: the runner credential is a GitHub just-in-time config, served
	// as the files credentials/runner, credentials/credentials and
	// credentials/credentials_rsaparams; otherwise a registration token at
	// runner-registration-token.
	JIT bool
	// RepoURL is the forge URL the runner registers against (empty for
	// JIT, whose config names it).
	RepoURL string
}

// Type is one kind of provider.
type Type struct {
	Name string
	// NewSettings returns a pointer to the type's zero settings (with
	// defaults filled in).
	NewSettings func() Settings
	// NewPoolOptions returns a pointer to the type's zero pool options;
	// nil when the type takes none.
	NewPoolOptions func() PoolOptions
	// Open makes the provider instance called name. It does no work that
	// outlives ctx except what the provider itself owns.
	Open func(ctx context.Context, name string, s Settings, env Env) (corral.Provider, error)
	// PoolImage, when set, is the image of a pool that names none (the
	// process provider runs corral's own simulated runner).
	PoolImage func(env Env) string
}

var (
	mu    sync.RWMutex
	types = map[string]Type{}
)

// Register adds a provider type. It panics on an incomplete type or a
// name registered twice: both are programming errors found at start.
func Register(t Type) {
	if t.Name == "" || t.NewSettings == nil || t.Open == nil {
		panic("provider: Register needs Name, NewSettings and Open")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := types[t.Name]; dup {
		panic("provider: type " + t.Name + " registered twice")
	}
	types[t.Name] = t
}

// Lookup returns the registered type called name.
func Lookup(name string) (Type, bool) {
	mu.RLock()
	defer mu.RUnlock()
	t, ok := types[name]
	return t, ok
}

// Types lists the registered type names, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(types))
	for n := range types {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// FieldError is one problem with one key of a type's settings or pool
// options; Field is its path below them, e.g. "endpoints[0].host".
type FieldError struct {
	Field string
	Msg   string
}

// FieldErrors lists every problem a Validate found.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Field + ": " + e.Msg
	}
	return strings.Join(parts, "; ")
}

// Err returns es as an error, or nil when it is empty.
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// DecodeSettings decodes stored settings JSON into typ's settings,
// refusing unknown keys, and validates them.
func DecodeSettings(typ string, raw json.RawMessage) (Settings, error) {
	t, ok := Lookup(typ)
	if !ok {
		return nil, fmt.Errorf("provider type %q is not built into this corral (it has: %s): %w",
			typ, strings.Join(Types(), ", "), corral.ErrBadInput)
	}
	s := t.NewSettings()
	if len(raw) > 0 && string(raw) != "null" {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(s); err != nil {
			return nil, fmt.Errorf("provider type %s: settings: %v: %w", typ, err, corral.ErrBadInput)
		}
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("provider type %s: settings: %w", typ, err)
	}
	return s, nil
}

// DecodePoolOptions decodes the opaque options a pool carries for a
// provider (corral.InstanceSpec.Options) into dst, a pointer to the
// type's pool-options struct; empty options leave dst as it is.
func DecodePoolOptions(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(dst); err != nil {
		return fmt.Errorf("pool options: %v: %w", err, corral.ErrBadInput)
	}
	return nil
}

// Open opens the provider instance def describes.
func Open(ctx context.Context, def corral.ProviderDef, env Env) (corral.Provider, error) {
	s, err := DecodeSettings(def.Type, def.Settings)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", def.Name, err)
	}
	t, _ := Lookup(def.Type)
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	env.Logger = env.Logger.With("provider", def.Name)
	p, err := t.Open(ctx, def.Name, s, env)
	if err != nil {
		return nil, fmt.Errorf("provider %s (%s): %w", def.Name, def.Type, err)
	}
	return p, nil
}
