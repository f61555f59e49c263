package standin

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"
)

const stamp = time.RFC3339

func (s *Server) appObjectLocked(a *app) map[string]any {
	n := 0
	for _, in := range s.insts {
		if in.appID == a.id {
			n++
		}
	}
	return map[string]any{
		"id": a.id, "slug": a.slug, "node_id": fmt.Sprintf("A_kwDO%08d", a.id), "client_id": a.clientID,
		"owner":        userObject("corral-ci", 1, "Organization", hookAPIBase, hookWebBase),
		"name":         a.slug,
		"description":  "stand-in GitHub App",
		"external_url": "https://corral.invalid", "html_url": "https://github.com/apps/" + a.slug,
		"created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
		"permissions": defaultPermissions, "events": []string{"workflow_job", "workflow_run"},
		"installations_count": n,
	}
}

func (s *Server) handleGetApp(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	body := s.appObjectLocked(c.cred.app)
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, body)
}

func (s *Server) installationObjectLocked(c *call, in *installation) map[string]any {
	a := s.apps[in.appID]
	o := s.orgLocked(in.account)
	selection := "all"
	if in.repos != nil {
		selection = "selected"
	}
	created := in.created.Format(stamp)
	return map[string]any{
		"id": in.id, "app_id": in.appID, "app_slug": a.slug, "client_id": a.clientID,
		"target_id": o.id, "target_type": "Organization",
		"account":              userObject(o.login, o.id, "Organization", c.base, c.web),
		"repository_selection": selection,
		"access_tokens_url":    fmt.Sprintf("%s/app/installations/%d/access_tokens", c.base, in.id),
		"repositories_url":     c.base + "/installation/repositories",
		"html_url":             fmt.Sprintf("%s/organizations/%s/settings/installations/%d", c.web, o.login, in.id),
		"permissions":          defaultPermissions, "events": []string{"workflow_job", "workflow_run"},
		"created_at": created, "updated_at": created,
		"single_file_name": nil, "suspended_by": nil, "suspended_at": nil,
	}
}

func (s *Server) appInstallationsLocked(appID int64) []*installation {
	var out []*installation
	for _, in := range s.insts {
		if in.appID == appID {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b *installation) int { return int(a.id - b.id) })
	return out
}

func (s *Server) handleListInstallations(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	ins := s.appInstallationsLocked(c.cred.app.id)
	from, to := page(w, r, c, len(ins))
	out := []map[string]any{}
	for _, in := range ins[from:to] {
		out = append(out, s.installationObjectLocked(c, in))
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, out)
}

func (s *Server) handleScopeInstallation(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	var found *installation
	if s.scopeExistsLocked(c.scope) {
		for _, in := range s.appInstallationsLocked(c.cred.app.id) {
			switch c.scope.kind {
			case "orgs":
				if strings.EqualFold(in.account, c.scope.name) {
					found = in
				}
			case "repos":
				owner, _, _ := strings.Cut(c.scope.name, "/")
				if strings.EqualFold(in.account, owner) && (in.repos == nil || slices.Contains(in.repos, strings.ToLower(c.scope.name))) {
					found = in
				}
			}
		}
	}
	if found == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	body := s.installationObjectLocked(c, found)
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, body)
}

// handleAccessToken mints an installation token (1 h). The optional body
// narrows it to repositories (names) or repository_ids and permissions.
func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Repositories  []string          `json:"repositories"`
		RepositoryIDs []int64           `json:"repository_ids"`
		Permissions   map[string]string `json:"permissions"`
	}
	if err := readJSON(r, &req); err != nil {
		s.respond(w, r, c, http.StatusBadRequest, errBody(http.StatusBadRequest, "Problems parsing JSON"))
		return
	}
	s.mu.Lock()
	in := s.insts[pathID(r, "installation_id")]
	if in == nil || in.appID != c.cred.app.id {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	t := &instToken{inst: in, expires: s.now().Add(time.Hour).Truncate(time.Second), perms: map[string]string{}}
	reachable := s.installationReposLocked(in)
	var repoObjs []map[string]any
	if len(req.Repositories) > 0 || len(req.RepositoryIDs) > 0 {
		t.repos = []string{}
		for _, rp := range reachable {
			if slices.ContainsFunc(req.Repositories, func(n string) bool { return strings.EqualFold(n, rp.name) }) || slices.Contains(req.RepositoryIDs, rp.id) {
				t.repos = append(t.repos, strings.ToLower(rp.full()))
				repoObjs = append(repoObjs, map[string]any{"id": rp.id, "name": rp.name, "full_name": rp.full()})
			}
		}
		if len(t.repos) != len(req.Repositories)+len(req.RepositoryIDs) {
			s.mu.Unlock()
			s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity, "There is at least one repository that does not exist or is not accessible to the parent installation."))
			return
		}
	}
	for k, v := range defaultPermissions {
		t.perms[k] = v
	}
	if req.Permissions != nil {
		t.perms = map[string]string{}
		for k, v := range req.Permissions {
			have := defaultPermissions[k]
			if have == "" || (v == "write" && have != "write") {
				s.mu.Unlock()
				s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity, fmt.Sprintf("The permissions requested are not granted to this installation: %s", k)))
				return
			}
			t.perms[k] = v
		}
	}
	tok := fmt.Sprintf("ghs_%d_%s", in.appID, randomToken(60))
	s.instTokens[tok] = t
	s.mints[in.id]++
	selection := "all"
	if t.repos != nil || in.repos != nil {
		selection = "selected"
	}
	s.mu.Unlock()
	body := map[string]any{
		"token": tok, "expires_at": t.expires.UTC().Format(stamp), "permissions": t.perms,
		"repository_selection": selection,
	}
	if repoObjs != nil {
		body["repositories"] = repoObjs
	}
	s.respond(w, r, c, http.StatusCreated, body)
}

func (s *Server) handleRateLimit(w http.ResponseWriter, r *http.Request, c *call) {
	limit, remaining, used, reset := 60, 60, 0, s.now().Add(time.Hour).Unix()
	if c.cred != nil {
		s.mu.Lock()
		b := s.bucketLocked(c.cred.key)
		limit, remaining = s.opt.RateLimit, s.remainingLocked(b)
		used, reset = limit-remaining, unixCeil(s.resetLocked(b))
		s.mu.Unlock()
	}
	core := map[string]int64{"limit": int64(limit), "remaining": int64(remaining), "reset": reset, "used": int64(used)}
	other := func(n int64) map[string]int64 {
		return map[string]int64{"limit": n, "remaining": n, "reset": reset, "used": 0}
	}
	s.respond(w, r, c, http.StatusOK, map[string]any{
		"resources": map[string]any{
			"core": core, "search": other(30), "graphql": other(5000), "code_search": other(10),
			"integration_manifest": other(5000), "actions_runner_registration": other(10000),
		},
		"rate": core,
	})
}

func (s *Server) handleMeta(w http.ResponseWriter, r *http.Request, c *call) {
	body := map[string]any{"verifiable_password_authentication": false}
	if s.opt.GHESVersion != "" {
		v := s.opt.GHESVersion
		if strings.Count(v, ".") == 1 {
			v += ".0"
		}
		body["installed_version"] = v
	}
	s.respond(w, r, c, http.StatusOK, body)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomToken returns n random alphanumerics (crypto/rand: tokens are
// credentials, even here).
func randomToken(n int) string {
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alnum))))
		b[i] = alnum[k.Int64()]
	}
	return string(b)
}
