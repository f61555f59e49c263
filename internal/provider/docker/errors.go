package docker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/corral-ci/corral/internal/corral"
)

// kind maps an Engine API error to corral's sentinel errors.
func kind(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return corral.ErrUnavailable
	case cerrdefs.IsNotFound(err):
		return corral.ErrNotFound
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		return corral.ErrConflict
	case cerrdefs.IsInvalidArgument(err):
		return corral.ErrBadInput
	case cerrdefs.IsPermissionDenied(err), cerrdefs.IsUnauthorized(err):
		return corral.ErrUnauthorized
	default: // connection failures, engine errors: retry later

		return corral.ErrUnavailable
	}
}

// apiError wraps an Engine API error with its kind, with every secret of
// the spec cut out of the engine's message.
func apiError(what string, err error, secrets []string) error {
	return fmt.Errorf("%w: %s: %s", kind(err), what, scrub(err.Error(), secrets))
}

// scrub replaces every secret in s by [redacted], longest first so that a
// secret containing another one is cut whole.
func scrub(s string, secrets []string) string {
	sorted := append([]string(nil), secrets...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, v := range sorted {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// secretsOf lists the bootstrap's secret values.
func secretsOf(b corral.Bootstrap) []string {
	var out []string
	for _, v := range b.Env {
		out = append(out, v.Reveal())
	}
	for _, v := range b.Files {
		out = append(out, v.Reveal())
	}
	return out
}
