package garm

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// The paths garm's instance userdata calls, below corral's public base
// URL. Metadata answers GETs below MetadataPath and POSTs below
// CallbackPath, each guarded by the instance's own bearer token.
const (
	MetadataPath = "/api/v1/metadata/"
	CallbackPath = "/api/v1/callbacks/"
	// TokenPrefix starts every instance token (recognisable when leaked;
	// never valid as an API token).
	TokenPrefix = "corral_instance_"
	// DefaultGrantTTL is how long an instance may fetch its bootstrap.
	DefaultGrantTTL = 15 * time.Minute
	maxGrants       = 10_000
	maxCallbackBody = 64 << 10
)

// The bootstrap variables that carry a runner credential, by forge.
const (
	envGitHubJIT     = "ACTIONS_RUNNER_INPUT_JITCONFIG" // GitHub just-in-time config
	envGitHubToken   = "ACTIONS_RUNNER_INPUT_TOKEN"     // GitHub registration token (no JIT)
	envGitHubURL     = "ACTIONS_RUNNER_INPUT_URL"
	envGiteaToken    = "CORRAL_RUNNER_TOKEN" // Gitea/Forgejo registration token
	envGiteaURL      = "CORRAL_FORGE_URL"
	credentialJIT    = "jit"
	credentialToken  = "token"
	jitFileRunner    = "runner"
	jitFileCreds     = "credentials"
	jitFileRSAParams = "credentials_rsaparams"
	forgeGitHub      = "github"
	forgeGitea       = "gitea"
	pathBootstrap    = "corral/bootstrap"
	pathRunnerMeta   = "runner-metadata"
	pathRegToken     = "runner-registration-token"
	pathCredentials  = "credentials/"
	pathServiceName  = "system/service-name"
	pathCertBundle   = "system/cert-bundle"
	callbackStatus   = "status"
	callbackSysInfo  = "system-info"
	statusIdle       = "idle"
	statusFailed     = "failed"
	statusInstalling = "installing"
	statusActive     = "active"
	statusTerminated = "terminated"
	reasonUnknown    = "unknown token"
	reasonExpired    = "expired token"
	reasonUsed       = "already fetched"
	reasonDone       = "the runner reported its setup done"
)

// MetadataConfig configures the metadata endpoint.
type MetadataConfig struct {
	// BaseURL is corral's address as instances reach it, e.g.
	// http://10.0.0.1:8080 (no path).
	BaseURL string
	// TTL bounds how long after its grant an instance may fetch its
	// bootstrap (default 15 min). Callbacks are taken until the instance's
	// deadline.
	TTL    time.Duration
	Clock  corral.Clock
	Logger *slog.Logger
}

// Metadata is corral's metadata endpoint for instances that fetch their
// runner credential themselves: garm's paths (runner-metadata,
// runner-registration-token, credentials/<file> of a GitHub JIT config,
// system/service-name, system/cert-bundle, and the status and
// system-info callbacks), plus corral/bootstrap, corral's own bootstrap
// (command, environment and files of the runner) for images built for
// corral. Every request needs the token granted to exactly one instance;
// the credential and the bootstrap are given once; a token is refused
// after its TTL, after Revoke (the instance is deleted) and, for the
// metadata paths, once the runner reported its setup done.
//
// Grants live in memory, as the runner download grants do: a corral
// restart ends them, and an instance that had not fetched its credential
// by then never comes online and is replaced by the startup timeout.
type Metadata struct {
	cfg MetadataConfig
	log *slog.Logger

	mu     sync.Mutex
	grants map[[32]byte]*grant // by token hash
	byInst map[string][32]byte // instance id -> token hash
}

var _ provider.InstanceMetadata = (*Metadata)(nil)

type grant struct {
	instance, name, pool string
	labels               []string
	forge                string
	repoURL              string
	kind                 string            // credentialJIT, credentialToken or ""
	credEnv              string            // the variable the credential goes in
	token                string            // registration token
	jitFiles             map[string][]byte // credentials/<file>
	boot                 corral.Bootstrap  // without the credential
	deadline             time.Time
	fetchBy, callBy      time.Time
	used                 map[string]bool
	done                 bool
	events               []Event
}

// Event is one callback an instance made.
type Event struct {
	At      time.Time
	Kind    string // status or system-info
	Status  string
	Message string
	AgentID *int64
}

// NewMetadata checks cfg and returns the endpoint.
func NewMetadata(cfg MetadataConfig) (*Metadata, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: metadata base URL %q: want http(s)://host[:port]", corral.ErrBadInput, cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/")
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultGrantTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Metadata{cfg: cfg, log: cfg.Logger.With("component", "garm-metadata"),
		grants: map[[32]byte]*grant{}, byInst: map[string][32]byte{}}, nil
}

// Grant keeps spec's bootstrap for its instance and returns the URLs and
// a new token. A grant made again for the same instance replaces the old
// one (its token stops working).
func (m *Metadata) Grant(spec corral.InstanceSpec) (provider.MetadataGrant, error) {
	g, err := newGrant(spec)
	if err != nil {
		return provider.MetadataGrant{}, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return provider.MetadataGrant{}, err
	}
	token := TokenPrefix + hex.EncodeToString(b)
	now := m.cfg.Clock.Now()
	g.fetchBy = now.Add(m.cfg.TTL)
	g.callBy = g.fetchBy
	if spec.Deadline.After(g.callBy) {
		g.callBy = spec.Deadline
	}
	h := sha256.Sum256([]byte(token))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	if len(m.grants) >= maxGrants {
		return provider.MetadataGrant{}, fmt.Errorf("%w: %d instance metadata grants outstanding", corral.ErrLimit, len(m.grants))
	}
	if old, ok := m.byInst[spec.InstanceID]; ok {
		delete(m.grants, old)
	}
	m.grants[h] = g
	m.byInst[spec.InstanceID] = h
	m.log.Info("instance metadata granted", "instance", spec.InstanceID, "credential", g.kind, "until", g.fetchBy)
	return provider.MetadataGrant{MetadataURL: m.cfg.BaseURL + strings.TrimSuffix(MetadataPath, "/"),
		CallbackURL: m.cfg.BaseURL + strings.TrimSuffix(CallbackPath, "/"), Token: token,
		JIT: g.kind == credentialJIT, RepoURL: g.repoURL}, nil
}

// newGrant sorts spec's bootstrap into garm's pieces: the credential (a
// JIT config's files, or a registration token) apart from the rest.
func newGrant(spec corral.InstanceSpec) (*grant, error) {
	g := &grant{instance: spec.InstanceID, name: spec.Name, pool: spec.PoolID, labels: spec.Labels,
		deadline: spec.Deadline, used: map[string]bool{}}
	env := make(map[string]corral.Secret, len(spec.Bootstrap.Env))
	for k, v := range spec.Bootstrap.Env {
		env[k] = v
	}
	g.boot = corral.Bootstrap{RunnerID: spec.Bootstrap.RunnerID, Command: spec.Bootstrap.Command, Env: env, Files: spec.Bootstrap.Files}
	switch {
	case env[envGitHubJIT] != "":
		files, err := decodeJIT(env[envGitHubJIT].Reveal())
		if err != nil {
			return nil, fmt.Errorf("%w: instance %s: the GitHub JIT config: %w", corral.ErrBadInput, spec.InstanceID, err)
		}
		g.kind, g.credEnv, g.jitFiles, g.forge = credentialJIT, envGitHubJIT, files, forgeGitHub
		delete(env, envGitHubJIT)
	case env[envGitHubToken] != "":
		g.kind, g.credEnv, g.token, g.forge = credentialToken, envGitHubToken, env[envGitHubToken].Reveal(), forgeGitHub
		g.repoURL = env[envGitHubURL].Reveal()
		delete(env, envGitHubToken)
	case env[envGiteaToken] != "":
		g.kind, g.credEnv, g.token, g.forge = credentialToken, envGiteaToken, env[envGiteaToken].Reveal(), forgeGitea
		g.repoURL = env[envGiteaURL].Reveal()
		delete(env, envGiteaToken)
	}
	return g, nil
}

// decodeJIT splits an encoded JIT config (base64 of a JSON object of
// ".runner", ".credentials" and ".credentials_rsaparams", each base64)
// into the files garm's userdata fetches.
func decodeJIT(enc string) (map[string][]byte, error) {
	outer, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	var parts map[string]string
	if err := json.Unmarshal(outer, &parts); err != nil {
		return nil, fmt.Errorf("not a JSON object of files: %w", err)
	}
	files := map[string][]byte{}
	for name, v := range parts {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("file %s: not base64: %w", name, err)
		}
		files[strings.TrimPrefix(name, ".")] = b
	}
	if files[jitFileRunner] == nil || files[jitFileCreds] == nil {
		return nil, errors.New("no .runner or no .credentials")
	}
	return files, nil
}

// EncodeJIT joins the files of a JIT config again, as the runner reads it
// (ACTIONS_RUNNER_INPUT_JITCONFIG): what an instance does with the files
// it fetched.
func EncodeJIT(files map[string][]byte) string {
	parts := map[string]string{}
	for name, b := range files {
		parts["."+name] = base64.StdEncoding.EncodeToString(b)
	}
	outer, _ := json.Marshal(parts)
	return base64.StdEncoding.EncodeToString(outer)
}

// Revoke ends the instance's grant.
func (m *Metadata) Revoke(instanceID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.byInst[instanceID]; ok {
		delete(m.grants, h)
		delete(m.byInst, instanceID)
	}
}

// Events returns the callbacks the instance made while its grant lived.
func (m *Metadata) Events(instanceID string) []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.byInst[instanceID]
	if !ok {
		return nil
	}
	return append([]Event(nil), m.grants[h].events...)
}

func (m *Metadata) sweepLocked(now time.Time) {
	for h, g := range m.grants {
		if now.After(g.callBy) {
			delete(m.grants, h)
			if m.byInst[g.instance] == h {
				delete(m.byInst, g.instance)
			}
		}
	}
}

// lookup finds the grant of r's bearer token. The caller holds m.mu.
func (m *Metadata) lookupLocked(r *http.Request) (*grant, string) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(tok, TokenPrefix) {
		return nil, reasonUnknown
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	g, ok := m.grants[h]
	if !ok {
		return nil, reasonUnknown
	}
	// The map lookup found it by hash; compare once more in constant time.
	if want := m.byInst[g.instance]; subtle.ConstantTimeCompare(want[:], h[:]) != 1 {
		return nil, reasonUnknown
	}
	return g, ""
}

func (m *Metadata) refuse(w http.ResponseWriter, r *http.Request, g *grant, status int, reason string) {
	inst := ""
	if g != nil {
		inst = g.instance
	}
	m.log.Info("instance metadata refused", "path", r.URL.Path, "instance", inst, "reason", reason, "remote", r.RemoteAddr)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="corral-instance"`)
	}
	writeJSON(w, status, map[string]string{"error": http.StatusText(status), "details": reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeText(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// BootstrapAnswer is corral/bootstrap's answer: the runner's command,
// environment and files without the credential, which the instance
// fetches at garm's paths and puts in CredentialEnv.
type BootstrapAnswer struct {
	InstanceID string            `json:"instance_id"` // corral's id (CORRAL_INSTANCE_ID)
	Command    []string          `json:"command"`
	Env        map[string]string `json:"env"`
	Files      map[string]string `json:"files"`
	// Credential says how the instance gets its runner credential:
	// "jit" (credentials/<file>, joined with EncodeJIT), "token"
	// (runner-registration-token) or "" (none).
	Credential    string    `json:"credential"`
	CredentialEnv string    `json:"credential_env,omitempty"`
	Deadline      time.Time `json:"deadline,omitzero"`
}

// RunnerMetadata is runner-metadata's answer (garm's field names).
type RunnerMetadata struct {
	ForgeType             string   `json:"forge_type"`
	RunnerRegistrationURL string   `json:"runner_registration_url"`
	RunnerName            string   `json:"runner_name"`
	RunnerLabels          []string `json:"runner_labels,omitempty"`
	JITEnabled            bool     `json:"jit_enabled"`
	AgentMode             bool     `json:"agent_mode"`
}

// ServeMetadata answers GET MetadataPath<path>.
func (m *Metadata) ServeMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(MetadataPath, "/")), "/")
	m.mu.Lock()
	defer m.mu.Unlock()
	g, reason := m.lookupLocked(r)
	now := m.cfg.Clock.Now()
	switch {
	case g == nil:
		m.refuse(w, r, nil, http.StatusUnauthorized, reason)
		return
	case now.After(g.fetchBy):
		m.refuse(w, r, g, http.StatusUnauthorized, reasonExpired)
		return
	case g.done:
		m.refuse(w, r, g, http.StatusUnauthorized, reasonDone)
		return
	}
	// once serves a piece a single time.
	once := func(piece string) bool {
		if g.used[piece] {
			m.refuse(w, r, g, http.StatusUnauthorized, reasonUsed+": "+piece)
			return false
		}
		g.used[piece] = true
		m.log.Info("instance metadata fetched", "instance", g.instance, "piece", piece)
		return true
	}
	switch {
	case path == pathRunnerMeta:
		writeJSON(w, http.StatusOK, RunnerMetadata{ForgeType: g.forge, RunnerRegistrationURL: g.repoURL,
			RunnerName: g.name, RunnerLabels: g.labels, JITEnabled: g.kind == credentialJIT})
	case path == pathRegToken:
		if g.kind != credentialToken {
			m.refuse(w, r, g, http.StatusUnauthorized, "this instance has no registration token (JIT or none)")
			return
		}
		if once(pathRegToken) {
			writeText(w, []byte(g.token))
		}
	case strings.HasPrefix(path, pathCredentials):
		file := strings.TrimPrefix(path, pathCredentials)
		b, ok := g.jitFiles[file]
		if g.kind != credentialJIT || !ok {
			m.refuse(w, r, g, http.StatusNotFound, fmt.Sprintf("no JIT file %q for this instance", file))
			return
		}
		if once(pathCredentials + file) {
			writeText(w, b)
		}
	case path == pathServiceName:
		writeText(w, []byte("actions.runner."+g.name))
	case path == pathCertBundle:
		writeJSON(w, http.StatusOK, map[string]map[string][]byte{"root-certificates": {}})
	case path == pathBootstrap:
		if !once(pathBootstrap) {
			return
		}
		a := BootstrapAnswer{InstanceID: g.instance, Command: g.boot.Command, Env: map[string]string{}, Files: map[string]string{},
			Credential: g.kind, CredentialEnv: g.credEnv, Deadline: g.deadline}
		for k, v := range g.boot.Env {
			a.Env[k] = v.Reveal()
		}
		for k, v := range g.boot.Files {
			a.Files[k] = v.Reveal()
		}
		writeJSON(w, http.StatusOK, a)
	default:
		m.refuse(w, r, g, http.StatusNotFound, "no such metadata path")
	}
}

// ServeCallback answers POST CallbackPath{status,system-info}.
func (m *Metadata) ServeCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(CallbackPath, "/")), "/")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCallbackBody+1))
	if err != nil || len(body) > maxCallbackBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body too large or unreadable"})
		return
	}
	var msg struct {
		Status    string `json:"status"`
		Message   string `json:"message"`
		AgentID   *int64 `json:"agent_id"`
		OSName    string `json:"os_name"`
		OSVersion string `json:"os_version"`
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, reason := m.lookupLocked(r)
	switch {
	case g == nil:
		m.refuse(w, r, nil, http.StatusUnauthorized, reason)
		return
	case m.cfg.Clock.Now().After(g.callBy):
		m.refuse(w, r, g, http.StatusUnauthorized, reasonExpired)
		return
	case path != callbackStatus && path != callbackSysInfo:
		m.refuse(w, r, g, http.StatusNotFound, "no such callback path")
		return
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Bad Request", "details": "body is not JSON: " + err.Error()})
		return
	}
	ev := Event{At: m.cfg.Clock.Now(), Kind: path, Status: msg.Status, Message: msg.Message, AgentID: msg.AgentID}
	if path == callbackSysInfo {
		ev.Message = strings.TrimSpace(msg.OSName + " " + msg.OSVersion)
	} else {
		switch msg.Status {
		case statusInstalling, statusIdle, statusFailed, statusActive, statusTerminated:
		default:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Bad Request",
				"details": fmt.Sprintf("status %q: want installing, idle, active, failed or terminated", msg.Status)})
			return
		}
		if msg.Status == statusIdle || msg.Status == statusFailed {
			g.done = true // setup is over: no more metadata
		}
	}
	if len(g.events) < 100 {
		g.events = append(g.events, ev)
	}
	m.log.Info("instance callback", "instance", g.instance, "kind", path, "status", msg.Status, "message", msg.Message)
	writeJSON(w, http.StatusOK, map[string]string{})
}
