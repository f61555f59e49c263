package garm

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	pathUnitFile     = "systemd/unit-file"
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
	// Store keeps the grants (table instance_grants), so that every
	// replica answers every instance and a restart loses none.
	Store corral.Store
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
// Grants live in the store, keyed by the SHA-256 of their token, their
// content sealed (AES-256-GCM) with a key derived from the token: the
// store alone cannot open them, any replica shown the token can.
type Metadata struct {
	cfg MetadataConfig
	log *slog.Logger

	mu        sync.Mutex
	events    map[string][]Event // by instance id, this replica's only
	lastSweep time.Time
}

var _ provider.InstanceMetadata = (*Metadata)(nil)

// grant is the sealed content of a grant.
type grant struct {
	Instance string            `json:"instance"`
	Name     string            `json:"name"`
	Pool     string            `json:"pool"`
	Labels   []string          `json:"labels,omitempty"`
	Forge    string            `json:"forge,omitempty"`
	RepoURL  string            `json:"repo_url,omitempty"`
	Kind     string            `json:"kind,omitempty"`     // credentialJIT, credentialToken or ""
	CredEnv  string            `json:"cred_env,omitempty"` // the variable the credential goes in
	Token    string            `json:"token,omitempty"`    // registration token
	JITFiles map[string][]byte `json:"jit_files,omitempty"`
	Command  []string          `json:"command,omitempty"`
	Env      map[string]string `json:"env,omitempty"` // without the credential
	Files    map[string]string `json:"files,omitempty"`
	Deadline time.Time         `json:"deadline,omitzero"`
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
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: the metadata endpoint needs the store", corral.ErrBadInput)
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
	return &Metadata{cfg: cfg, log: cfg.Logger.With("component", "garm-metadata"), events: map[string][]Event{}}, nil
}

// sealKey derives a grant's key from its token.
func sealKey(token string) []byte {
	k := sha256.Sum256([]byte("corral instance grant v1\x00" + token))
	return k[:]
}

func seal(token, instance string, g *grant) ([]byte, error) {
	plain, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey(token))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plain, []byte(instance)), nil
}

func open(token string, sg corral.InstanceGrant) (*grant, error) {
	block, err := aes.NewCipher(sealKey(token))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sg.Sealed) < aead.NonceSize() {
		return nil, errors.New("sealed grant too short")
	}
	plain, err := aead.Open(nil, sg.Sealed[:aead.NonceSize()], sg.Sealed[aead.NonceSize():], []byte(sg.InstanceID))
	if err != nil {
		return nil, err
	}
	var g grant
	if err := json.Unmarshal(plain, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// storeTimeout bounds each store call of a request.
const storeTimeout = 10 * time.Second

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
	sealed, err := seal(token, spec.InstanceID, g)
	if err != nil {
		return provider.MetadataGrant{}, err
	}
	now := m.cfg.Clock.Now()
	h := sha256.Sum256([]byte(token))
	sg := corral.InstanceGrant{Hash: h[:], InstanceID: spec.InstanceID, Sealed: sealed, FetchBy: now.Add(m.cfg.TTL)}
	sg.CallBy = sg.FetchBy
	if spec.Deadline.After(sg.CallBy) {
		sg.CallBy = spec.Deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	sweep := m.sweepDue(now)
	err = m.cfg.Store.Update(ctx, func(tx corral.Tx) error {
		if sweep {
			if _, err := tx.SweepInstanceGrants(ctx, now); err != nil {
				return err
			}
		}
		return tx.PutInstanceGrant(ctx, sg)
	})
	if err != nil {
		return provider.MetadataGrant{}, fmt.Errorf("instance %s: metadata grant: %w", spec.InstanceID, err)
	}
	m.log.Info("instance metadata granted", "instance", spec.InstanceID, "credential", g.Kind, "until", sg.FetchBy)
	return provider.MetadataGrant{MetadataURL: m.cfg.BaseURL + strings.TrimSuffix(MetadataPath, "/"),
		CallbackURL: m.cfg.BaseURL + strings.TrimSuffix(CallbackPath, "/"), Token: token,
		JIT: g.Kind == credentialJIT, RepoURL: g.RepoURL}, nil
}

// sweepDue says whether this Grant also deletes the expired grants (once a
// minute).
func (m *Metadata) sweepDue(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) < time.Minute {
		return false
	}
	m.lastSweep = now
	return true
}

// newGrant sorts spec's bootstrap into garm's pieces: the credential (a
// JIT config's files, or a registration token) apart from the rest.
func newGrant(spec corral.InstanceSpec) (*grant, error) {
	g := &grant{Instance: spec.InstanceID, Name: spec.Name, Pool: spec.PoolID, Labels: spec.Labels,
		Deadline: spec.Deadline, Command: spec.Bootstrap.Command, Env: map[string]string{}, Files: map[string]string{}}
	for k, v := range spec.Bootstrap.Env {
		g.Env[k] = v.Reveal()
	}
	for k, v := range spec.Bootstrap.Files {
		g.Files[k] = v.Reveal()
	}
	env := g.Env
	switch {
	case env[envGitHubJIT] != "":
		files, err := decodeJIT(env[envGitHubJIT])
		if err != nil {
			return nil, fmt.Errorf("%w: instance %s: the GitHub JIT config: %w", corral.ErrBadInput, spec.InstanceID, err)
		}
		g.Kind, g.CredEnv, g.JITFiles, g.Forge = credentialJIT, envGitHubJIT, files, forgeGitHub
		delete(env, envGitHubJIT)
	case env[envGitHubToken] != "":
		g.Kind, g.CredEnv, g.Token, g.Forge = credentialToken, envGitHubToken, env[envGitHubToken], forgeGitHub
		g.RepoURL = env[envGitHubURL]
		delete(env, envGitHubToken)
	case env[envGiteaToken] != "":
		g.Kind, g.CredEnv, g.Token, g.Forge = credentialToken, envGiteaToken, env[envGiteaToken], forgeGitea
		g.RepoURL = env[envGiteaURL]
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
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := m.cfg.Store.Update(ctx, func(tx corral.Tx) error { return tx.DeleteInstanceGrants(ctx, instanceID) }); err != nil {
		// The grant then ends at its TTL.
		m.log.Warn("instance metadata revoke", "instance", instanceID, "err", err)
	}
	m.mu.Lock()
	delete(m.events, instanceID)
	m.mu.Unlock()
}

// Events returns the callbacks of the instance this replica took.
func (m *Metadata) Events(instanceID string) []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events[instanceID]...)
}

// errRefused is a request the token does not allow; reason is logged and
// told to the caller (it names no secret).
type errRefused struct {
	status int
	reason string
}

func (e *errRefused) Error() string { return e.reason }

// lookup finds and opens the grant of r's bearer token.
func (m *Metadata) lookup(r *http.Request) (corral.InstanceGrant, *grant, string, error) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(tok, TokenPrefix) {
		return corral.InstanceGrant{}, nil, "", &errRefused{http.StatusUnauthorized, reasonUnknown}
	}
	h := sha256.Sum256([]byte(tok))
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	var sg corral.InstanceGrant
	err := m.cfg.Store.View(ctx, func(tx corral.ReadTx) error {
		var err error
		sg, err = tx.InstanceGrant(ctx, h[:])
		return err
	})
	switch {
	case errors.Is(err, corral.ErrNotFound):
		return sg, nil, "", &errRefused{http.StatusUnauthorized, reasonUnknown}
	case err != nil:
		return sg, nil, "", err
	}
	g, err := open(tok, sg)
	if err != nil {
		return sg, nil, "", &errRefused{http.StatusUnauthorized, reasonUnknown}
	}
	return sg, g, tok, nil
}

// use records that the grant gave piece: false (and the refusal written)
// if it gave it before.
func (m *Metadata) use(w http.ResponseWriter, r *http.Request, sg corral.InstanceGrant, piece string) bool {
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	err := m.cfg.Store.Update(ctx, func(tx corral.Tx) error { return tx.UseInstanceGrant(ctx, sg.Hash, piece) })
	switch {
	case errors.Is(err, corral.ErrConflict):
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusUnauthorized, reasonUsed + ": " + piece})
		return false
	case errors.Is(err, corral.ErrNotFound):
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusUnauthorized, reasonUnknown})
		return false
	case err != nil:
		m.refuse(w, r, sg.InstanceID, err)
		return false
	}
	if piece != pieceDone {
		m.log.Info("instance metadata fetched", "instance", sg.InstanceID, "piece", piece)
	}
	return true
}

// pieceDone marks a grant whose runner reported its setup over.
const pieceDone = "done"

func (m *Metadata) refuse(w http.ResponseWriter, r *http.Request, inst string, err error) {
	var rf *errRefused
	if !errors.As(err, &rf) {
		m.log.Warn("instance metadata: store", "path", r.URL.Path, "instance", inst, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Service Unavailable", "details": "the store did not answer"})
		return
	}
	m.log.Info("instance metadata refused", "path", r.URL.Path, "instance", inst, "reason", rf.reason, "remote", r.RemoteAddr)
	if rf.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="corral-instance"`)
	}
	writeJSON(w, rf.status, map[string]string{"error": http.StatusText(rf.status), "details": rf.reason})
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
	sg, g, _, err := m.lookup(r)
	switch {
	case err != nil:
		m.refuse(w, r, sg.InstanceID, err)
		return
	case m.cfg.Clock.Now().After(sg.FetchBy):
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusUnauthorized, reasonExpired})
		return
	case slices.Contains(sg.Used, pieceDone):
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusUnauthorized, reasonDone})
		return
	}
	switch {
	case path == pathRunnerMeta:
		writeJSON(w, http.StatusOK, RunnerMetadata{ForgeType: g.Forge, RunnerRegistrationURL: g.RepoURL,
			RunnerName: g.Name, RunnerLabels: g.Labels, JITEnabled: g.Kind == credentialJIT})
	case path == pathRegToken:
		if g.Kind != credentialToken {
			m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusUnauthorized, "this instance has no registration token (JIT or none)"})
			return
		}
		if m.use(w, r, sg, pathRegToken) {
			writeText(w, []byte(g.Token))
		}
	case strings.HasPrefix(path, pathCredentials):
		file := strings.TrimPrefix(path, pathCredentials)
		b, ok := g.JITFiles[file]
		if g.Kind != credentialJIT || !ok {
			m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusNotFound, fmt.Sprintf("no JIT file %q for this instance", file)})
			return
		}
		if m.use(w, r, sg, pathCredentials+file) {
			writeText(w, b)
		}
	case path == pathServiceName:
		writeText(w, []byte("actions.runner."+g.Name))
	case path == pathUnitFile:
		user := r.URL.Query().Get("runAsUser")
		if user == "" {
			user = "runner"
		}
		if !unixUser.MatchString(user) {
			m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusBadRequest, "runAsUser: want a user name of lower-case letters, digits, '_' and '-'"})
			return
		}
		writeText(w, []byte(unitFile(g, user)))
	case path == pathCertBundle:
		writeJSON(w, http.StatusOK, map[string]map[string][]byte{"root-certificates": {}})
	case path == pathBootstrap:
		if !m.use(w, r, sg, pathBootstrap) {
			return
		}
		a := BootstrapAnswer{InstanceID: g.Instance, Command: g.Command, Env: g.Env, Files: g.Files,
			Credential: g.Kind, CredentialEnv: g.CredEnv, Deadline: g.Deadline}
		if a.Env == nil {
			a.Env = map[string]string{}
		}
		if a.Files == nil {
			a.Files = map[string]string{}
		}
		writeJSON(w, http.StatusOK, a)
	default:
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusNotFound, "no such metadata path"})
	}
}

var unixUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// unitFile is the systemd unit garm's userdata installs to run the runner
// it set up under /home/<user> (the GitHub runner's runsvc.sh, or
// gitea-runner's daemon for one job).
func unitFile(g *grant, user string) string {
	dir, start, what := "/home/"+user+"/actions-runner", "/home/"+user+"/actions-runner/runsvc.sh", "GitHub Actions runner"
	if g.Forge == forgeGitea {
		dir, start, what = "/home/"+user+"/gitea-runner", "/home/"+user+"/gitea-runner/gitea-runner daemon --once", "Gitea runner"
	}
	return "[Unit]\nDescription=" + what + " " + g.Name + " (corral)\nAfter=network-online.target\nWants=network-online.target\n\n" +
		"[Service]\nUser=" + user + "\nWorkingDirectory=" + dir + "\nExecStart=" + start + "\n" +
		"KillMode=process\nKillSignal=SIGTERM\nTimeoutStopSec=5min\n\n[Install]\nWantedBy=multi-user.target\n"
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
	sg, _, _, err := m.lookup(r)
	switch {
	case err != nil:
		m.refuse(w, r, sg.InstanceID, err)
		return
	case m.cfg.Clock.Now().After(sg.CallBy):
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusUnauthorized, reasonExpired})
		return
	case path != callbackStatus && path != callbackSysInfo:
		m.refuse(w, r, sg.InstanceID, &errRefused{http.StatusNotFound, "no such callback path"})
		return
	}
	var msg struct {
		Status    string `json:"status"`
		Message   string `json:"message"`
		AgentID   *int64 `json:"agent_id"`
		OSName    string `json:"os_name"`
		OSVersion string `json:"os_version"`
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
			// Setup is over: no more metadata. A second report changes
			// nothing.
			ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
			err := m.cfg.Store.Update(ctx, func(tx corral.Tx) error { return tx.UseInstanceGrant(ctx, sg.Hash, pieceDone) })
			cancel()
			if err != nil && !errors.Is(err, corral.ErrConflict) {
				m.refuse(w, r, sg.InstanceID, err)
				return
			}
		}
	}
	m.mu.Lock()
	if len(m.events[sg.InstanceID]) < 100 {
		m.events[sg.InstanceID] = append(m.events[sg.InstanceID], ev)
	}
	m.mu.Unlock()
	m.log.Info("instance callback", "instance", sg.InstanceID, "kind", path, "status", msg.Status, "message", msg.Message)
	writeJSON(w, http.StatusOK, map[string]string{})
}
