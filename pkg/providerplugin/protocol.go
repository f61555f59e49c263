// Package providerplugin is the Go SDK for corral provider plugins and the
// definition of corral's plugin protocol, version 1 (docs/plugins.md).
//
// A plugin is one executable per provider instance. corral runs it once per
// command: the command and the ids are in its environment (Env*), a JSON
// Request is on its standard input, and it answers with one JSON Response
// on its standard output and exits: 0 when the command succeeded, 1 with
// the Response's Error set when it failed. What it writes to standard error
// is kept (its tail) for corral's error messages. A plugin written in Go
// calls Serve with its Provider; a plugin in another language follows the
// same types, which are the schema.
package providerplugin

import (
	"encoding/json"
	"time"
)

// ProtocolVersion is the version of the protocol this package speaks.
const ProtocolVersion = 1

// Commands.
const (
	CmdHandshake = "handshake" // which protocol version; name and version of the plugin
	CmdCreate    = "create"    // start an instance from Request.Spec
	CmdDelete    = "delete"    // destroy Request.Instance; gone already is success
	CmdGet       = "get"       // one instance; an error of kind not_found when it is gone
	CmdList      = "list"      // every instance tagged with Request.ControllerID
	CmdHealth    = "health"    // can the plugin's backend create instances now
)

// Environment of every invocation.
const (
	EnvCommand      = "CORRAL_PLUGIN_COMMAND"     // one of the Cmd* names
	EnvProtocol     = "CORRAL_PLUGIN_PROTOCOL"    // the version corral speaks ("1")
	EnvProviderName = "CORRAL_PROVIDER_NAME"      // the provider instance's name in corral's config
	EnvConfigFile   = "CORRAL_PLUGIN_CONFIG_FILE" // the plugin's own config file (config_file); may be empty
	EnvControllerID = "CORRAL_CONTROLLER_ID"      // create, list
	EnvInstanceID   = "CORRAL_INSTANCE_ID"        // create, delete, get
	EnvPoolID       = "CORRAL_POOL_ID"            // create
)

// Instance states.
const (
	StateRunning = "running" // the runner is (or may still be) running
	StateStopped = "stopped" // the runner exited; the instance is not deleted yet
)

// Error kinds. corral maps them to its own errors: not_found (a missing
// image, a missing instance), bad_input, conflict, unavailable (try again
// later), incompatible (no common protocol version) and internal.
const (
	KindNotFound     = "not_found"
	KindBadInput     = "bad_input"
	KindConflict     = "conflict"
	KindUnavailable  = "unavailable"
	KindIncompatible = "incompatible"
	KindInternal     = "internal"
)

// Request is what corral writes to the plugin's standard input.
type Request struct {
	// Protocol is the version corral speaks; in a handshake, Protocols
	// lists every version it accepts.
	Protocol  int    `json:"protocol"`
	Protocols []int  `json:"protocols,omitempty"`
	Command   string `json:"command"`
	// ControllerID tags instances (create, list).
	ControllerID string       `json:"controller_id,omitempty"`
	Spec         *Spec        `json:"spec,omitempty"`     // create
	Instance     *InstanceRef `json:"instance,omitempty"` // delete, get
}

// Spec asks for one instance. Bootstrap values are secrets: a plugin must
// not print them.
type Spec struct {
	InstanceID   string    `json:"instance_id"`
	Name         string    `json:"name"`
	ControllerID string    `json:"controller_id"`
	PoolID       string    `json:"pool_id"`
	Image        string    `json:"image"`
	Flavor       Flavor    `json:"flavor"`
	Labels       []string  `json:"labels,omitempty"`
	Bootstrap    Bootstrap `json:"bootstrap"`
	// Deadline is the instance's maximum lifetime; the instance must
	// enforce it itself (it dies even while corral is down). Zero: none.
	Deadline  time.Time       `json:"deadline,omitzero"`
	RunnerDir string          `json:"runner_dir,omitempty"`
	Options   json.RawMessage `json:"options,omitempty"` // the pool's options for this provider
}

// Flavor is the instance's size.
type Flavor struct {
	CPU      int    `json:"cpu,omitempty"`
	MemoryMB int    `json:"memory_mb,omitempty"`
	DiskMB   int    `json:"disk_mb,omitempty"`
	Arch     string `json:"arch,omitempty"`
}

// Bootstrap starts the runner: its command, environment and files
// (relative to its working directory).
type Bootstrap struct {
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Files   map[string]string `json:"files,omitempty"`
}

// InstanceRef names an instance to delete or get.
type InstanceRef struct {
	ProviderID string `json:"provider_id"`
	InstanceID string `json:"instance_id"`
}

// Instance is an instance as the plugin sees it. ProviderID, InstanceID
// and State are required.
type Instance struct {
	ProviderID   string    `json:"provider_id"`
	InstanceID   string    `json:"instance_id"`
	PoolID       string    `json:"pool_id,omitempty"`
	ControllerID string    `json:"controller_id,omitempty"`
	State        string    `json:"state"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
}

// Handshake is the answer to a handshake.
type Handshake struct {
	Protocol int    `json:"protocol"` // the version the plugin chose among Request.Protocols
	Name     string `json:"name,omitempty"`
	Version  string `json:"version,omitempty"`
}

// Health is the answer to health.
type Health struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// Error is a failed command's answer.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Kind + ": " + e.Message }

// Response is what the plugin writes to its standard output: exactly one
// JSON object. Which field is set depends on the command: handshake →
// Handshake, create and get → Instance, list → Instances (present, maybe
// empty), health → Health, delete → nothing; a failure → Error.
type Response struct {
	Handshake *Handshake `json:"handshake,omitempty"`
	Instance  *Instance  `json:"instance,omitempty"`
	Instances []Instance `json:"instances,omitempty"`
	Health    *Health    `json:"health,omitempty"`
	Error     *Error     `json:"error,omitempty"`
}
