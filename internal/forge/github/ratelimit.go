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

// DefaultPointsPerMinute is GitHub's secondary rate limit: "no more than
// 900 points per minute are allowed for REST API endpoints", per endpoint,
// a GET costing 1 point and a POST, PATCH, PUT or DELETE 5. Mutating calls
// keep to it per credential and endpoint over any 60 s, waiting their turn
// (minting: 180 JIT configs a minute per credential) rather than meeting
// GitHub's refusals; GETs are left to the primary budget.
const DefaultPointsPerMinute = 900

// writePoints is what one mutating call costs.
const writePoints = 5

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
	// spent: the points of mutating calls per endpoint in the last minute.
	spent map[string]*pointsLog
}

// pointsLog is one endpoint's spending, oldest first.
type pointsLog struct {
	at  []time.Time
	pts []int
	sum int
}

// expire drops the charges a minute or more before now.
func (p *pointsLog) expire(now time.Time) {
	for len(p.at) > 0 && !p.at[0].After(now.Add(-time.Minute)) {
		p.sum -= p.pts[0]
		p.at, p.pts = p.at[1:], p.pts[1:]
	}
}

// spend charges cost points to endpoint when they fit in limit over the
// last minute and returns the zero time and true; otherwise it charges
// nothing and returns when they will fit. Only once GitHub has sent
// rate-limit headers: a GHES with rate limits off sends none, and gets no
// budget.
func (l *limiter) spend(endpoint string, cost, limit int, now time.Time) (until time.Time, charged bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit <= 0 || !l.known {
		return time.Time{}, false
	}
	if l.spent == nil {
		l.spent = map[string]*pointsLog{}
	}
	p := l.spent[endpoint]
	if p == nil {
		p = &pointsLog{}
		l.spent[endpoint] = p
	}
	p.expire(now)
	if p.sum+cost <= limit {
		p.at, p.pts = append(p.at, now), append(p.pts, cost)
		p.sum += cost
		return time.Time{}, true
	}
	need, freed := p.sum+cost-limit, 0
	for i := range p.at {
		if freed += p.pts[i]; freed >= need {
			return p.at[i].Add(time.Minute), false
		}
	}
	return now.Add(time.Minute), false
}

// settle moves a charge of endpoint made at charged to a later time at,
// and reports whether the charge was still in the log (false: its minute
// is over). The transport dates a charge when its call goes out (it may
// have waited for the write slot meanwhile) and again when the answer
// comes: GitHub counts the call on arrival, in between, so the budget
// frees its points no sooner than GitHub does. Dated at the charge, a
// call that waited could go out after its charge had left the budget's
// minute, and the budget would let one call too many through.
func (l *limiter) settle(endpoint string, charged, at time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.spent[endpoint]
	if p == nil {
		return false
	}
	p.expire(at)
	for i := len(p.at) - 1; i >= 0; i-- {
		if !p.at[i].Equal(charged) {
			continue
		}
		// Keep the log oldest first: move the charge up to its new place.
		pts, j := p.pts[i], i
		for j+1 < len(p.at) && p.at[j+1].Before(at) {
			p.at[j], p.pts[j] = p.at[j+1], p.pts[j+1]
			j++
		}
		if at.After(charged) {
			p.at[j], p.pts[j] = at, pts
		}
		return true
	}
	return false
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
