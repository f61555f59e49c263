package runners

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/corral-ci/corral/internal/corral"
)

// Mirror is a Source reading an index file that an air-gapped site serves
// next to its copies of the archives. The index is JSON:
//
//	{"releases": [
//	  {"kind": "github", "version": "2.330.0", "os": "linux", "arch": "x64",
//	   "url": "github/actions-runner-linux-x64-2.330.0.tar.gz",
//	   "sha256": "<64 hex digits>", "published": "2026-11-01T00:00:00Z"}
//	]}
//
// "url" may be relative to the index's own URL; "name" defaults to the
// URL's last path element. Every entry must carry its sha256 (a mirror has
// no other trusted place for it); entries without one, with an unknown
// kind or an invalid version are skipped. Kind, when set, keeps only that
// kind's entries.
type Mirror struct {
	IndexURL   string
	Kind       Kind // "" = every kind
	HTTPClient *http.Client
}

var _ Source = (*Mirror)(nil)

// MirrorIndex is the index file's shape.
type MirrorIndex struct {
	Releases []Release `json:"releases"`
}

// maxIndex bounds the index file.
const maxIndex = 4 << 20

// Releases reads the index.
func (m *Mirror) Releases(ctx context.Context) ([]Release, error) {
	base, err := url.Parse(m.IndexURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("%w: mirror index URL is not an absolute http(s) URL", corral.ErrBadInput)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.IndexURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: mirror index URL: %v", corral.ErrBadInput, err)
	}
	body, err := get(httpClient(m.HTTPClient), req, maxIndex, "read runner mirror index")
	if err != nil {
		return nil, err
	}
	var idx MirrorIndex
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, &corral.CallError{Op: "read runner mirror index", Method: http.MethodGet, URL: redactURL(base),
			Err: fmt.Errorf("%w: malformed index: %v", corral.ErrUnavailable, err)}
	}
	var out []Release
	for _, r := range idx.Releases {
		r.Version = NormalizeVersion(r.Version)
		if (m.Kind != "" && r.Kind != m.Kind) || !knownKind(r.Kind) || !ValidVersion(r.Version) ||
			!isHexSHA(r.SHA256) || r.OS == "" || r.Arch == "" {
			continue
		}
		ref, err := url.Parse(r.URL)
		if err != nil || r.URL == "" {
			continue
		}
		abs := base.ResolveReference(ref)
		r.URL = abs.String()
		if r.Name == "" {
			r.Name = lastElem(abs.Path)
		}
		r.SHA256URL = ""
		out = append(out, r)
	}
	return out, nil
}

func knownKind(k Kind) bool { return k == KindGitHub || k == KindGitea || k == KindForgejo }

func lastElem(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
