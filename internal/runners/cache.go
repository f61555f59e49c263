package runners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Defaults of Config.
const (
	DefaultKeep            = 3
	DefaultMaxDownload     = 512 << 20
	DefaultDownloadTimeout = 10 * time.Minute
	DefaultInterval        = 6 * time.Hour
	DefaultRetryInterval   = 5 * time.Minute
	DefaultGrantTTL        = 10 * time.Minute
)

// Log keys.
const (
	keyKind     = "kind"
	keyVersion  = "version"
	keyPlatform = "platform"
	keyInstance = "instance"
	keyErr      = "err"
)

// Config configures a Cache.
type Config struct {
	// Dir holds the cache, e.g. <data dir>/runners.
	Dir string
	// Sources lists releases per kind; only these kinds are cached.
	Sources map[Kind]Source
	// Policies say which releases the forge accepts, per kind. A kind
	// without one gets GitHubPolicy() for KindGitHub, and accepts every
	// release otherwise.
	Policies map[Kind]Policy
	// Platforms to keep (default DefaultPlatforms).
	Platforms []Platform
	// Keep is how many versions are kept per kind and platform (default 3).
	Keep int
	// MaxDownload bounds an archive (default 512 MiB); the unpacked tree
	// may be 8 times as large.
	MaxDownload int64
	// DownloadTimeout bounds one download (default 10 min).
	DownloadTimeout time.Duration
	// Interval is the time between two refreshes in Run (default 6 h);
	// after a refresh that failed in part, Run tries again after
	// RetryInterval (default 5 min) when that is shorter.
	Interval      time.Duration
	RetryInterval time.Duration
	// HTTPClient does the downloads (default: a client without a timeout
	// of its own; DownloadTimeout bounds each download).
	HTTPClient *http.Client
	// BaseURL is where Handler is reachable by instances, ending in "/",
	// e.g. http://10.0.0.1:8080/runners/. Grant needs it.
	BaseURL string
	// GrantTTL is how long a download grant is valid (default 10 min).
	GrantTTL time.Duration
	Clock    corral.Clock
	// After waits in Run (default time.After); tests inject their own.
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger
}

var platformPart = regexp.MustCompile(`^[a-z0-9_]+$`)

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("runners: Dir is required"))
	}
	for k, s := range c.Sources {
		if !knownKind(k) {
			errs = append(errs, fmt.Errorf("runners: unknown kind %q", k))
		}
		if s == nil {
			errs = append(errs, fmt.Errorf("runners: kind %q has a nil source", k))
		}
	}
	for _, p := range c.Platforms {
		if !platformPart.MatchString(p.OS) || !platformPart.MatchString(p.Arch) {
			errs = append(errs, fmt.Errorf("runners: platform %q is not os-arch in lower case", p.String()))
		}
	}
	if c.Keep < 0 || c.MaxDownload < 0 || c.DownloadTimeout < 0 || c.Interval < 0 || c.RetryInterval < 0 || c.GrantTTL < 0 {
		errs = append(errs, errors.New("runners: Keep, MaxDownload, DownloadTimeout, Interval, RetryInterval and GrantTTL may not be negative"))
	}
	return errors.Join(errs...)
}

// key names the versions of one kind on one platform.
type key struct {
	kind Kind
	plat Platform
}

// entry is one cached, verified, unpacked release.
type entry struct {
	rel     Release
	dir     string // unpacked
	archive string
}

// Cache is the local cache of runner releases. It is safe for concurrent
// use.
type Cache struct {
	cfg Config
	log *slog.Logger

	refreshMu sync.Mutex // one Refresh at a time

	mu     sync.Mutex
	loaded bool
	cached map[key][]entry   // newest first
	known  map[key][]Release // the last listing, newest first
	grants map[string]*grant
}

// New validates cfg and applies defaults. It does no I/O: the directory
// is read at the first Current, Refresh or Grant.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Platforms) == 0 {
		cfg.Platforms = DefaultPlatforms
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.MaxDownload == 0 {
		cfg.MaxDownload = DefaultMaxDownload
	}
	if cfg.DownloadTimeout == 0 {
		cfg.DownloadTimeout = DefaultDownloadTimeout
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.GrantTTL == 0 {
		cfg.GrantTTL = DefaultGrantTTL
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Clock == nil {
		cfg.Clock = corral.SystemClock{}
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{cfg: cfg, log: log.With("component", "runners"), cached: map[key][]entry{},
		known: map[key][]Release{}, grants: map[string]*grant{}}, nil
}

func (c *Cache) policy(k Kind) Policy {
	if p := c.cfg.Policies[k]; p != nil {
		return p
	}
	if k == KindGitHub {
		return GitHubPolicy()
	}
	return func(time.Time, Release, []Release) error { return nil }
}

// Current returns the newest cached release of kind for os/arch that the
// kind's policy accepts, and the directory it is unpacked in (bind-mount
// it read-only, or run processes from it). The policy is judged against
// every release known from the last listing too, so a cached version
// stops being handed out once the forge deprecates it even when its
// successor could not be downloaded. Without one it returns an error
// wrapping corral.ErrNotFound (and ErrDeprecated when cached versions
// exist but are all refused).
func (c *Cache) Current(kind Kind, goos, arch string) (Release, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.loadLocked(); err != nil {
		return Release{}, "", err
	}
	e, err := c.currentLocked(key{kind, Platform{goos, arch}})
	if err != nil {
		return Release{}, "", err
	}
	return e.rel, e.dir, nil
}

func (c *Cache) currentLocked(k key) (entry, error) {
	entries := c.cached[k]
	if len(entries) == 0 {
		return entry{}, notFound("no %s runner cached for %s", k.kind, k.plat)
	}
	all := slices.Clone(c.known[k])
	for _, e := range entries {
		if !slices.ContainsFunc(all, func(r Release) bool { return r.Version == e.rel.Version }) {
			all = append(all, e.rel)
		}
	}
	sortNewest(all)
	now, pol := c.cfg.Clock.Now(), c.policy(k.kind)
	var last error
	for _, e := range entries {
		i := slices.IndexFunc(all, func(r Release) bool { return CompareVersions(r.Version, e.rel.Version) <= 0 })
		if i < 0 {
			i = len(all)
		}
		if last = pol(now, e.rel, all[:i]); last == nil {
			return e, nil
		}
	}
	return entry{}, fmt.Errorf("%w: every cached %s runner for %s is refused: %w", corral.ErrNotFound, k.kind, k.plat, last)
}

func sortNewest(rs []Release) {
	sort.SliceStable(rs, func(i, j int) bool { return CompareVersions(rs[i].Version, rs[j].Version) > 0 })
}

// Refresh lists every source's releases, downloads the newest acceptable
// release of each kind and platform that is not cached yet, and prunes
// each to the newest Keep versions. A source or download that fails is
// logged and reported in the joined error; the others go on.
func (c *Cache) Refresh(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	err := c.loadLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	kinds := make([]Kind, 0, len(c.cfg.Sources))
	for k := range c.cfg.Sources {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var errs []error
	for _, kind := range kinds {
		rels, err := c.cfg.Sources[kind].Releases(ctx)
		if err != nil {
			c.log.Warn("listing runner releases failed", keyKind, kind, keyErr, err)
			errs = append(errs, fmt.Errorf("runners: list %s releases: %w", kind, err))
			continue
		}
		for _, plat := range c.cfg.Platforms {
			if err := c.refreshOne(ctx, key{kind, plat}, rels); err != nil {
				errs = append(errs, err)
			}
		}
	}
	c.mu.Lock()
	c.sweepGrantsLocked()
	c.mu.Unlock()
	return errors.Join(errs...)
}

func (c *Cache) refreshOne(ctx context.Context, k key, rels []Release) error {
	var mine []Release
	for _, r := range rels {
		if r.Kind == k.kind && r.Platform() == k.plat && ValidVersion(r.Version) {
			mine = append(mine, r)
		}
	}
	sortNewest(mine)
	mine = slices.CompactFunc(mine, func(a, b Release) bool { return a.Version == b.Version })
	c.mu.Lock()
	c.known[k] = mine
	cached := slices.Clone(c.cached[k])
	c.mu.Unlock()

	now, pol := c.cfg.Clock.Now(), c.policy(k.kind)
	for i, r := range mine {
		if pol(now, r, mine[:i]) != nil {
			continue
		}
		if !slices.ContainsFunc(cached, func(e entry) bool { return e.rel.Version == r.Version }) {
			e, err := c.install(ctx, r)
			if err != nil {
				c.log.Warn("runner download failed", keyKind, r.Kind, keyVersion, r.Version, keyPlatform, k.plat.String(), keyErr, err)
				return fmt.Errorf("runners: %s %s %s: %w", r.Kind, r.Version, k.plat, err)
			}
			c.log.Info("runner release cached", keyKind, r.Kind, keyVersion, r.Version, keyPlatform, k.plat.String())
			c.mu.Lock()
			c.cached[k] = append(c.cached[k], e)
			sort.SliceStable(c.cached[k], func(i, j int) bool {
				return CompareVersions(c.cached[k][i].rel.Version, c.cached[k][j].rel.Version) > 0
			})
			c.mu.Unlock()
		}
		break // only the newest acceptable release is fetched
	}
	return c.prune(k)
}

// prune removes the versions of k beyond the newest Keep.
func (c *Cache) prune(k key) error {
	c.mu.Lock()
	entries := c.cached[k]
	var drop []entry
	if len(entries) > c.cfg.Keep {
		drop = slices.Clone(entries[c.cfg.Keep:])
		c.cached[k] = slices.Clone(entries[:c.cfg.Keep])
	}
	c.mu.Unlock()
	var errs []error
	for _, e := range drop {
		if err := removeEntry(e); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log.Info("old runner release removed", keyKind, e.rel.Kind, keyVersion, e.rel.Version, keyPlatform, k.plat.String())
	}
	return errors.Join(errs...)
}

// removeEntry deletes the metadata first, so a crash half-way leaves an
// incomplete version that the next load removes.
func removeEntry(e entry) error {
	err := errors.Join(
		rmFile(metaPath(e.dir)),
		os.RemoveAll(e.dir),
		rmFile(e.archive),
	)
	_ = os.Remove(filepath.Dir(e.dir)) // the version directory, when empty
	return err
}

func rmFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func metaPath(dir string) string    { return dir + ".json" }
func archivePath(dir string) string { return dir + ".archive" }

func (c *Cache) tmpDir() string { return filepath.Join(c.cfg.Dir, ".tmp") }

// loadLocked reads the cache directory once: complete versions are
// indexed, incomplete ones and leftovers of interrupted downloads removed.
func (c *Cache) loadLocked() error {
	if c.loaded {
		return nil
	}
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("runners: %w", err)
	}
	if err := os.RemoveAll(c.tmpDir()); err != nil {
		return fmt.Errorf("runners: %w", err)
	}
	for kind := range c.cfg.Sources {
		versions, _ := os.ReadDir(filepath.Join(c.cfg.Dir, string(kind)))
		for _, v := range versions {
			vdir := filepath.Join(c.cfg.Dir, string(kind), v.Name())
			for _, plat := range c.cfg.Platforms {
				c.loadEntry(key{kind, plat}, filepath.Join(vdir, plat.String()), v.Name())
			}
			_ = os.Remove(vdir) // when empty
		}
	}
	for k := range c.cached {
		sort.SliceStable(c.cached[k], func(i, j int) bool {
			return CompareVersions(c.cached[k][i].rel.Version, c.cached[k][j].rel.Version) > 0
		})
	}
	c.loaded = true
	return nil
}

func (c *Cache) loadEntry(k key, dir, version string) {
	e := entry{dir: dir, archive: archivePath(dir)}
	b, err := os.ReadFile(metaPath(dir))
	ok := err == nil && json.Unmarshal(b, &e.rel) == nil && e.rel.Kind == k.kind &&
		e.rel.Platform() == k.plat && e.rel.Version == version
	if ok {
		_, derr := os.Lstat(dir)
		_, aerr := os.Lstat(e.archive)
		ok = derr == nil && aerr == nil
	}
	if !ok {
		if _, err := os.Lstat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("incomplete runner release removed", keyKind, k.kind, keyVersion, version, keyPlatform, k.plat.String())
		}
		_ = removeEntry(e)
		return
	}
	c.cached[k] = append(c.cached[k], e)
}

// Run refreshes at once and then every Interval (RetryInterval after a
// refresh that failed in part) until ctx ends.
func (c *Cache) Run(ctx context.Context) error {
	for {
		wait := c.cfg.Interval
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("runner cache refresh incomplete", keyErr, err)
			wait = min(wait, c.cfg.RetryInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.cfg.After(wait):
		}
	}
}
