package standin

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// credential is who made an API call.
type credential struct {
	kind string // "pat", "app" or "installation"
	key  string // Stats.CallsByCredential key and rate-limit bucket
	pat  *pat
	app  *app
	tok  *instToken
}

const (
	msgBadCreds = "Bad credentials"
	msgBadJWT   = "A JSON web token could not be decoded"
	msgNoAuth   = "Requires authentication"
)

// authenticate finds the credential of r. A non-zero status is the 401
// answer to give.
func (s *Server) authenticate(r *http.Request, kind authKind) (*credential, int, string) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		if kind == authNone {
			return nil, 0, ""
		}
		return nil, http.StatusUnauthorized, msgNoAuth
	}
	scheme, tok, _ := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	scheme = strings.ToLower(scheme)
	if (scheme != "bearer" && scheme != "token") || tok == "" {
		return nil, http.StatusUnauthorized, msgBadCreds
	}
	if strings.Count(tok, ".") == 2 {
		if scheme != "bearer" {
			return nil, http.StatusUnauthorized, msgBadCreds
		}
		a, msg := s.verifyJWT(tok)
		if a == nil {
			return nil, http.StatusUnauthorized, msg
		}
		if kind == authToken {
			return nil, http.StatusForbidden, "Resource not accessible by integration"
		}
		return &credential{kind: "app", key: fmt.Sprintf("app:%d", a.id), app: a}, 0, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == authJWT {
		return nil, http.StatusUnauthorized, msgBadJWT
	}
	if p := s.pats[tok]; p != nil {
		return &credential{kind: "pat", key: PATCredential(tok), pat: p}, 0, ""
	}
	if it := s.instTokens[tok]; it != nil {
		if !s.now().Before(it.expires) {
			return nil, http.StatusUnauthorized, msgBadCreds
		}
		return &credential{kind: "installation", key: fmt.Sprintf("installation:%d", it.inst.id), tok: it}, 0, ""
	}
	return nil, http.StatusUnauthorized, msgBadCreds
}

// verifyJWT checks an app JWT: RS256 over header.payload with the app's
// key, iss = app id (number or string) or client id, exp in the future and
// at most 10 minutes ahead, iat not in the future (60 s of drift allowed).
func (s *Server) verifyJWT(tok string) (*app, string) {
	parts := strings.Split(tok, ".")
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, msgBadJWT
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss json.RawMessage `json:"iss"`
		Iat json.Number     `json:"iat"`
		Exp json.Number     `json:"exp"`
	}
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(pb, &claims) != nil || hdr.Alg != "RS256" {
		return nil, msgBadJWT
	}
	iss := strings.Trim(string(claims.Iss), `"`)
	s.mu.Lock()
	var a *app
	for _, cand := range s.apps {
		if iss == strconv.FormatInt(cand.id, 10) || iss == cand.clientID {
			a = cand
			break
		}
	}
	now := s.now()
	s.mu.Unlock()
	if a == nil {
		return nil, "Integration not found"
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(a.key, crypto.SHA256, sum[:], sig) != nil {
		return nil, msgBadJWT
	}
	iat, err1 := claims.Iat.Int64()
	exp, err2 := claims.Exp.Int64()
	if err1 != nil {
		return nil, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	}
	if err2 != nil || exp <= now.Unix() {
		return nil, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	}
	if exp > now.Add(10*time.Minute+30*time.Second).Unix() {
		return nil, "'Expiration time' claim ('exp') is too far in the future"
	}
	if iat > now.Add(60*time.Second).Unix() {
		return nil, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	}
	return a, ""
}

// Classic PAT scopes and installation permissions per area and scope kind.
var (
	classicScopes = map[string]map[string][]string{
		"runners": {"repos": {"repo"}, "orgs": {"admin:org", "manage_runners:org"}, "enterprises": {"manage_runners:enterprise", "admin:enterprise"}},
		"actions": {"repos": {"repo"}},
		"hooks":   {"repos": {"admin:repo_hook", "repo"}, "orgs": {"admin:org_hook"}},
	}
	appPermissions = map[string]map[string]string{
		"runners": {"repos": "administration", "orgs": "organization_self_hosted_runners"},
		"actions": {"repos": "actions"},
		"hooks":   {"repos": "repository_hooks", "orgs": "organization_hooks"},
	}
	defaultPermissions = map[string]string{
		"actions": "read", "administration": "write", "metadata": "read",
		"organization_self_hosted_runners": "write", "repository_hooks": "write", "organization_hooks": "write",
	}
)

// authorizeLocked checks that cred may use area at sc; a non-zero status
// is the answer (403).
func (s *Server) authorizeLocked(w http.ResponseWriter, cred *credential, sc scope, area string, write bool) (int, string) {
	if area == "" {
		return 0, "" // listings every credential may read (repositories)
	}
	switch cred.kind {
	case "pat":
		if len(cred.pat.scopes) == 0 { // fine-grained
			if sc.kind == "enterprises" {
				return http.StatusForbidden, "Resource not accessible by personal access token"
			}
			return 0, ""
		}
		w.Header().Set("X-OAuth-Scopes", strings.Join(cred.pat.scopes, ", "))
		need := classicScopes[area][sc.kind]
		w.Header().Set("X-Accepted-OAuth-Scopes", strings.Join(need, ", "))
		for _, n := range need {
			if slices.Contains(cred.pat.scopes, n) {
				return 0, ""
			}
		}
		if sc.kind == "repos" && area == "runners" {
			return http.StatusForbidden, "Must have admin rights to Repository."
		}
		return http.StatusForbidden, "Resource not accessible by personal access token"
	case "installation":
		const refused = "Resource not accessible by integration"
		perm := appPermissions[area][sc.kind]
		if perm == "" {
			return http.StatusForbidden, refused
		}
		level := cred.tok.perms[perm]
		if level == "" || (write && level != "write") {
			return http.StatusForbidden, refused
		}
		switch sc.kind {
		case "orgs":
			if !strings.EqualFold(cred.tok.inst.account, sc.name) {
				return http.StatusForbidden, refused
			}
		case "repos":
			if !s.tokenCoversLocked(cred.tok, sc.name) {
				return http.StatusForbidden, refused
			}
		}
		return 0, ""
	}
	return http.StatusForbidden, "Resource not accessible by integration"
}

// tokenCoversLocked reports whether an installation token reaches repo.
func (s *Server) tokenCoversLocked(t *instToken, full string) bool {
	full = strings.ToLower(full)
	owner, _, _ := strings.Cut(full, "/")
	if !strings.EqualFold(owner, t.inst.account) {
		return false
	}
	if t.inst.repos != nil && !slices.Contains(t.inst.repos, full) {
		return false
	}
	return t.repos == nil || slices.Contains(t.repos, full)
}

// installationReposLocked lists the repositories an installation reaches.
func (s *Server) installationReposLocked(in *installation) []*repo {
	var out []*repo
	for full, rp := range s.repos {
		if strings.EqualFold(rp.owner, in.account) && (in.repos == nil || slices.Contains(in.repos, full)) {
			out = append(out, rp)
		}
	}
	slices.SortFunc(out, func(a, b *repo) int { return int(a.id - b.id) })
	return out
}
