// Package runners keeps a local cache of CI runner releases (GitHub's
// actions runner, the Gitea runner, the Forgejo runner) and hands
// instances a version the forge accepts.
//
// A Source lists releases with their download URL and SHA-256; the Cache
// downloads the newest acceptable one per kind and platform into its
// directory, verifies the SHA-256 before anything is kept, unpacks it
// safely, keeps the newest few versions and removes older ones, and
// refreshes on a schedule (Run). Current returns the newest cached version
// that the kind's Policy accepts (GitHub refuses runners that are too old),
// as an unpacked directory: bind-mount it read-only into containers, or run
// processes from it. Machines that cannot mount it download the archive
// from Handler with a single-use, short-lived token from Grant.
//
// On disk, under the cache directory:
//
//	<kind>/<version>/<os>-<arch>/        the unpacked release
//	<kind>/<version>/<os>-<arch>.archive the verified archive as downloaded
//	<kind>/<version>/<os>-<arch>.json    its Release; written last, so a
//	                                     version without it is incomplete
//	.tmp/                                downloads and unpacking in progress
package runners

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Kind is a family of runner.
type Kind string

// Runner kinds.
const (
	KindGitHub  Kind = "github"  // actions/runner
	KindGitea   Kind = "gitea"   // gitea runner (act_runner)
	KindForgejo Kind = "forgejo" // forgejo-runner
)

// Platform is an operating system and a CPU architecture in corral's
// words: os "linux", arch "x64" or "arm64".
type Platform struct {
	OS, Arch string
}

func (p Platform) String() string { return p.OS + "-" + p.Arch }

// DefaultPlatforms are the platforms a source lists when given none.
var DefaultPlatforms = []Platform{{"linux", "x64"}, {"linux", "arm64"}}

// Release is one downloadable runner release for one platform.
type Release struct {
	Kind    Kind   `json:"kind"`
	Version string `json:"version"` // without a leading v, e.g. "2.330.0"
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	URL     string `json:"url"`  // the archive (.tar.gz/.tgz) or a bare binary
	Name    string `json:"name"` // the archive's file name
	// SHA256 is the archive's lowercase hex SHA-256. When empty,
	// SHA256URL names a checksum file ("<hex>" or "<hex>  <name>") that
	// the cache fetches before the download; a release with neither is
	// never downloaded.
	SHA256    string    `json:"sha256,omitempty"`
	SHA256URL string    `json:"sha256_url,omitempty"`
	Published time.Time `json:"published,omitzero"`
}

// Platform is the release's platform.
func (r Release) Platform() Platform { return Platform{r.OS, r.Arch} }

// Errors of this package. Each is also wrapped with the matching sentinel
// of package corral where there is one.
var (
	// ErrChecksum: a download does not match its SHA-256.
	ErrChecksum = errors.New("runner archive checksum mismatch")
	// ErrUnsafeArchive: an archive entry would land outside its directory,
	// or is a kind of entry the cache refuses.
	ErrUnsafeArchive = errors.New("unsafe runner archive")
	// ErrDeprecated: the forge no longer accepts the version.
	ErrDeprecated = errors.New("runner version deprecated")
)

// Policy says whether the forge accepts a release. newer lists the known
// releases of the same kind and platform with a higher version, newest
// first. It returns nil to accept, or an error wrapping ErrDeprecated.
type Policy func(now time.Time, r Release, newer []Release) error

// MinVersion refuses releases below min.
func MinVersion(min string) Policy {
	return func(_ time.Time, r Release, _ []Release) error {
		if CompareVersions(r.Version, min) < 0 {
			return fmt.Errorf("%w: %s %s is below the minimum %s", ErrDeprecated, r.Kind, r.Version, min)
		}
		return nil
	}
}

// MaxAgeOnceSuperseded refuses a release published more than maxAge ago
// when a newer release exists. A release without a publication date counts
// as too old once superseded: freshness that cannot be shown is not
// assumed. The newest release is always accepted by this rule.
func MaxAgeOnceSuperseded(maxAge time.Duration) Policy {
	return func(now time.Time, r Release, newer []Release) error {
		if len(newer) == 0 {
			return nil
		}
		if r.Published.IsZero() || now.Sub(r.Published) > maxAge {
			return fmt.Errorf("%w: %s %s is older than %s and %s exists", ErrDeprecated, r.Kind, r.Version, maxAge, newer[0].Version)
		}
		return nil
	}
}

// AllOf accepts a release that every policy accepts.
func AllOf(ps ...Policy) Policy {
	return func(now time.Time, r Release, newer []Release) error {
		for _, p := range ps {
			if p == nil {
				continue
			}
			if err := p(now, r, newer); err != nil {
				return err
			}
		}
		return nil
	}
}

// GitHub's enforcement for github.com and GHEC (forges.md, "Minimum
// versions"): registering needs at least v2.329.0, and a release may be at
// most 30 days old once a newer one exists.
const (
	GitHubMinVersion = "2.329.0"
	GitHubMaxAge     = 30 * 24 * time.Hour
)

// GitHubPolicy is GitHub's enforcement as a Policy.
func GitHubPolicy() Policy {
	return AllOf(MinVersion(GitHubMinVersion), MaxAgeOnceSuperseded(GitHubMaxAge))
}

var versionPattern = regexp.MustCompile(`^v?([0-9]+(?:\.[0-9]+)*)(?:-([0-9A-Za-z.-]+))?$`)

// ValidVersion reports whether v is a version the cache handles: dotted
// numbers with an optional leading v and an optional -suffix
// (pre-release).
func ValidVersion(v string) bool { return versionPattern.MatchString(v) }

// NormalizeVersion strips a leading v.
func NormalizeVersion(v string) string { return strings.TrimPrefix(v, "v") }

// CompareVersions compares dotted versions numerically (a missing part is
// 0; a version with a -suffix sorts before the same version without one):
// -1, 0 or +1. Invalid versions sort before valid ones.
func CompareVersions(a, b string) int {
	ma, mb := versionPattern.FindStringSubmatch(a), versionPattern.FindStringSubmatch(b)
	switch {
	case ma == nil && mb == nil:
		return strings.Compare(a, b)
	case ma == nil:
		return -1
	case mb == nil:
		return 1
	}
	pa, pb := strings.Split(ma[1], "."), strings.Split(mb[1], ".")
	for i := range max(len(pa), len(pb)) {
		x, y := part(pa, i), part(pb, i)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case ma[2] == mb[2]:
		return 0
	case ma[2] == "":
		return 1
	case mb[2] == "":
		return -1
	}
	return strings.Compare(ma[2], mb[2])
}

func part(p []string, i int) uint64 {
	if i >= len(p) {
		return 0
	}
	n, _ := strconv.ParseUint(p[i], 10, 64)
	return n
}

// notFound wraps corral.ErrNotFound.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{corral.ErrNotFound}, args...)...)
}
