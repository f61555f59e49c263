package github

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// priority orders calls when the rate-limit budget runs low: sweeps
// (OpenJobs, Runners, Job, Probe, RedeliverFailed) slow down first and
// fail fast; the happy path (MintRunner, RemoveRunner) keeps going until
// the hard limit and waits a little for a short one to lift.
type priority int

const (
	prioritySweep priority = iota
	priorityUrgent
)

type priorityKey struct{}

func withPriority(ctx context.Context, p priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

func priorityOf(ctx context.Context) priority {
	if p, ok := ctx.Value(priorityKey{}).(priority); ok {
		return p
	}
	return prioritySweep
}

// secondaryDefault is how long corral stays away after a secondary rate
// limit that names no time (GitHub: "wait at least one minute"); while
// such refusals go on, each wait doubles ("an exponentially increasing
// amount of time"), up to secondaryMax.
const (
	secondaryDefault = time.Minute
	secondaryMax     = 16 * time.Minute
)

// limiter is what corral knows of one credential's rate limit. One per
// credential (PAT, installation, App JWT), shared by every client using it.
type limiter struct {
	writes    chan struct{} // a slot: held by the one mutating request under way
	mu        sync.Mutex
	known     bool
	limit     int
	remaining int
	reset     time.Time
	blocked   time.Time // no request before this (Retry-After, exhausted budget)
	// strikes counts the secondary limits in a row that named no time;
	// an answer that is not a refusal clears it.
	strikes int
}

// observe records the rate-limit headers of an answer; limited says the
// answer was a primary or secondary rate-limit refusal.
func (l *limiter) observe(h http.Header, limited bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, err := strconv.Atoi(h.Get("X-RateLimit-Remaining")); err == nil {
		l.known, l.remaining = true, n
		if lim, err := strconv.Atoi(h.Get("X-RateLimit-Limit")); err == nil {
			l.limit = lim
		}
		if sec, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			l.reset = time.Unix(sec, 0)
		}
	}
	if !limited {
		l.strikes = 0
		return
	}
	var until time.Time
	switch ra := h.Get("Retry-After"); {
	case ra != "":
		until = now.Add(secondaryDefault)
		if sec, err := strconv.Atoi(ra); err == nil {
			until = now.Add(time.Duration(sec) * time.Second)
		} else if t, err := http.ParseTime(ra); err == nil {
			until = t
		}
	case l.known && l.remaining == 0 && l.reset.After(now):
		until = l.reset
	default:
		l.strikes++
		until = now.Add(min(secondaryDefault<<min(l.strikes-1, 8), secondaryMax))
	}
	if until.After(l.blocked) {
		l.blocked = until
	}
}

// admit returns the time before which no request may go (zero: go now),
// or an error when a sweep must leave the rest of the budget to minting.
func (l *limiter) admit(p priority, now time.Time, reserve int) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := l.blocked
	if l.known && l.remaining <= 0 && l.reset.After(until) {
		until = l.reset
	}
	if until.After(now) {
		return until, nil
	}
	if p == prioritySweep && l.known && l.reset.After(now) {
		if reserve <= 0 {
			reserve = l.limit / 10
		}
		if l.remaining < reserve {
			return time.Time{}, &RateLimitError{Until: l.reset, Reserve: true}
		}
	}
	return time.Time{}, nil
}

// budget returns the remaining calls and the reset time; -1 when GitHub
// has not told yet (or sends no rate-limit headers, as GHES by default).
func (l *limiter) budget(now time.Time) (int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.known {
		return -1, time.Time{}
	}
	if !l.reset.After(now) {
		return l.limit, time.Time{} // the window has rolled over
	}
	return l.remaining, l.reset
}

// Budget returns the rate-limit budget of the target's credential as of
// the last answer: remaining calls and when the window resets. remaining
// is -1 before the first answer or when the forge sends no rate-limit
// headers (GHES with rate limits off).
func (c *Client) Budget() (remaining int, reset time.Time) {
	_, key, ok := c.currentKey()
	if !ok {
		return -1, time.Time{}
	}
	return c.opt.Cache.limiter(key).budget(c.clock.Now())
}

// currentKey is the limiter key of the target's credential, if known
// without I/O.
func (c *Client) currentKey() (string, string, bool) {
	if c.app == nil {
		return "", c.limKey, true
	}
	return c.app.knownKey()
}
