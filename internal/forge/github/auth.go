package github

// App authentication. corral signs the App's RS256 JWT with
// github.com/golang-jwt/jwt/v5 and keeps its own installation-token cache
// instead of github.com/bradleyfalzon/ghinstallation/v2 (v2.17.0 is the
// release built on go-github v75): ghinstallation reads time.Now directly
// (corral injects a clock and tests token lifetimes with a fake one),
// refreshes a fixed minute before expiry, and keeps one token per Transport,
// while corral shares ONE token per installation among every target on it
// and refreshes it 5 minutes before expires_at.

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/corral-ci/corral/internal/corral"
)

// TokenRefreshBefore is how long before its expires_at an installation
// token is replaced.
const TokenRefreshBefore = 5 * time.Minute

// jwtLifetime is the App JWT's lifetime (GitHub allows 10 minutes); iat is
// set 60 s in the past against clock drift.
const jwtLifetime = 9 * time.Minute

// Cache holds what the GitHub clients of one corral process share per
// credential: installation tokens and ids, rate-limit budgets and the
// record of redelivered webhook deliveries. Make one and pass it to every
// client (Options.Cache); it is safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	tokens   map[string]*tokenEntry
	installs map[string]int64
	limiters map[string]*limiter
	redeliv  map[string]*redeliveries
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		tokens:   map[string]*tokenEntry{},
		installs: map[string]int64{},
		limiters: map[string]*limiter{},
		redeliv:  map[string]*redeliveries{},
	}
}

func (c *Cache) limiter(key string) *limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.limiters[key]
	if l == nil {
		l = &limiter{writes: make(chan struct{}, 1)}
		c.limiters[key] = l
	}
	return l
}

func (c *Cache) token(key string) *tokenEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.tokens[key]
	if e == nil {
		e = &tokenEntry{sem: make(chan struct{}, 1)}
		c.tokens[key] = e
	}
	return e
}

// tokenEntry is one installation's token. sem is held while it is
// minted, so concurrent callers wait for one request instead of each
// sending their own.
type tokenEntry struct {
	sem     chan struct{}
	token   corral.Secret
	expires time.Time
}

func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// appAuth authenticates a target as a GitHub App installation.
type appAuth struct {
	c      *Client
	appID  string
	key    *rsa.PrivateKey
	prefix string // cache key prefix: API base and App id

	mu     sync.Mutex
	instID int64
	jwt    string
	jwtExp time.Time
}

func newAppAuth(c *Client, appID, instID string, pem corral.Secret) (*appAuth, error) {
	appID = strings.TrimSpace(appID)
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(pem.Reveal()))
	if err != nil {
		// The parser's message is about the format; keep even that out.
		return nil, fmt.Errorf("the token of an App target (app_id set) must be the App's RSA private key in PEM: %w", corral.ErrBadInput)
	}
	a := &appAuth{c: c, appID: appID, key: key, prefix: c.base.String() + " app:" + appID}
	if instID != "" {
		a.instID, err = strconv.ParseInt(instID, 10, 64)
		if err != nil || a.instID <= 0 {
			return nil, fmt.Errorf("installation_id %q is not a positive integer: %w", instID, corral.ErrBadInput)
		}
	}
	return a, nil
}

// jwtAuth authorizes calls as the App itself (installation lookup, token
// minting, webhook deliveries).
func (a *appAuth) jwtAuth(context.Context) (string, string, error) {
	now := a.c.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.jwt == "" || !now.Before(a.jwtExp.Add(-2*time.Minute)) {
		exp := now.Add(jwtLifetime)
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
			Issuer:    a.appID,
			IssuedAt:  jwt.NewNumericDate(now.Add(-60 * time.Second)),
			ExpiresAt: jwt.NewNumericDate(exp),
		}).SignedString(a.key)
		if err != nil {
			return "", "", fmt.Errorf("signing the App JWT: %w", corral.ErrBadInput)
		}
		a.jwt, a.jwtExp = s, exp
	}
	return "Bearer " + a.jwt, a.prefix + " jwt", nil
}

func (a *appAuth) tokenKey(id int64) string {
	return a.prefix + " installation:" + strconv.FormatInt(id, 10)
}

// knownKey returns the installation's limiter key once the installation
// is known.
func (a *appAuth) knownKey() (string, string, bool) {
	id := a.knownInstallation()
	if id == 0 {
		return "", "", false
	}
	return "", a.tokenKey(id), true
}

func (a *appAuth) knownInstallation() int64 {
	a.mu.Lock()
	id := a.instID
	a.mu.Unlock()
	if id != 0 {
		return id
	}
	cache := a.c.opt.Cache
	cache.mu.Lock()
	defer cache.mu.Unlock()
	return cache.installs[a.scopeKey()]
}

func (a *appAuth) scopeKey() string { return a.prefix + " scope:" + a.c.t.Path }

// installation returns the installation id: from the settings, the cache,
// or GitHub (GET /repos/{o}/{r}/installation or /orgs/{org}/installation).
func (a *appAuth) installation(ctx context.Context) (int64, error) {
	if id := a.knownInstallation(); id != 0 {
		return id, nil
	}
	var id int64
	var err error
	var resp *responseT
	if a.c.t.Scope == corral.ScopeRepo {
		inst, r, e := a.c.appGH.Apps.FindRepositoryInstallation(ctx, a.c.owner, a.c.repo)
		resp, err = r, e
		if e == nil {
			id = inst.GetID()
		}
	} else {
		inst, r, e := a.c.appGH.Apps.FindOrganizationInstallation(ctx, a.c.owner)
		resp, err = r, e
		if e == nil {
			id = inst.GetID()
		}
	}
	if err != nil {
		return 0, a.c.callErr("find-installation", resp, err)
	}
	cache := a.c.opt.Cache
	cache.mu.Lock()
	cache.installs[a.scopeKey()] = id
	cache.mu.Unlock()
	return id, nil
}

// installationAuth returns the installation token, minting one if the
// cached one is missing or within TokenRefreshBefore of its expiry.
func (a *appAuth) installationAuth(ctx context.Context) (string, string, error) {
	id, err := a.installation(ctx)
	if err != nil {
		return "", "", err
	}
	key := a.tokenKey(id)
	e := a.c.opt.Cache.token(key)
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
	defer func() { <-e.sem }()
	now := a.c.clock.Now()
	if e.token != "" && now.Before(e.expires.Add(-TokenRefreshBefore)) {
		return "Bearer " + e.token.Reveal(), key, nil
	}
	tok, resp, err := a.c.appGH.Apps.CreateInstallationToken(ctx, id, nil)
	if err != nil {
		return "", "", a.c.callErr("installation-token", resp, err)
	}
	if tok.GetToken() == "" {
		return "", "", a.c.malformed("installation-token", http.MethodPost, "no token in the answer")
	}
	e.token = corral.Secret(tok.GetToken())
	e.expires = tok.GetExpiresAt().Time
	if e.expires.IsZero() {
		e.expires = now.Add(time.Hour)
	}
	return "Bearer " + e.token.Reveal(), key, nil
}

// invalidate drops the installation token sent as authz, if it is still
// the cached one.
func (a *appAuth) invalidate(authz string) {
	id := a.knownInstallation()
	if id == 0 {
		return
	}
	e := a.c.opt.Cache.token(a.tokenKey(id))
	select {
	case e.sem <- struct{}{}:
		if "Bearer "+e.token.Reveal() == authz {
			e.token, e.expires = "", time.Time{}
		}
		<-e.sem
	default: // being minted right now: nothing to drop
	}
}
