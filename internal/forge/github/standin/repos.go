package standin

import (
	"net/http"
	"slices"
	"strings"
)

// GET /installation/repositories (installation token): the repositories an
// installation (or the token's narrower selection) reaches.
func (s *Server) handleInstallationRepos(w http.ResponseWriter, r *http.Request, c *call) {
	if c.cred.tok == nil {
		s.respond(w, r, c, http.StatusForbidden, errBody(http.StatusForbidden, "This endpoint requires an installation access token"))
		return
	}
	s.mu.Lock()
	var rs []*repo
	for _, rp := range s.installationReposLocked(c.cred.tok.inst) {
		if c.cred.tok.repos == nil || slices.Contains(c.cred.tok.repos, rp.full()) {
			rs = append(rs, rp)
		}
	}
	from, to := page(w, r, c, len(rs))
	out := []map[string]any{}
	for _, rp := range rs[from:to] {
		out = append(out, s.repoObjectLocked(rp, c.base, c.web))
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, map[string]any{"total_count": len(rs), "repository_selection": "selected", "repositories": out})
}

// GET /orgs/{org}/repos (token): an organization's repositories.
func (s *Server) handleOrgRepos(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	org := strings.ToLower(r.PathValue("org"))
	var rs []*repo
	for _, rp := range s.repos {
		if strings.ToLower(rp.owner) == org {
			rs = append(rs, rp)
		}
	}
	slices.SortFunc(rs, func(a, b *repo) int { return int(a.id - b.id) })
	from, to := page(w, r, c, len(rs))
	out := []map[string]any{}
	for _, rp := range rs[from:to] {
		out = append(out, s.repoObjectLocked(rp, c.base, c.web))
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, out)
}
