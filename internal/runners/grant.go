package runners

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Download lets one instance fetch the archive of a release once: GET URL
// with the header `Authorization: Bearer <Token>` before Expires. The token
// never appears in the URL (URLs end up in logs).
type Download struct {
	Release Release
	URL     string
	Token   corral.Secret
	Expires time.Time
}

type grant struct {
	hash     [sha256.Size]byte // of the token
	instance string
	archive  string
	name     string
	expires  time.Time
}

// maxGrants bounds the grants outstanding at once.
const maxGrants = 10_000

// Grant lets instanceID download the archive of the release Current
// returns for kind and platform: single use, valid for GrantTTL. Serve
// Handler at Config.BaseURL. It wraps corral.ErrNotFound when no
// acceptable release is cached.
func (c *Cache) Grant(instanceID string, kind Kind, plat Platform) (Download, error) {
	if c.cfg.BaseURL == "" {
		return Download{}, fmt.Errorf("%w: runners: Grant needs Config.BaseURL", corral.ErrBadInput)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.loadLocked(); err != nil {
		return Download{}, err
	}
	e, err := c.currentLocked(key{kind, plat})
	if err != nil {
		return Download{}, err
	}
	c.sweepGrantsLocked()
	if len(c.grants) >= maxGrants {
		return Download{}, fmt.Errorf("%w: %d runner download grants outstanding", corral.ErrLimit, len(c.grants))
	}
	id, tok := make([]byte, 16), make([]byte, 32)
	_, _ = rand.Read(id) // crypto/rand.Read never fails
	_, _ = rand.Read(tok)
	token := base64.RawURLEncoding.EncodeToString(tok)
	g := &grant{hash: sha256.Sum256([]byte(token)), instance: instanceID, archive: e.archive,
		name: e.rel.Name, expires: c.cfg.Clock.Now().Add(c.cfg.GrantTTL)}
	gid := hex.EncodeToString(id)
	c.grants[gid] = g
	base := c.cfg.BaseURL
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	c.log.Info("runner download granted", keyInstance, instanceID, keyKind, kind, keyVersion, e.rel.Version, keyPlatform, plat.String())
	return Download{Release: e.rel, URL: base + gid + "/" + downloadName(e.rel), Token: corral.Secret(token), Expires: g.expires}, nil
}

// downloadName is the file name in a download URL.
func downloadName(r Release) string {
	if r.Name != "" && !strings.ContainsAny(r.Name, "/?#%") {
		return r.Name
	}
	return "runner"
}

func (c *Cache) sweepGrantsLocked() {
	now := c.cfg.Clock.Now()
	for id, g := range c.grants {
		if !now.Before(g.expires) {
			delete(c.grants, id)
		}
	}
}

// Handler serves granted archives at <prefix>/<grant id>/<file name>. A
// request needs the grant's token as a bearer token; the token is compared
// in constant time and burnt by the first download that starts. A wrong,
// expired, reused or missing token is answered 401 with no detail.
func (c *Cache) Handler() http.Handler {
	return http.HandlerFunc(c.serve)
}

func (c *Cache) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.TrimSuffix(r.URL.Path, "/"), "/")
	if len(parts) < 2 {
		unauthorized(w)
		return
	}
	gid := parts[len(parts)-2]
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		unauthorized(w)
		return
	}
	sum := sha256.Sum256([]byte(token))
	c.mu.Lock()
	g := c.grants[gid]
	valid := g != nil && subtle.ConstantTimeCompare(sum[:], g.hash[:]) == 1 && c.cfg.Clock.Now().Before(g.expires)
	if valid {
		delete(c.grants, gid) // single use
	}
	c.mu.Unlock()
	if !valid {
		unauthorized(w)
		return
	}
	f, err := os.Open(g.archive)
	if err != nil {
		c.log.Warn("granted runner archive is gone", keyInstance, g.instance, keyErr, err)
		http.Error(w, "gone", http.StatusGone)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	c.log.Info("runner download started", keyInstance, g.instance)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, g.name, fi.ModTime(), f)
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="corral-runners"`)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}
