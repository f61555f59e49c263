package runners

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// maxChecksumFile bounds a .sha256 file.
const maxChecksumFile = 4 << 10

// install downloads r, verifies its SHA-256, unpacks it and publishes it
// in the cache directory. On any error nothing of r is kept.
func (c *Cache) install(ctx context.Context, r Release) (entry, error) {
	if !knownKind(r.Kind) || !ValidVersion(r.Version) || !platformPart.MatchString(r.OS) || !platformPart.MatchString(r.Arch) {
		return entry{}, fmt.Errorf("%w: release %s %s %s-%s", corral.ErrBadInput, r.Kind, r.Version, r.OS, r.Arch)
	}
	if err := os.MkdirAll(c.tmpDir(), 0o700); err != nil {
		return entry{}, err
	}
	tmp, err := os.MkdirTemp(c.tmpDir(), "dl-")
	if err != nil {
		return entry{}, err
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(ctx, c.cfg.DownloadTimeout)
	defer cancel()
	want := strings.ToLower(r.SHA256)
	if want == "" {
		if want, err = c.fetchChecksum(ctx, r); err != nil {
			return entry{}, err
		}
	}
	if !isHexSHA(want) {
		return entry{}, fmt.Errorf("%w: release has no valid SHA-256", ErrChecksum)
	}
	archive := filepath.Join(tmp, "archive")
	got, err := c.download(ctx, r.URL, archive)
	if err != nil {
		return entry{}, err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return entry{}, fmt.Errorf("%w: %s: want sha256 %s, got %s", ErrChecksum, r.Name, want, got)
	}
	root := filepath.Join(tmp, "root")
	if err := unpack(archive, root, r.Kind, r.Name, c.cfg.MaxDownload*unpackFactor); err != nil {
		return entry{}, err
	}
	meta, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return entry{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta"), meta, 0o644); err != nil {
		return entry{}, err
	}

	// Publish: tree, archive, then the metadata that marks it complete.
	dir := filepath.Join(c.cfg.Dir, string(r.Kind), r.Version, r.Platform().String())
	e := entry{rel: r, dir: dir, archive: archivePath(dir)}
	_ = removeEntry(e) // an incomplete earlier attempt
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return entry{}, err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return entry{}, err
	}
	err = os.Rename(root, dir)
	if err == nil {
		err = os.Rename(archive, e.archive)
	}
	if err == nil {
		err = os.Rename(filepath.Join(tmp, "meta"), metaPath(dir))
	}
	if err != nil {
		_ = removeEntry(e)
		return entry{}, err
	}
	return e, nil
}

// download writes the body at u to dst, at most MaxDownload bytes, and
// returns its hex SHA-256.
func (c *Cache) download(ctx context.Context, u, dst string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("%w: download URL: %v", corral.ErrBadInput, err)
	}
	shown := redactURL(req.URL)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", &corral.CallError{Op: "download runner", Method: http.MethodGet, URL: shown, Err: fmt.Errorf("%w: %v", corral.ErrUnavailable, stripURLError(err))}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", &corral.CallError{Op: "download runner", Method: http.MethodGet, URL: shown, Status: resp.StatusCode, Err: corral.ErrUnavailable}
	}
	limit := c.cfg.MaxDownload
	if resp.ContentLength > limit {
		return "", &corral.CallError{Op: "download runner", Method: http.MethodGet, URL: shown, Err: fmt.Errorf("%w: %d bytes, limit %d", corral.ErrTooLarge, resp.ContentLength, limit)}
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", &corral.CallError{Op: "download runner", Method: http.MethodGet, URL: shown, Err: fmt.Errorf("%w: %v", corral.ErrUnavailable, stripURLError(err))}
	}
	if n > limit {
		return "", &corral.CallError{Op: "download runner", Method: http.MethodGet, URL: shown, Err: fmt.Errorf("%w: over %d bytes", corral.ErrTooLarge, limit)}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fetchChecksum reads r's checksum file: "<hex>" or "<hex>  <name>" lines;
// the line naming r's file wins, else the first.
func (c *Cache) fetchChecksum(ctx context.Context, r Release) (string, error) {
	if r.SHA256URL == "" {
		return "", fmt.Errorf("%w: release has no SHA-256", ErrChecksum)
	}
	u, err := url.Parse(r.SHA256URL)
	if err != nil {
		return "", fmt.Errorf("%w: checksum URL: %v", corral.ErrBadInput, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("%w: checksum URL: %v", corral.ErrBadInput, err)
	}
	body, err := get(c.cfg.HTTPClient, req, maxChecksumFile, "download runner checksum")
	if err != nil {
		return "", err
	}
	first := ""
	for line := range strings.Lines(string(body)) {
		f := strings.Fields(line)
		if len(f) == 0 || !isHexSHA(f[0]) {
			continue
		}
		sum := strings.ToLower(f[0])
		if len(f) > 1 && strings.TrimPrefix(f[1], "*") == r.Name {
			return sum, nil
		}
		if first == "" {
			first = sum
		}
	}
	if first == "" {
		return "", fmt.Errorf("%w: checksum file holds no SHA-256", ErrChecksum)
	}
	return first, nil
}
