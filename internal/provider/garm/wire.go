package garm

import "encoding/json"

// The external-provider protocol of garm (github.com/cloudbase/garm, its
// doc/external_provider.md and the garm-provider-common module), as corral
// speaks it. The types are corral's own, written from the protocol's
// documented JSON field names.

// Commands, in GARM_COMMAND.
const (
	cmdCreate    = "CreateInstance"
	cmdDelete    = "DeleteInstance"
	cmdGet       = "GetInstance"
	cmdList      = "ListInstances"
	cmdRemoveAll = "RemoveAllInstances"
	cmdStart     = "StartInstance"
	cmdStop      = "StopInstance"
	cmdVersion   = "GetVersion"
)

// Environment variables of every invocation.
const (
	envCommand          = "GARM_COMMAND"
	envControllerID     = "GARM_CONTROLLER_ID"
	envPoolID           = "GARM_POOL_ID"
	envInstanceID       = "GARM_INSTANCE_ID"
	envConfigFile       = "GARM_PROVIDER_CONFIG_FILE"
	envInterfaceVersion = "GARM_INTERFACE_VERSION"
	envPoolExtraSpecs   = "GARM_POOL_EXTRASPECS" // base64 of the pool's extra specs JSON (v0.1.1)
)

// Interface versions.
const (
	Version010 = "v0.1.0"
	Version011 = "v0.1.1"
)

// Exit codes with a meaning beyond "failed".
const (
	exitNotFound  = 30
	exitDuplicate = 31
)

// Instance statuses a provider may answer (garm refuses any other).
const (
	statusRunning = "running"
	statusStopped = "stopped"
	statusError   = "error"
	statusUnknown = "unknown"
)

// Bootstrap is the JSON CreateInstance reads on its standard input.
type Bootstrap struct {
	Name            string          `json:"name"`
	Tools           []Tool          `json:"tools"`
	RepoURL         string          `json:"repo_url"`
	CallbackURL     string          `json:"callback-url"`
	MetadataURL     string          `json:"metadata-url"`
	InstanceToken   string          `json:"instance-token"`
	SSHKeys         []string        `json:"ssh-keys"`
	ExtraSpecs      json.RawMessage `json:"extra_specs,omitempty"`
	RunnerGroup     string          `json:"github-runner-group"`
	CACertBundle    []byte          `json:"ca-cert-bundle"`
	OSArch          string          `json:"arch"`
	OSType          string          `json:"os_type"`
	Flavor          string          `json:"flavor"`
	Image           string          `json:"image"`
	Labels          []string        `json:"labels"`
	PoolID          string          `json:"pool_id"`
	UserDataOptions UserDataOptions `json:"user_data_options"`
	JITConfig       bool            `json:"jit_config_enabled"`
	ProxyConfig     ProxyConfig     `json:"proxy_config"`
}

// Tool is one runner download the instance may use.
type Tool struct {
	OS                string `yaml:"os" json:"os,omitempty"`
	Architecture      string `yaml:"architecture" json:"architecture,omitempty"`
	DownloadURL       string `yaml:"download_url" json:"download_url,omitempty"`
	Filename          string `yaml:"filename" json:"filename,omitempty"`
	TempDownloadToken string `yaml:"-" json:"temp_download_token,omitempty"`
	SHA256Checksum    string `yaml:"sha256_checksum" json:"sha256_checksum,omitempty"`
}

// UserDataOptions tune the userdata a provider renders.
type UserDataOptions struct {
	DisableUpdatesOnBoot bool     `json:"disable_updates_on_boot"`
	ExtraPackages        []string `json:"extra_packages"`
	EnableBootDebug      bool     `json:"enable_boot_debug"`
}

// ProxyConfig is the instance's HTTP proxy.
type ProxyConfig struct {
	HTTPProxy  string `json:"http_proxy"`
	HTTPSProxy string `json:"https_proxy"`
	NoProxy    string `json:"no_proxy"`
}

// Instance is the JSON CreateInstance and GetInstance print, and
// ListInstances prints an array of.
type Instance struct {
	ProviderID    string          `json:"provider_id,omitempty"`
	Name          string          `json:"name,omitempty"`
	OSType        string          `json:"os_type,omitempty"`
	OSName        string          `json:"os_name,omitempty"`
	OSVersion     string          `json:"os_version,omitempty"`
	OSArch        string          `json:"os_arch,omitempty"`
	Addresses     []Address       `json:"addresses,omitempty"`
	Status        string          `json:"status,omitempty"`
	ProviderFault json.RawMessage `json:"provider_fault,omitempty"`
}

// Address is one address of an instance.
type Address struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}
