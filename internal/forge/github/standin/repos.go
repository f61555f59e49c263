package standin

import (
	"fmt"
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

// SetRepoState marks repository owner/name archived and/or disabled, as
// GitHub reports them in repository listings. An archived repository keeps
// its runs but queues no new ones; corral's sweep must skip both kinds.
func (s *Server) SetRepoState(fullName string, archived, disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rp := s.repos[strings.ToLower(fullName)]; rp != nil {
		rp.archived, rp.disabled = archived, disabled
		s.notifyLocked()
	}
}

// repoURLs are the URL templates of GitHub's repository object (field ->
// path after /repos/{full}), every one required by its OpenAPI schema.
var repoURLs = map[string]string{
	"archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}", "blobs_url": "/git/blobs{/sha}",
	"branches_url": "/branches{/branch}", "collaborators_url": "/collaborators{/collaborator}",
	"comments_url": "/comments{/number}", "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
	"contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
	"downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}",
	"git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
	"issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
	"issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
	"languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
	"notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
	"releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
	"subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags", "teams_url": "/teams",
	"trees_url": "/git/trees{/sha}",
}

// userObject renders GitHub's simple-user object (an account: user or
// organization, typ "User" or "Organization").
func userObject(login string, id int64, typ, api, web string) map[string]any {
	u := api + "/users/" + login
	prefix := "U_kgDO"
	if typ == "Organization" {
		prefix = "O_kgDO"
	}
	return map[string]any{
		"login": login, "id": id, "node_id": fmt.Sprintf("%s%d", prefix, id), "type": typ,
		"avatar_url": fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", id), "gravatar_id": "",
		"url": u, "html_url": web + "/" + login, "site_admin": false,
		"events_url": u + "/events{/privacy}", "followers_url": u + "/followers", "following_url": u + "/following{/other_user}",
		"gists_url": u + "/gists{/gist_id}", "organizations_url": u + "/orgs", "received_events_url": u + "/received_events",
		"repos_url": u + "/repos", "starred_url": u + "/starred{/owner}{/repo}", "subscriptions_url": u + "/subscriptions",
	}
}

// repoObjectLocked renders GitHub's repository object (the "repository"
// schema: what /installation/repositories and /orgs/{org}/repos answer,
// and the repository of runs and webhooks).
func (s *Server) repoObjectLocked(rp *repo, api, web string) map[string]any {
	o := s.orgs[strings.ToLower(rp.owner)]
	full := rp.full()
	u := api + "/repos/" + full
	host := strings.TrimPrefix(strings.TrimPrefix(web, "https://"), "http://")
	created := ts(rp.created)
	m := map[string]any{
		"id": rp.id, "node_id": fmt.Sprintf("R_kgDO%d", rp.id), "name": rp.name, "full_name": full,
		"private": true, "visibility": "private", "owner": userObject(o.login, o.id, "Organization", api, web),
		"html_url": web + "/" + full, "url": u, "description": nil, "fork": false,
		"archived": rp.archived, "disabled": rp.disabled, "default_branch": "main",
		"clone_url": web + "/" + full + ".git", "git_url": "git://" + host + "/" + full + ".git",
		"ssh_url": "git@" + host + ":" + full + ".git", "svn_url": web + "/" + full, "mirror_url": nil, "homepage": nil,
		"language": "Go", "license": nil, "forks": 0, "forks_count": 0, "open_issues": 0, "open_issues_count": 0,
		"stargazers_count": 0, "watchers": 0, "watchers_count": 0, "size": 0,
		"has_downloads": true, "has_issues": true, "has_projects": true, "has_wiki": true, "has_pages": false,
		"created_at": created, "updated_at": created, "pushed_at": created,
	}
	for k, path := range repoURLs {
		m[k] = u + path
	}
	return m
}
