// Package auth guards corral's HTTP API with bearer tokens. A token's
// secret is shown once, when it is made; the store keeps only its SHA-256.
// Each route declares an Access rule, and Guard answers 401 for a missing,
// unknown, expired or revoked token and 403 for a token whose scope does
// not cover the rule, with the one error body of httperr.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// Access is what a route demands of its caller.
type Access int

// The access rules, from open to closed.
const (
	// Public: no token (health, readiness, runner downloads that check
	// their own per-instance grants).
	Public Access = iota
	// WebhookSignature: no token; the handler checks the forge's HMAC
	// signature.
	WebhookSignature
	// Metrics: the metrics scope, or admin.
	Metrics
	// TenantRead: a tenant-read, tenant-admin or admin token; a tenant
	// token sees its own tenant's objects only.
	TenantRead
	// TenantAdmin: a tenant-admin or admin token.
	TenantAdmin
	// Admin: an admin token.
	Admin
	// InstanceToken: no API token; the handler checks the per-instance
	// token corral granted one instance (the metadata endpoint of
	// instances that fetch their own bootstrap). API tokens never pass.
	InstanceToken
)

var accessNames = [...]string{"public", "webhook-signature", "metrics", "tenant-read", "tenant-admin", "admin", "instance-token"}

func (a Access) String() string {
	if int(a) < len(accessNames) {
		return accessNames[a]
	}
	return fmt.Sprintf("access(%d)", int(a))
}

// NeedsToken says whether the rule asks for a bearer token.
func (a Access) NeedsToken() bool { return a >= Metrics && a <= Admin }

// Allows says whether a token of scope s passes the rule.
func (a Access) Allows(s corral.TokenScope) bool {
	switch a {
	case Public, WebhookSignature:
		return true
	case Metrics:
		return s == corral.ScopeMetrics || s == corral.ScopeAdmin
	case TenantRead:
		return s == corral.ScopeAdmin || s == corral.ScopeTenantAdmin || s == corral.ScopeTenantRead
	case TenantAdmin:
		return s == corral.ScopeAdmin || s == corral.ScopeTenantAdmin
	case Admin:
		return s == corral.ScopeAdmin
	}
	return false
}

// SecretPrefix starts every token secret, so that a leaked one is easy to
// recognise (and to search for in logs and repositories).
const SecretPrefix = "corral_"

// Hash is the SHA-256 of a secret: what the store keeps.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// New makes a token: its secret (32 random bytes, to show once) and the
// row to store. expires 0 means it never expires.
func New(name string, scope corral.TokenScope, tenantID string, expires time.Duration, now time.Time) (string, corral.Token, error) {
	if err := scope.Valid(tenantID); err != nil {
		return "", corral.Token{}, err
	}
	if expires < 0 {
		return "", corral.Token{}, fmt.Errorf("token expiry %s is negative: %w", expires, corral.ErrBadInput)
	}
	var raw [32]byte
	var id [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", corral.Token{}, err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return "", corral.Token{}, err
	}
	secret := SecretPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	tk := corral.Token{ID: "tok_" + hex.EncodeToString(id[:]), Name: name, Scope: scope, TenantID: tenantID,
		Hash: Hash(secret), CreatedAt: now.UTC().Truncate(time.Microsecond)}
	if expires > 0 {
		tk.ExpiresAt = tk.CreatedAt.Add(expires)
	}
	return secret, tk, nil
}

type ctxKey struct{}

// FromContext returns the token of an authenticated request.
func FromContext(ctx context.Context) (corral.Token, bool) {
	tk, ok := ctx.Value(ctxKey{}).(corral.Token)
	return tk, ok
}

// TenantOf returns the tenant a request is confined to: the tenant of a
// tenant token, or "" (every tenant) for an admin token or a public route.
func TenantOf(ctx context.Context) string {
	tk, _ := FromContext(ctx)
	return tk.TenantID
}

// Visible says whether a request may see an object of tenant tenantID.
func Visible(ctx context.Context, tenantID string) bool {
	t := TenantOf(ctx)
	return t == "" || t == tenantID
}

// WithToken returns ctx carrying tk (tests of handlers).
func WithToken(ctx context.Context, tk corral.Token) context.Context {
	return context.WithValue(ctx, ctxKey{}, tk)
}

// touchEvery is how stale a token's last-use time may get: one write per
// token per minute at most, not one per request.
const touchEvery = time.Minute

// Guard checks requests against the store's tokens.
type Guard struct {
	Store  corral.Store
	Clock  corral.Clock
	Logger *slog.Logger
}

// Wrap guards h with the rule acc. Public and webhook routes pass through
// untouched (no header is read).
func (g *Guard) Wrap(acc Access, h http.Handler) http.Handler {
	if !acc.NeedsToken() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tk, err := g.Check(r, acc)
		if err != nil {
			if errors.Is(err, corral.ErrUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="corral"`)
			}
			// A known token refused (expired, revoked, wrong scope) is
			// worth an operator's look; anonymous noise only at debug.
			// The message names a token by id, never by its secret.
			level := slog.LevelDebug
			if tk.ID != "" {
				level = slog.LevelInfo
			}
			reqid.Logger(r, g.log()).Log(r.Context(), level, "api request refused", "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr, "status", httperr.Status(err), "err", err)
			httperr.Write(w, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(WithToken(r.Context(), tk)))
	})
}

// Check authenticates r for the rule acc: an error wrapping
// ErrUnauthorized (no usable token), ErrForbidden (scope too small) or
// ErrUnavailable (the store did not answer). With an error, the token is
// the refused one's id, name, scope and tenant when it was found (for the
// log), else zero.
func (g *Guard) Check(r *http.Request, acc Access) (corral.Token, error) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if h == "" {
		return corral.Token{}, fmt.Errorf("missing bearer token (send Authorization: Bearer <token>): %w", corral.ErrUnauthorized)
	}
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return corral.Token{}, fmt.Errorf("the Authorization header is not \"Bearer <token>\": %w", corral.ErrUnauthorized)
	}
	// The lookup is by the secret's SHA-256: how long it takes says
	// nothing about how close a guess came. The final comparison is
	// constant-time all the same.
	sum := Hash(secret)
	var tk corral.Token
	err := g.Store.View(r.Context(), func(tx corral.ReadTx) error {
		var err error
		tk, err = tx.TokenByHash(r.Context(), sum)
		return err
	})
	switch {
	case errors.Is(err, corral.ErrNotFound):
		return corral.Token{}, fmt.Errorf("unknown token: %w", corral.ErrUnauthorized)
	case err != nil:
		g.log().Warn("token lookup failed", "err", err)
		return corral.Token{}, fmt.Errorf("token lookup: %w", corral.ErrUnavailable)
	case subtle.ConstantTimeCompare(tk.Hash, sum) != 1:
		return corral.Token{}, fmt.Errorf("unknown token: %w", corral.ErrUnauthorized)
	}
	now := g.Clock.Now()
	known := corral.Token{ID: tk.ID, Name: tk.Name, Scope: tk.Scope, TenantID: tk.TenantID}
	switch {
	case tk.Revoked():
		return known, fmt.Errorf("token %s was revoked at %s: %w", tk.ID, tk.RevokedAt.Format(time.RFC3339), corral.ErrUnauthorized)
	case tk.Expired(now):
		return known, fmt.Errorf("token %s expired at %s: %w", tk.ID, tk.ExpiresAt.Format(time.RFC3339), corral.ErrUnauthorized)
	case !acc.Allows(tk.Scope):
		return known, fmt.Errorf("token %s has scope %s; %s %s needs %s: %w", tk.ID, tk.Scope, r.Method, r.URL.Path, acc, corral.ErrForbidden)
	}
	if now.Sub(tk.LastUsed) >= touchEvery {
		err := g.Store.Update(r.Context(), func(tx corral.Tx) error { return tx.TouchToken(r.Context(), tk.ID, now) })
		if err != nil {
			g.log().Warn("record token use", "token", tk.ID, "err", err)
		}
	}
	return tk, nil
}

func (g *Guard) log() *slog.Logger {
	if g.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Logger
}
