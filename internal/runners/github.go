package runners

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Source lists the releases it knows, every platform it serves.
type Source interface {
	Releases(ctx context.Context) ([]Release, error)
}

// ReleasesAPI is a Source reading a GitHub-shaped releases API
// (`GET {API}/repos/{Repo}/releases`: tag_name, draft, prerelease,
// published_at, body, assets[name, browser_download_url, digest]). Gitea
// and Forgejo serve the same shape under /api/v1, so one type serves the
// three runner kinds.
//
// The SHA-256 of an asset is taken, in this order, from:
//  1. the asset's "digest" ("sha256:<hex>"), which GitHub computes itself
//     when the asset is uploaded;
//  2. the release body's markers `<!-- BEGIN SHA linux-x64 -->HEX<!-- END
//     SHA linux-x64 -->`, which actions/runner writes for each archive;
//  3. a sibling asset named "<asset>.sha256" (Gitea's and Forgejo's runner
//     releases), fetched by the cache before the download.
//
// An asset with none of these is skipped: nothing unverified is ever used.
// Drafts and pre-releases are skipped too.
type ReleasesAPI struct {
	Kind Kind
	API  string // e.g. https://api.github.com, https://gitea.com/api/v1
	Repo string // owner/name, e.g. actions/runner
	// Asset is the asset's file name with {version}, {os}, {arch} (x64,
	// arm64) and {goarch} (amd64, arm64) filled in.
	Asset     string
	Platforms []Platform    // empty = DefaultPlatforms
	Token     corral.Secret // optional; sent as a bearer token
	PerPage   int           // releases read (one page); 0 = 20
	// HTTPClient nil uses a client with a 30 s timeout.
	HTTPClient *http.Client
}

var _ Source = (*ReleasesAPI)(nil)

// DefaultReleasesAPI returns the public release source of a kind. The
// asset names of the Gitea and Forgejo runners are the ones their release
// pages use for bare linux binaries (override Asset when they change).
func DefaultReleasesAPI(k Kind) (*ReleasesAPI, error) {
	switch k {
	case KindGitHub:
		return &ReleasesAPI{Kind: k, API: "https://api.github.com", Repo: "actions/runner",
			Asset: "actions-runner-{os}-{arch}-{version}.tar.gz"}, nil
	case KindGitea:
		return &ReleasesAPI{Kind: k, API: "https://gitea.com/api/v1", Repo: "gitea/runner",
			Asset: "gitea-runner-{version}-{os}-{goarch}"}, nil
	case KindForgejo:
		return &ReleasesAPI{Kind: k, API: "https://code.forgejo.org/api/v1", Repo: "forgejo/runner",
			Asset: "forgejo-runner-{version}-{os}-{goarch}"}, nil
	}
	return nil, fmt.Errorf("%w: unknown runner kind %q", corral.ErrBadInput, k)
}

type apiRelease struct {
	TagName     string     `json:"tag_name"`
	Draft       bool       `json:"draft"`
	Prerelease  bool       `json:"prerelease"`
	PublishedAt time.Time  `json:"published_at"`
	Body        string     `json:"body"`
	Assets      []apiAsset `json:"assets"`
}

type apiAsset struct {
	Name   string `json:"name"`
	URL    string `json:"browser_download_url"`
	Digest string `json:"digest"`
}

// maxListing bounds the body of a release listing.
const maxListing = 8 << 20

// Releases lists the releases of the newest page.
func (s *ReleasesAPI) Releases(ctx context.Context) ([]Release, error) {
	per := s.PerPage
	if per <= 0 {
		per = 20
	}
	u := strings.TrimSuffix(s.API, "/") + "/repos/" + s.Repo + "/releases?per_page=" + fmt.Sprint(per)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: releases URL: %v", corral.ErrBadInput, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token.Reveal())
	}
	body, err := get(httpClient(s.HTTPClient), req, maxListing, "list releases "+s.Repo)
	if err != nil {
		return nil, err
	}
	var rels []apiRelease
	if err := json.Unmarshal(body, &rels); err != nil {
		return nil, &corral.CallError{Op: "list releases " + s.Repo, Method: http.MethodGet, URL: u,
			Err: fmt.Errorf("%w: malformed listing: %v", corral.ErrUnavailable, err)}
	}
	plats := s.Platforms
	if len(plats) == 0 {
		plats = DefaultPlatforms
	}
	var out []Release
	for _, ar := range rels {
		v := NormalizeVersion(ar.TagName)
		if ar.Draft || ar.Prerelease || !ValidVersion(v) {
			continue
		}
		for _, p := range plats {
			name := assetName(s.Asset, v, p)
			a, ok := findAsset(ar.Assets, name)
			if !ok {
				continue
			}
			r := Release{Kind: s.Kind, Version: v, OS: p.OS, Arch: p.Arch, URL: a.URL, Name: name, Published: ar.PublishedAt}
			switch {
			case strings.HasPrefix(a.Digest, "sha256:") && isHexSHA(a.Digest[7:]):
				r.SHA256 = strings.ToLower(a.Digest[7:])
			case bodySHA(ar.Body, p) != "":
				r.SHA256 = bodySHA(ar.Body, p)
			default:
				side, ok := findAsset(ar.Assets, name+".sha256")
				if !ok {
					continue // nothing to verify it with
				}
				r.SHA256URL = side.URL
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func assetName(pattern, version string, p Platform) string {
	goarch := p.Arch
	if goarch == "x64" {
		goarch = "amd64"
	}
	return strings.NewReplacer("{version}", version, "{os}", p.OS, "{arch}", p.Arch, "{goarch}", goarch).Replace(pattern)
}

func findAsset(as []apiAsset, name string) (apiAsset, bool) {
	for _, a := range as {
		if a.Name == name && a.URL != "" {
			return a, true
		}
	}
	return apiAsset{}, false
}

var hexSHA = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

func isHexSHA(s string) bool { return hexSHA.MatchString(s) }

// bodySHA finds actions/runner's checksum marker for a platform.
func bodySHA(body string, p Platform) string {
	begin := "<!-- BEGIN SHA " + p.String() + " -->"
	i := strings.Index(body, begin)
	if i < 0 {
		return ""
	}
	rest := body[i+len(begin):]
	j := strings.Index(rest, "<!-- END SHA "+p.String()+" -->")
	if j < 0 {
		return ""
	}
	sum := strings.TrimSpace(rest[:j])
	if !isHexSHA(sum) {
		return ""
	}
	return strings.ToLower(sum)
}

func httpClient(hc *http.Client) *http.Client {
	if hc != nil {
		return hc
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// get does req and returns a 200 answer's body, at most limit bytes.
func get(hc *http.Client, req *http.Request, limit int64, op string) ([]byte, error) {
	shown := redactURL(req.URL)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &corral.CallError{Op: op, Method: req.Method, URL: shown, Err: fmt.Errorf("%w: %v", corral.ErrUnavailable, stripURLError(err))}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		kind := corral.ErrUnavailable
		switch resp.StatusCode {
		case http.StatusNotFound:
			kind = corral.ErrNotFound
		case http.StatusUnauthorized, http.StatusForbidden:
			kind = corral.ErrUnauthorized
		case http.StatusTooManyRequests:
			kind = corral.ErrRateLimited
		}
		return nil, &corral.CallError{Op: op, Method: req.Method, URL: shown, Status: resp.StatusCode,
			RequestID: resp.Header.Get("X-GitHub-Request-Id"), Err: kind}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &corral.CallError{Op: op, Method: req.Method, URL: shown, Err: fmt.Errorf("%w: %v", corral.ErrUnavailable, stripURLError(err))}
	}
	if int64(len(b)) > limit {
		return nil, &corral.CallError{Op: op, Method: req.Method, URL: shown, Err: fmt.Errorf("%w: answer over %d bytes", corral.ErrTooLarge, limit)}
	}
	return b, nil
}

// redactURL drops user info and the query (which may hold signed tokens)
// from a URL before it goes into an error.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// stripURLError keeps the cause of a *url.Error without its URL.
func stripURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
