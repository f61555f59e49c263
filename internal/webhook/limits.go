package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/corral-ci/corral/internal/corral"
)

// Bodies are read whole before their signature can be checked, so an
// unauthenticated sender decides how much memory a delivery holds. The
// handler bounds the bytes of bodies in flight, per target and in total:
// each delivery reserves its Content-Length (the size cap when unknown)
// before its body is read, and a delivery beyond either bound is answered
// 503 with Retry-After at once, unread. Ordinary deliveries (about 10 KiB)
// pass by the hundreds; a flood of 1 MiB bodies on one target fills only
// that target's share, and deliveries to the others go through.
const (
	DefaultTargetBytes = 16 << 20
	DefaultTotalBytes  = 64 << 20
)

// retryAfter is what a delivery refused for room is told to wait (s).
const retryAfter = 1

// maxPooled: read buffers up to this size are reused; larger ones (a rare
// big body) go back to the garbage collector instead of staying pooled.
const maxPooled = 64 << 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// gate counts the body bytes in flight.
type gate struct {
	mu              sync.Mutex
	perKey          map[string]int64
	total           int64
	maxKey, maxTotl int64
}

func newGate(perKey, total int64) *gate {
	return &gate{perKey: map[string]int64{}, maxKey: perKey, maxTotl: total}
}

// take reserves n bytes for key, or reports false when a bound would be
// passed.
func (g *gate) take(key string, n int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perKey[key]+n > g.maxKey || g.total+n > g.maxTotl {
		return false
	}
	g.perKey[key] += n
	g.total += n
	return true
}

func (g *gate) give(key string, n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total -= n
	if g.perKey[key] -= n; g.perKey[key] <= 0 {
		delete(g.perKey, key)
	}
}

// SetLimits sets the bounds on body bytes in flight per target (or App)
// and in total; 0 keeps the default. A bound below the size cap is raised
// to it, so that one delivery always fits.
func (h *Handler) SetLimits(perTarget, total int64) {
	if perTarget <= 0 {
		perTarget = DefaultTargetBytes
	}
	if total <= 0 {
		total = DefaultTotalBytes
	}
	perTarget, total = max(perTarget, h.maxBody), max(total, h.maxBody)
	h.gate = newGate(perTarget, total)
}

// errNoRoom is a delivery refused because too many bodies are in flight.
var errNoRoom = fmt.Errorf("too many webhook bodies in flight; retry in %ds: %w", retryAfter, corral.ErrUnavailable)

// readBody reserves room for the body under key and reads it, at most the
// size cap, into a pooled buffer. done releases the room and the buffer:
// call it once the delivery is answered. On error nothing is held.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, key string) (body []byte, done func(), err error) {
	n := r.ContentLength
	if n < 0 || n > h.maxBody {
		n = h.maxBody // unknown length, or refused below once the cap is read
	}
	g := h.gate
	if !g.take(key, n) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		return nil, nil, errNoRoom
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	buf.Grow(int(n) + bytes.MinRead)
	done = func() {
		if buf.Cap() <= maxPooled {
			buf.Reset()
			bufPool.Put(buf)
		}
		g.give(key, n)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody)); err != nil {
		done()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, fmt.Errorf("body over %d bytes: %w", h.maxBody, corral.ErrTooLarge)
		}
		return nil, nil, fmt.Errorf("read body: %v: %w", err, corral.ErrBadInput)
	}
	return buf.Bytes(), done, nil
}

// deliveryID is the delivery id the forge sent, for log lines about a
// delivery that was refused before it was parsed.
func deliveryID(h http.Header) string {
	for _, k := range []string{"X-GitHub-Delivery", "X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"} {
		if v := h.Get(k); v != "" {
			if len(v) > 100 {
				v = v[:100]
			}
			return v
		}
	}
	return ""
}
