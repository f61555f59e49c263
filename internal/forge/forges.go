// Package forge opens the forge client of each target and the webhook
// parser of each forge family. Every forge quirk stays inside its own
// subpackage (github, gitea); this file only picks one.
package forge

import (
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/gitea"
	"github.com/corral-ci/corral/internal/forge/github"
)

// Registry implements corral.Forges. Clients are made once per target and
// kept, so caches (tokens, ETags) live as long as corral does.
type Registry struct {
	hc      *http.Client
	log     *slog.Logger
	gh      *github.Cache // installation tokens and budgets, shared by every GitHub target
	mu      sync.Mutex
	clients map[string]client // by target id
	rec     corral.CallRecorder
}

var _ corral.Forges = (*Registry)(nil)

// NewRegistry returns a registry whose clients share hc (nil: a client with
// a 30 s timeout).
func NewRegistry(hc *http.Client, log *slog.Logger) *Registry {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{hc: hc, log: log, gh: github.NewCache(), clients: map[string]client{}}
}

// SetRecorder makes every client opened from now on report its API calls
// to rec (metrics). Call it before the first Forge.
func (r *Registry) SetRecorder(rec corral.CallRecorder) {
	r.mu.Lock()
	r.rec = rec
	r.mu.Unlock()
}

// Forge returns the client of target t.
func (r *Registry) Forge(t corral.Target) (corral.Forge, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[t.ID]; ok && reflect.DeepEqual(c.t, t) {
		return c.f, nil
	}
	var f corral.Forge
	var err error
	switch t.Kind {
	case corral.KindGitHub:
		f, err = github.NewClient(t, github.Options{HTTPClient: r.hc, Cache: r.gh, Logger: r.log, Recorder: r.rec})
	case corral.KindGitea, corral.KindForgejo:
		f, err = gitea.NewClient(t, gitea.Options{HTTPClient: r.hc, Logger: r.log, Recorder: r.rec})
	default:
		return nil, fmt.Errorf("target %s: forge kind %q is not known (corral serves: github, gitea, forgejo)", t.ID, t.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.ID, err)
	}
	r.clients[t.ID] = client{t, f}
	return f, nil
}

// Parser returns the webhook parser of a forge family.
func (r *Registry) Parser(k corral.TargetKind) (corral.WebhookParser, error) {
	switch k {
	case corral.KindGitHub:
		return github.Parser{}, nil
	case corral.KindGitea, corral.KindForgejo:
		return gitea.Parser{}, nil
	default:
		return nil, fmt.Errorf("no webhook parser for forge kind %q yet", k)
	}
}

// client is a forge client and the target it was made for: a target
// changed through the API (a new token, URL or App) gets a new client.
type client struct {
	t corral.Target
	f corral.Forge
}
