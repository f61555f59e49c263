package standin

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// The App manifest flow (docs: "Registering a GitHub App from a
// manifest"): the browser POSTs a form with a `manifest` field to
// /settings/apps/new (a user) or /organizations/{org}/settings/apps/new;
// after the user confirms, GitHub redirects to the manifest's redirect_url
// with ?code=...&state=...; POST /app-manifests/{code}/conversions (no
// authentication, within an hour, once) returns the App with its private
// key and webhook secret. The stand-in confirms at once.

type manifestGrant struct {
	app           *app
	owner, name   string
	pem           string
	webhookSecret string
	clientSecret  string
}

func (s *Server) handleManifestNew(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var m struct {
		Name        string `json:"name"`
		URL         string `json:"url"`
		RedirectURL string `json:"redirect_url"`
		Hook        struct {
			URL    string `json:"url"`
			Active bool   `json:"active"`
		} `json:"hook_attributes"`
		Events []string          `json:"default_events"`
		Perms  map[string]string `json:"default_permissions"`
	}
	if err := json.Unmarshal([]byte(r.PostForm.Get("manifest")), &m); err != nil || m.Name == "" || m.RedirectURL == "" {
		http.Error(w, "Invalid GitHub App configuration: a manifest with name and redirect_url is required", http.StatusUnprocessableEntity)
		return
	}
	owner := r.PathValue("org")
	if owner == "" {
		owner = "octocat" // the signed-in user
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		http.Error(w, "key", http.StatusInternalServerError)
		return
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	s.mu.Lock()
	s.calls["POST settings/apps/new"]++
	id := int64(900000) + s.newIDLocked()
	secret := randomToken(20)
	a := &app{id: id, clientID: fmt.Sprintf("Iv23li%010d", id), slug: slugOf(m.Name), key: &key.PublicKey}
	if m.Hook.URL != "" && slices.Contains(m.Events, "workflow_job") {
		a.hook = &hook{id: s.newIDLocked(), kind: hookApp, appID: id, url: m.Hook.URL, secret: corral.Secret(secret)}
		s.hooks[a.hook.id] = a.hook
	}
	s.apps[id] = a
	code := randomToken(20)
	if s.manifests == nil {
		s.manifests = map[string]*manifestGrant{}
	}
	s.manifests[code] = &manifestGrant{app: a, owner: owner, name: m.Name, pem: pemKey, webhookSecret: secret, clientSecret: randomToken(40)}
	s.mu.Unlock()
	to, err := url.Parse(m.RedirectURL)
	if err != nil {
		http.Error(w, "bad redirect_url", http.StatusUnprocessableEntity)
		return
	}
	q := to.Query()
	q.Set("code", code)
	if st := r.URL.Query().Get("state"); st != "" {
		q.Set("state", st)
	}
	to.RawQuery = q.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

func (s *Server) handleManifestConversion(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	g := s.manifests[r.PathValue("code")]
	delete(s.manifests, r.PathValue("code")) // once
	var body map[string]any
	if g != nil {
		body = map[string]any{
			"id": g.app.id, "slug": g.app.slug, "node_id": fmt.Sprintf("A_kwDO%d", g.app.id), "name": g.name,
			"owner":     map[string]any{"login": g.owner, "type": "Organization"},
			"client_id": g.app.clientID, "client_secret": g.clientSecret, "webhook_secret": g.webhookSecret, "pem": g.pem,
			"html_url": c.web + "/apps/" + g.app.slug, "events": []string{"workflow_job"},
			"permissions": map[string]string{"administration": "write", "organization_self_hosted_runners": "write", "actions": "read", "metadata": "read"},
		}
	}
	s.mu.Unlock()
	if g == nil {
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	s.respond(w, r, c, http.StatusCreated, body)
}

func slugOf(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
