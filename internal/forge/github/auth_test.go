package github

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/corral-ci/corral/internal/corral"
)

// appFake adds App endpoints to e.f: installation lookup for o/r, o/r2 and
// org o (installation 11), token minting that checks the JWT and hands out
// numbered tokens valid one hour on the fake clock, and endpoints that
// accept only the current token.
type appFake struct {
	e      *testEnv
	mints  atomic.Int32
	mu     sync.Mutex
	valid  map[string]bool
	jwtErr error
}

func newAppFake(t *testing.T, e *testEnv) *appFake {
	key, _ := appKey(t)
	a := &appFake{e: e, valid: map[string]bool{}}
	checkJWT := func(r *http.Request) bool {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims := &jwt.RegisteredClaims{}
		_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(e.clock.Now), jwt.WithIssuer("123"))
		if err == nil && claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute {
			err = errors.New("JWT lives more than 10 minutes")
		}
		if err != nil {
			a.mu.Lock()
			a.jwtErr = err
			a.mu.Unlock()
			return false
		}
		return true
	}
	inst := func(w http.ResponseWriter, r *http.Request) {
		if !checkJWT(r) {
			writeJSON(w, 401, map[string]any{"message": "A JSON web token could not be decoded"})
			return
		}
		writeJSON(w, 200, map[string]any{"id": 11, "app_id": 123})
	}
	e.f.on("GET /repos/o/r/installation", inst)
	e.f.on("GET /repos/o/r2/installation", inst)
	e.f.on("GET /orgs/o/installation", inst)
	e.f.on("POST /app/installations/11/access_tokens", func(w http.ResponseWriter, r *http.Request) {
		if !checkJWT(r) {
			writeJSON(w, 401, map[string]any{"message": "bad JWT"})
			return
		}
		n := a.mints.Add(1)
		tok := fmt.Sprintf("ghs_INSTALLATIONtoken%03d", n)
		a.mu.Lock()
		a.valid[tok] = true
		a.mu.Unlock()
		writeJSON(w, 201, map[string]any{"token": tok, "expires_at": e.clock.Now().Add(time.Hour).Format(time.RFC3339)})
	})
	for _, p := range []string{"/repos/o/r", "/repos/o/r2", "/orgs/o"} {
		e.f.on("POST "+p+"/actions/runners/generate-jitconfig", a.needToken(jitOK(1)))
		e.f.on("GET "+p+"/actions/runners", a.needToken(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, map[string]any{"total_count": 0, "runners": []any{}})
		}))
	}
	return a
}

func (a *appFake) needToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		ok := a.valid[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		a.mu.Unlock()
		if !ok {
			writeJSON(w, 401, map[string]any{"message": "Bad credentials"})
			return
		}
		h(w, r)
	}
}

func (a *appFake) revokeAll() {
	a.mu.Lock()
	a.valid = map[string]bool{}
	a.mu.Unlock()
}

func (e *testEnv) appTarget(t *testing.T, scope corral.Scope, path string) corral.Target {
	_, pem := appKey(t)
	tg := e.target(scope, path)
	tg.Token = corral.Secret(pem)
	tg.Settings[SettingAppID] = "123"
	return tg
}

var spec1 = corral.RunnerSpec{Name: "corral-1", Labels: []string{"self-hosted"}}

func TestClient_AppAuth(t *testing.T) {
	t.Run("one token per installation, shared and cached", func(t *testing.T) {
		e := newEnv(t)
		a := newAppFake(t, e)
		c1 := e.client(t, e.appTarget(t, corral.ScopeRepo, "o/r"))
		c2 := e.client(t, e.appTarget(t, corral.ScopeRepo, "o/r2"))
		c3 := e.client(t, e.appTarget(t, corral.ScopeOrg, "o"))
		ctx := ctxT(t)
		var wg sync.WaitGroup
		errs := make(chan error, 30)
		for i := range 30 {
			c := []*Client{c1, c2, c3}[i%3]
			wg.Go(func() {
				if _, err := c.MintRunner(ctx, spec1); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := a.mints.Load(); n != 1 {
			t.Fatalf("%d installation tokens for 30 mints on 3 targets, want 1", n)
		}
		// Still fresh 54 minutes in; replaced within 5 minutes of expiry.
		e.clock.Advance(54 * time.Minute)
		if _, err := c1.MintRunner(ctx, spec1); err != nil || a.mints.Load() != 1 {
			t.Fatalf("at 54m: mints %d, err %v", a.mints.Load(), err)
		}
		e.clock.Advance(2 * time.Minute)
		for _, c := range []*Client{c1, c2, c3} {
			if _, err := c.MintRunner(ctx, spec1); err != nil {
				t.Fatal(err)
			}
		}
		if n := a.mints.Load(); n != 2 {
			t.Fatalf("at 56m: %d tokens, want 2", n)
		}
		if jwtErr := a.jwtErr; jwtErr != nil {
			t.Fatalf("a JWT was refused: %v", jwtErr)
		}
	})

	t.Run("installation id from settings skips the lookup", func(t *testing.T) {
		e := newEnv(t)
		newAppFake(t, e)
		tg := e.appTarget(t, corral.ScopeRepo, "o/r")
		tg.Settings[SettingInstallationID] = "11"
		if _, err := e.client(t, tg).MintRunner(ctxT(t), spec1); err != nil {
			t.Fatal(err)
		}
		if n := e.f.count("GET /repos/o/r/installation"); n != 0 {
			t.Fatalf("installation looked up %d times", n)
		}
	})

	t.Run("a revoked token is replaced once", func(t *testing.T) {
		e := newEnv(t)
		a := newAppFake(t, e)
		c := e.client(t, e.appTarget(t, corral.ScopeRepo, "o/r"))
		if _, err := c.MintRunner(ctxT(t), spec1); err != nil {
			t.Fatal(err)
		}
		a.revokeAll()
		if _, err := c.MintRunner(ctxT(t), spec1); err != nil {
			t.Fatal(err)
		}
		if n := a.mints.Load(); n != 2 {
			t.Fatalf("%d tokens, want 2", n)
		}
	})

	t.Run("a refused App key is unauthorized and no secret leaks", func(t *testing.T) {
		e := newEnv(t)
		newAppFake(t, e)
		tg := e.appTarget(t, corral.ScopeRepo, "o/r")
		tg.Settings[SettingAppID] = "999" // wrong issuer
		_, err := e.client(t, tg).MintRunner(ctxT(t), spec1)
		if !errors.Is(err, corral.ErrUnauthorized) {
			t.Fatalf("err = %v", err)
		}
		_, pem := appKey(t)
		mustNotContain(t, err.Error(), pem, "PRIVATE KEY", "ghs_")
	})

	t.Run("a bad key or enterprise App is refused at construction", func(t *testing.T) {
		e := newEnv(t)
		tg := e.appTarget(t, corral.ScopeRepo, "o/r")
		tg.Token = "not a key SECRETSECRET"
		_, err := NewClient(tg, e.options())
		if !errors.Is(err, corral.ErrBadInput) {
			t.Fatalf("err = %v", err)
		}
		mustNotContain(t, err.Error(), "SECRETSECRET")
		_, err = NewClient(e.appTarget(t, corral.ScopeEnterprise, "e"), e.options())
		if !errors.Is(err, corral.ErrBadInput) {
			t.Fatalf("enterprise App: err = %v", err)
		}
	})
}
