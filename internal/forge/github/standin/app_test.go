package standin

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

const (
	appID  = int64(4242)
	instID = int64(77)
)

func TestServer_AppJWT(t *testing.T) {
	ka, kb := testKeys(t)
	s, base := newStandin(t, Options{})
	s.AddApp(appID, &ka.PublicKey, "", "")
	now := time.Now()
	cases := []struct {
		name   string
		jwt    string
		status int
	}{
		{"iss app id", signJWT(t, ka, appID, now.Add(-60*time.Second), now.Add(9*time.Minute)), 200},
		{"iss app id as string", signJWT(t, ka, fmt.Sprint(appID), now.Add(-60*time.Second), now.Add(9*time.Minute)), 200},
		{"iss client id", signJWT(t, ka, s.AppClientID(appID), now.Add(-60*time.Second), now.Add(9*time.Minute)), 200},
		{"bad signature", signJWT(t, kb, appID, now.Add(-60*time.Second), now.Add(9*time.Minute)), 401},
		{"expired", signJWT(t, ka, appID, now.Add(-11*time.Minute), now.Add(-time.Minute)), 401},
		{"exp too far", signJWT(t, ka, appID, now, now.Add(30*time.Minute)), 401},
		{"iat in the future", signJWT(t, ka, appID, now.Add(5*time.Minute), now.Add(9*time.Minute)), 401},
		{"unknown app", signJWT(t, ka, 999, now, now.Add(5*time.Minute)), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := do(t, "GET", base+"/app", "Bearer "+c.jwt, nil)
			want(t, a, c.status)
			if c.status == 200 {
				mustContain(t, string(a.body), fmt.Sprintf(`"id":%d`, appID))
			}
		})
	}
	t.Run("JWT on a token endpoint", func(t *testing.T) {
		jwt := signJWT(t, ka, appID, now.Add(-time.Minute), now.Add(5*time.Minute))
		want(t, do(t, "GET", base+"/repos/acme/app/actions/runners", "Bearer "+jwt, nil), http.StatusForbidden)
	})
}

func TestServer_InstallationTokens(t *testing.T) {
	ka, _ := testKeys(t)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s, base := newStandin(t, Options{Now: now})
	s.AddRepo("acme", "other")
	s.AddRepo("solo", "lib")
	s.AddApp(appID, &ka.PublicKey, "", "")
	s.Install(appID, instID, "acme", "app")
	s.Install(appID, instID+1, "solo")
	jwt := func() string {
		return "Bearer " + signJWT(t, ka, appID, now().Add(-time.Minute), now().Add(9*time.Minute))
	}
	a := do(t, "GET", base+"/app/installations", jwt(), nil)
	want(t, a, http.StatusOK)
	var insts []struct {
		ID        int64  `json:"id"`
		Selection string `json:"repository_selection"`
	}
	a.json(t, &insts)
	if len(insts) != 2 || insts[0].ID != instID || insts[0].Selection != "selected" || insts[1].Selection != "all" {
		t.Fatalf("installations %s", a.body)
	}
	want(t, do(t, "GET", base+"/repos/acme/app/installation", jwt(), nil), http.StatusOK)
	want(t, do(t, "GET", base+"/repos/acme/other/installation", jwt(), nil), http.StatusNotFound)
	want(t, do(t, "GET", base+"/orgs/solo/installation", jwt(), nil), http.StatusOK)

	mint := func(body any) (string, time.Time) {
		t.Helper()
		a := do(t, "POST", fmt.Sprintf("%s/app/installations/%d/access_tokens", base, instID), jwt(), body)
		want(t, a, http.StatusCreated)
		var tok struct {
			Token   string    `json:"token"`
			Expires time.Time `json:"expires_at"`
		}
		a.json(t, &tok)
		return tok.Token, tok.Expires
	}
	tok, exp := mint(nil)
	if len(tok) == 40 || tok[:4] != "ghs_" || exp.Sub(now()) < 59*time.Minute {
		t.Fatalf("token %d chars, expires %v", len(tok), exp)
	}
	if s.Stats().TokenMints[instID] != 1 {
		t.Fatalf("mints %v", s.Stats().TokenMints)
	}
	want(t, do(t, "POST", base+"/repos/acme/app/actions/runners/generate-jitconfig", token(tok), jitBody("i1", "x")), http.StatusCreated)
	want(t, do(t, "POST", base+"/orgs/acme/actions/runners/generate-jitconfig", token(tok), jitBody("i2", "x")), http.StatusCreated)
	want(t, do(t, "GET", base+"/repos/acme/other/actions/runners", token(tok), nil), http.StatusForbidden)
	want(t, do(t, "GET", base+"/orgs/solo/actions/runners", token(tok), nil), http.StatusForbidden)
	want(t, do(t, "POST", base+"/enterprises/big/actions/runners/generate-jitconfig", token(tok), jitBody("i3", "x")), http.StatusForbidden)
	if n := s.Stats().CallsByCredential[fmt.Sprintf("installation:%d", instID)]; n != 5 {
		t.Fatalf("calls by installation %d", n)
	}

	narrow, _ := mint(map[string]any{"permissions": map[string]string{"actions": "read"}})
	want(t, do(t, "GET", base+"/repos/acme/app/actions/runs", token(narrow), nil), http.StatusOK)
	want(t, do(t, "POST", base+"/repos/acme/app/actions/runners/generate-jitconfig", token(narrow), jitBody("i4", "x")), http.StatusForbidden)
	want(t, do(t, "POST", fmt.Sprintf("%s/app/installations/%d/access_tokens", base, instID), jwt(),
		map[string]any{"repositories": []string{"other"}}), http.StatusUnprocessableEntity)
	want(t, do(t, "POST", base+"/app/installations/9999/access_tokens", jwt(), nil), http.StatusNotFound)

	mu.Lock()
	clock = clock.Add(61 * time.Minute)
	mu.Unlock()
	want(t, do(t, "GET", base+"/repos/acme/app/actions/runners", token(tok), nil), http.StatusUnauthorized)
}
