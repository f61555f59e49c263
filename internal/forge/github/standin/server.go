// Package standin is the stand-in GitHub: a local, in-process fake of the
// parts of GitHub's REST API, webhooks and actions runner protocol that
// corral uses. GitHub cannot run here, so every GitHub test in corral talks
// to this package and nothing else fakes GitHub.
//
// The HTTP API follows the OpenAPI subset in
// /work/shared/fixtures/github/openapi-actions-runners.json: GitHub's real
// paths, status codes, headers (Link, X-RateLimit-*, ETag,
// X-GitHub-Request-Id) and JSON shapes, at repository, organization and
// enterprise scope, mounted at "/" (github.com style) and under "/api/v3"
// (GHES). Webhooks are built from GitHub's own example payloads
// (testdata/), signed like GitHub signs them. RunRunner is the simulated
// actions runner; its protocol with the stand-in (runner.go) is invented,
// since the real one is not a public API.
//
// Server is an http.Handler; New does no I/O and starts no goroutine:
// the webhook sender and the heartbeat checker start with the first
// webhook or runner, and Close stops them.
package standin

import (
	"crypto/rsa"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// CurrentRunnerVersion is the runner version the stand-in advertises in
// the downloads list and the simulated runner reports by default.
const CurrentRunnerVersion = "2.331.0"

// Options configure a Server.
type Options struct {
	Seed int64
	// GHESVersion "" means github.com. Otherwise the stand-in is a GHES
	// of that version ("3.9", "3.17"): answers under /api/v3 carry
	// X-GitHub-Enterprise-Version, GET /api/v3/meta reports it, and below
	// 3.10 generate-jitconfig answers 404.
	GHESVersion string
	Logger      *slog.Logger
	// HTTPClient sends webhooks (default: GitHub's 10 s delivery timeout).
	HTTPClient *http.Client
	// RateLimit is the primary limit per hour per credential (default 5000).
	RateLimit int
	// MinRunnerVersion, when set, refuses messages (jobs) to runners of a
	// lower version, like GitHub's minimum version enforcement.
	MinRunnerVersion string
	// HeartbeatTimeout fails the job of a busy runner silent this long
	// (default 5 s); an idle runner that stops polling goes offline.
	HeartbeatTimeout time.Duration
	// RunListCap lowers the 1,000 results GitHub returns at most for a run
	// search filtered by status (tests; 0: 1,000).
	RunListCap int
	// PointsPerMinute enforces GitHub's secondary limit on points per
	// endpoint per minute (GitHub: 900; a GET costs 1 point, a POST,
	// PATCH, PUT or DELETE 5), per credential, over any 60 s: a call that
	// would pass it is refused with a secondary rate limit (403, Retry-
	// After until it fits) and counted in Stats.PointsRefused. 0: not
	// enforced (most tests: they are about other things).
	PointsPerMinute int
	// Now is the clock for tokens, JWTs and rate-limit windows (default
	// time.Now). Runner heartbeats use real time.
	Now func() time.Time
	// SessionTTL is how long a scale set's message session lives without
	// a poll (default DefaultSessionTTL); ScaleSetLongPoll how long a
	// message poll waits before 202 (default 2 s; GitHub: about 50 s).
	SessionTTL, ScaleSetLongPoll time.Duration
}

// JobSpec describes a job to queue.
type JobSpec struct {
	Name     string
	Labels   []string
	Duration time.Duration
}

// Faults the stand-in injects. Rates are probabilities in [0,1].
type Faults struct {
	ServerErrorRate float64 // API calls answer 500/502/503
	// SecondaryBurst: the next N API calls are refused by a secondary rate
	// limit, alternately 403 and 429, with Retry-After (SecondaryRetryAfter,
	// default 1 s, rounded up to whole seconds).
	SecondaryBurst      int
	SecondaryRetryAfter time.Duration
	// SecondaryNoRetryAfter: the burst's refusals carry no Retry-After,
	// as GitHub may send them; a client must then wait at least a minute
	// (sooner counts as a violation) and back off exponentially.
	SecondaryNoRetryAfter bool
	// PrimaryExhaust: every credential's primary limit is used up from the
	// moment of SetFaults until PrimaryResetIn (default 2 s) later; the
	// answers say remaining 0 and X-RateLimit-Reset at that instant.
	PrimaryExhaust bool
	PrimaryResetIn time.Duration
	Latency        time.Duration // added to every API call
	// Webhooks: dropped (never sent nor listed), duplicated (sent twice,
	// same GUID), reordered (held back until after a later one), and
	// failed (listed as failed by the deliveries API, not sent).
	DropRate, DuplicateRate, ReorderRate, FailDeliveryRate float64
	// MaxDelay holds each webhook back a random time up to it (delay.go).
	MaxDelay time.Duration
	// LongPollFailRate fails scale-set message polls with 503, as a
	// broker timeout would.
	LongPollFailRate float64
}

// WebhookStats counts webhook deliveries. Sent counts successful HTTP
// attempts, Failed failed ones plus FaultFailed (recorded failed, not sent).
type WebhookStats struct {
	Sent, Dropped, Duplicated, Reordered, Failed, FaultFailed, Redelivered, Pending int
	Delayed                                                                         int // held back by Faults.MaxDelay
}

// Stats is a snapshot of the stand-in's counters.
type Stats struct {
	Calls map[string]int // per endpoint, e.g. "POST generate-jitconfig"
	// NotModified counts, per endpoint, the calls of Calls answered 304
	// to a conditional GET (GitHub does not count them against the
	// primary rate limit).
	NotModified       map[string]int
	CallsByCredential map[string]int // "app:ID", "installation:ID", PATCredential(token)
	TokenMints        map[int64]int  // installation id -> access tokens minted
	PeakRunners       int            // most runners connected and not finished at once
	AliveRunners      int
	Registered        int           // current runner registrations, all scopes
	Completions       map[int64]int // job id -> times completed (must be 1)
	Webhooks          WebhookStats
	// RateLimitViolations counts API calls made while a Retry-After the
	// stand-in sent had not elapsed, or after it had answered remaining 0
	// and before the reset; Violations describes each one.
	RateLimitViolations int
	Violations          []string
	// PointsRefused counts calls refused by Options.PointsPerMinute.
	PointsRefused int
}

// JobInfo is the stand-in's view of one job.
type JobInfo struct {
	ID, RunID                        int64
	RunAttempt                       int
	Repo, Name                       string
	Labels                           []string
	Status, Conclusion               string
	RunnerID                         int64
	RunnerName                       string
	Completions                      int
	QueuedAt, StartedAt, CompletedAt time.Time
}

// RunnerInfo is the stand-in's view of one runner, registered or removed.
type RunnerInfo struct {
	ID         int64
	Name       string
	Scope      string // "repos/o/r", "orgs/o" or "enterprises/e"
	Labels     []string
	Version    string
	Registered bool // still registered at GitHub
	Online     bool // connected and not finished
	Busy       bool
	JobID      int64
	Legacy     bool // registered with config.sh and a registration token
}

// Server is the stand-in GitHub.
type Server struct {
	opt     Options
	log     *slog.Logger
	now     func() time.Time
	hbTime  time.Duration
	handler http.Handler
	out     *sender

	mu            sync.Mutex
	rng           *rand.Rand
	faults        Faults
	burstLeft     int
	burstN        int
	exhaustTill   time.Time
	repos         map[string]*repo // by full name
	orgs          map[string]*org
	ents          map[string]*enterprise
	pats          map[string]*pat
	apps          map[int64]*app
	insts         map[int64]*installation
	instTokens    map[string]*instToken
	regTokens     map[string]*regToken
	hooks         map[int64]*hook
	runs          map[int64]*run
	jobs          map[int64]*job
	runners       map[int64]*runner
	byCred        map[string]*runner
	bySession     map[string]*runner
	buckets       map[string]*bucket
	points        map[string]*pointsWindow // credential + endpoint
	pointsRefused int
	notModified   map[string]int // per endpoint: 304 answers
	calls         map[string]int
	callsByCred   map[string]int
	mints         map[int64]int
	labelIDs      map[string]int64
	violations    []string
	apiVersions   map[string]int            // X-GitHub-Api-Version sent -> requests
	manifests     map[string]*manifestGrant // App manifest codes not yet converted
	ids           int64                     // small ids (repos, orgs, hooks)
	nextJob       int64
	nextRun       int64
	nextRunner    int64
	nextReq       int64
	nextDelivery  int64
	alive, peak   int
	changed       chan struct{}
	ss            *ssState // runner scale sets (scaleset.go), made on first use

	startOnce sync.Once
	closeOnce sync.Once
	closed    bool
	done      chan struct{}
	wg        sync.WaitGroup
}

type repo struct {
	id          int64
	owner, name string
	// archived and disabled (SetRepoState); created is when AddRepo ran.
	archived, disabled bool
	created            time.Time
}

func (r *repo) full() string { return r.owner + "/" + r.name }

type org struct {
	id         int64
	login      string
	enterprise string
}

type enterprise struct {
	id   int64
	slug string
}

type pat struct {
	scopes []string
}

type app struct {
	id       int64
	clientID string
	slug     string
	key      *rsa.PublicKey
	hook     *hook
}

type installation struct {
	id, appID int64
	account   string
	repos     []string // full names; nil = all repositories of the account
	created   time.Time
}

type instToken struct {
	inst    *installation
	expires time.Time
	repos   []string          // nil = every repository of the installation
	perms   map[string]string // permission -> read|write
}

type regToken struct {
	scope   scope
	expires time.Time
	remove  bool
}

type run struct {
	id, number int64
	attempt    int // run_attempt: 1, then one more per re-run (rerun.go)
	repo       *repo
	created    time.Time
	updated    time.Time
	jobs       []*job
}

type job struct {
	id          int64
	run         *run
	attempt     int // the run attempt that created the job
	name        string
	labels      []string
	duration    time.Duration
	status      string
	conclusion  string
	created     time.Time
	started     time.Time
	completed   time.Time
	runner      *runner
	completions int
	// Scale-set mode: the scale set the job is offered to, its runner
	// request id there, and whether the scale set acquired it.
	set       *scaleSet
	requestID int64
	acquired  bool
}

type runner struct {
	id         int64
	name       string
	scope      scope
	labels     []string
	groupID    int64
	cred       string // one-time credential in the JIT config
	session    string
	version    string
	legacy     bool
	registered bool
	connected  bool
	finished   bool
	busy       bool
	job        *job
	lastSeen   time.Time
	set        *scaleSet // made by a scale set's generatejitconfig
}

func (r *runner) alive() bool { return r.connected && !r.finished }

// New assembles a stand-in GitHub. It does no I/O and starts nothing.
func New(opt Options) *Server {
	s := &Server{
		opt:          opt,
		log:          opt.Logger,
		now:          opt.Now,
		hbTime:       opt.HeartbeatTimeout,
		rng:          rand.New(rand.NewPCG(uint64(opt.Seed), 0x6768737461)),
		repos:        map[string]*repo{},
		orgs:         map[string]*org{},
		ents:         map[string]*enterprise{},
		pats:         map[string]*pat{},
		apps:         map[int64]*app{},
		insts:        map[int64]*installation{},
		instTokens:   map[string]*instToken{},
		regTokens:    map[string]*regToken{},
		hooks:        map[int64]*hook{},
		runs:         map[int64]*run{},
		jobs:         map[int64]*job{},
		runners:      map[int64]*runner{},
		byCred:       map[string]*runner{},
		bySession:    map[string]*runner{},
		buckets:      map[string]*bucket{},
		points:       map[string]*pointsWindow{},
		notModified:  map[string]int{},
		calls:        map[string]int{},
		callsByCred:  map[string]int{},
		mints:        map[int64]int{},
		labelIDs:     map[string]int64{"self-hosted": 1, "linux": 2, "x64": 3, "arm64": 4, "macos": 5, "windows": 6},
		ids:          1000,
		nextJob:      14_541_957_942, // above 2^31, like GitHub's
		nextRun:      5_373_506_832,
		nextRunner:   20,
		nextDelivery: 21_000_000_000,
		changed:      make(chan struct{}),
		done:         make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "github-standin")
	if s.now == nil {
		s.now = time.Now
	}
	if s.hbTime <= 0 {
		s.hbTime = 5 * time.Second
	}
	if s.opt.RateLimit <= 0 {
		s.opt.RateLimit = 5000
	}
	hc := opt.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s.out = newSender(hc, s.log, s.done)
	s.out.record = s.recordDelivery
	s.handler = s.routes()
	return s
}

// ServeHTTP serves the REST API (at / and under /api/v3) and the runner
// protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) newIDLocked() int64 {
	s.ids++
	return s.ids
}

func (s *Server) orgLocked(login string) *org {
	o := s.orgs[strings.ToLower(login)]
	if o == nil {
		o = &org{id: s.newIDLocked(), login: login}
		s.orgs[strings.ToLower(login)] = o
	}
	return o
}

// AddRepo creates repository owner/name; the organization owner exists
// implicitly.
func (s *Server) AddRepo(owner, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgLocked(owner)
	full := strings.ToLower(owner + "/" + name)
	if s.repos[full] == nil {
		s.repos[full] = &repo{id: s.newIDLocked(), owner: owner, name: name, created: s.now().UTC().Truncate(time.Second)}
	}
}

// AddEnterprise creates enterprise slug owning the given organizations.
func (s *Server) AddEnterprise(slug string, orgs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ents[strings.ToLower(slug)] == nil {
		s.ents[strings.ToLower(slug)] = &enterprise{id: s.newIDLocked(), slug: slug}
	}
	for _, o := range orgs {
		s.orgLocked(o).enterprise = slug
	}
}

// AddPAT accepts token as a personal access token. With scopes it is a
// classic PAT ("repo", "admin:org", "manage_runners:enterprise", ...);
// without, a fine-grained one with every repository and organization
// permission, refused on /enterprises like GitHub refuses it.
func (s *Server) AddPAT(token string, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pats[token] = &pat{scopes: append([]string(nil), scopes...)}
}

// PATCredential is the key of a PAT in Stats.CallsByCredential (a hash:
// the token itself is never shown).
func PATCredential(token string) string { return "pat:" + shortHash(token) }

// AddApp registers a GitHub App: its RS256 public key verifies the app's
// JWTs (iss = app id or AppClientID), and its webhook (if webhookURL is
// set) receives the events of its installations.
func (s *Server) AddApp(appID int64, key *rsa.PublicKey, webhookURL string, secret corral.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &app{id: appID, clientID: fmt.Sprintf("Iv23li%010d", appID), slug: fmt.Sprintf("corral-app-%d", appID), key: key}
	if webhookURL != "" {
		a.hook = &hook{id: s.newIDLocked(), kind: hookApp, appID: appID, url: webhookURL, secret: secret}
		s.hooks[a.hook.id] = a.hook
	}
	s.apps[appID] = a
}

// AppClientID returns the client id of an app ("" if unknown).
func (s *Server) AppClientID(appID int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appID]; a != nil {
		return a.clientID
	}
	return ""
}

// Install installs app appID on account (an organization) as installation
// installationID, on the given repositories ("name" or "owner/name"), or
// on all of the account's repositories when none are given.
func (s *Server) Install(appID, installationID int64, account string, repos ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgLocked(account)
	in := &installation{id: installationID, appID: appID, account: account, created: s.now().UTC()}
	for _, r := range repos {
		if !strings.Contains(r, "/") {
			r = account + "/" + r
		}
		in.repos = append(in.repos, strings.ToLower(r))
	}
	s.insts[installationID] = in
}

// AddHook adds a repository ("o/r") or organization ("o") webhook that
// receives workflow_job and workflow_run events, and returns its id.
func (s *Server) AddHook(scope, webhookURL string, secret corral.Secret) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &hook{id: s.newIDLocked(), url: webhookURL, secret: secret, target: strings.ToLower(scope), kind: hookOrg}
	if strings.Contains(scope, "/") {
		h.kind = hookRepo
	}
	s.hooks[h.id] = h
	return h.id
}

// SetFaults replaces the faults. PrimaryExhaust starts its window now.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.burstLeft = f.SecondaryBurst
	s.exhaustTill = time.Time{}
	if f.PrimaryExhaust {
		d := f.PrimaryResetIn
		if d <= 0 {
			d = 2 * time.Second
		}
		s.exhaustTill = s.now().Add(d)
	}
}

// Close stops the webhook sender and the heartbeat checker, wakes long
// polls and waits for its goroutines. Webhooks not yet sent are dropped.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		s.notifyLocked()
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func (s *Server) startLocked() {
	if s.closed {
		return
	}
	s.startOnce.Do(func() {
		s.out.start(&s.wg)
		s.wg.Add(1)
		go s.checkHeartbeats()
	})
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
