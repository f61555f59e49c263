package github

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// maxBody caps what the transport buffers of one answer (cached pages,
// error bodies).
const maxBody = 8 << 20

// base is the lowest transport, built at first use so that NewClient does
// no I/O (the ca_file is read then).
type base struct {
	hc      *http.Client
	caFile  string
	timeout time.Duration

	once sync.Once
	rt   http.RoundTripper
	err  error
}

func newBase(hc *http.Client, caFile string) (*base, error) {
	b := &base{hc: hc, caFile: caFile, timeout: 30 * time.Second}
	if hc != nil && hc.Timeout > 0 {
		b.timeout = hc.Timeout
	}
	if caFile != "" && hc != nil && hc.Transport != nil {
		if _, ok := hc.Transport.(*http.Transport); !ok {
			return nil, fmt.Errorf("ca_file needs an *http.Transport in the HTTP client: %w", corral.ErrBadInput)
		}
	}
	return b, nil
}

func (b *base) roundTripper() (http.RoundTripper, error) {
	b.once.Do(func() {
		var rt http.RoundTripper = http.DefaultTransport
		if b.hc != nil && b.hc.Transport != nil {
			rt = b.hc.Transport
		}
		if b.caFile == "" {
			b.rt = rt
			return
		}
		pem, err := os.ReadFile(b.caFile)
		if err != nil {
			b.err = fmt.Errorf("ca_file: %w: %v", corral.ErrBadInput, err)
			return
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			b.err = fmt.Errorf("ca_file %s holds no PEM certificate: %w", b.caFile, corral.ErrBadInput)
			return
		}
		t := rt.(*http.Transport).Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.RootCAs = pool
		b.rt = t
	})
	return b.rt, b.err
}

// transport sits under go-github: it authorizes each request, honours and
// records rate limits, retries 5xx and network errors with backoff, and
// answers unchanged GETs from the ETag cache (a 304 costs no rate limit).
type transport struct {
	c     *Client
	base  *base
	auth  func(ctx context.Context) (header, limKey string, err error)
	etags *etagCache // nil: no conditional requests
	// refused drops a credential GitHub refused (an installation token);
	// nil for credentials that cannot be renewed.
	refused func(authz string)
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	rt, err := t.base.roundTripper()
	if err != nil {
		return nil, err
	}
	prio := priorityOf(ctx)
	retriedAuth := false
	// chargedAt dates this attempt's points while they are spent (zero
	// with no budget kept; a retry spends again).
	var chargedAt time.Time
	endpoint := req.Method + " " + endpointClass(req.URL.Path)
	for attempt := 1; ; attempt++ {
		authz, key, err := t.auth(ctx)
		if err != nil {
			return nil, err
		}
		lim := t.c.opt.Cache.limiter(key)
		if err := t.admit(ctx, lim, prio); err != nil {
			return nil, err
		}
		// GitHub asks for mutating requests to go one at a time per
		// credential (secondary rate limits): a burst of concurrent mints
		// would all be sent before the first Retry-After comes back. The
		// slot is never held while waiting out a limit.
		mutating := req.Method != http.MethodGet && req.Method != http.MethodHead
		if mutating && chargedAt.IsZero() {
			if chargedAt, err = t.spend(ctx, lim, endpoint, prio); err != nil {
				return nil, err
			}
		}
		unlock := func() {}
		if mutating {
			select {
			case lim.writes <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			unlock = func() { <-lim.writes }
			// The request before this one may have met a limit.
			if until, err := lim.admit(prio, t.c.clock.Now(), t.c.opt.SweepReserve); err != nil || !until.IsZero() {
				unlock()
				attempt--
				continue // admit again: wait (urgent) or fail fast
			}
			// The call goes out now: date its charge now (see settle), or
			// spend again if the charge's minute ended while it waited.
			if !chargedAt.IsZero() {
				now := t.c.clock.Now()
				if !lim.settle(endpoint, chargedAt, now) {
					unlock()
					chargedAt = time.Time{}
					attempt--
					continue
				}
				chargedAt = now
			}
		}
		r := req.Clone(ctx)
		if attempt > 1 && req.GetBody != nil {
			if r.Body, err = req.GetBody(); err != nil {
				unlock()
				return nil, err
			}
		}
		r.Header.Set("Authorization", authz)
		r.Header.Set("X-GitHub-Api-Version", APIVersion)
		if r.Header.Get("Accept") == "" {
			r.Header.Set("Accept", "application/vnd.github+json")
		}
		var cached *etagEntry
		if t.etags != nil && r.Method == http.MethodGet {
			if cached = t.etags.get(r.URL.String()); cached != nil {
				r.Header.Set("If-None-Match", cached.etag)
			}
		}
		actx, cancel := context.WithTimeout(ctx, t.base.timeout)
		resp, err := rt.RoundTrip(r.WithContext(actx))
		if !chargedAt.IsZero() {
			lim.settle(endpoint, chargedAt, t.c.clock.Now())
			chargedAt = time.Time{}
		}
		if err != nil {
			t.c.recordCall(r.URL.Path, 0, false)
			unlock()
			cancel()
			if ctx.Err() != nil || attempt >= t.c.opt.MaxAttempts {
				return nil, err
			}
			if err := t.c.opt.Sleep(ctx, backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		now := t.c.clock.Now()
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		cancel()
		if rerr != nil {
			t.c.recordCall(r.URL.Path, 0, false) // the answer broke off
			unlock()
			if attempt >= t.c.opt.MaxAttempts {
				return nil, fmt.Errorf("reading the answer: %w", rerr)
			}
			continue
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		limited := isRateLimited(resp.StatusCode, resp.Header, body)
		t.c.recordCall(r.URL.Path, resp.StatusCode, limited)
		lim.observe(resp.Header, limited, now)
		unlock()
		switch {
		case resp.StatusCode == http.StatusNotModified && cached != nil:
			return cached.response(r, resp), nil
		case resp.StatusCode == http.StatusOK && t.etags != nil && r.Method == http.MethodGet && resp.Header.Get("ETag") != "":
			t.etags.put(r.URL.String(), resp.Header.Get("ETag"), resp.Header, body)
		case resp.StatusCode == http.StatusUnauthorized && t.refused != nil && !retriedAuth:
			// An installation token refused before its time (revoked,
			// clock skew): drop it and try once with a fresh one.
			retriedAuth = true
			t.refused(authz)
			attempt--
			continue
		case limited && prio == priorityUrgent && attempt < t.c.opt.MaxAttempts:
			// admit waits (bounded) or fails fast on the next round.
			continue
		case resp.StatusCode >= 500 && attempt < t.c.opt.MaxAttempts:
			if err := t.c.opt.Sleep(ctx, backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

// admit lets a request go, waits for a rate limit to lift (urgent calls,
// up to MaxWait), or refuses it with an error wrapping ErrRateLimited.
func (t *transport) admit(ctx context.Context, lim *limiter, prio priority) error {
	for {
		now := t.c.clock.Now()
		until, err := lim.admit(prio, now, t.c.opt.SweepReserve)
		if err != nil {
			return err
		}
		if until.IsZero() {
			return nil
		}
		wait := until.Sub(now)
		if prio != priorityUrgent || wait > t.c.opt.MaxWait {
			return &RateLimitError{Until: until}
		}
		if err := t.c.opt.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// spend waits until the credential's points budget for the endpoint has
// room for one mutating call and charges it (see DefaultPointsPerMinute).
// An urgent call (minting, removing a runner) waits its turn however long
// the queue before it: the budget paces a burst, it does not fail it; a
// sweep's call fails fast instead.
func (t *transport) spend(ctx context.Context, lim *limiter, endpoint string, prio priority) (time.Time, error) {
	for {
		now := t.c.clock.Now()
		until, charged := lim.spend(endpoint, writePoints, t.c.points, now)
		if until.IsZero() {
			if !charged {
				return time.Time{}, nil // no budget kept
			}
			return now, nil
		}
		if prio != priorityUrgent {
			return time.Time{}, &RateLimitError{Until: until}
		}
		if err := t.c.opt.Sleep(ctx, until.Sub(now)); err != nil {
			return time.Time{}, err
		}
	}
}

func backoff(attempt int) time.Duration {
	d := 500 * time.Millisecond << (attempt - 1)
	return min(d, 5*time.Second)
}

// isRateLimited tells a primary or secondary rate limit (403 or 429) from
// a refused permission (403) by GitHub's headers and the documentation_url
// field of its answer.
func isRateLimited(status int, h http.Header, body []byte) bool {
	if status == http.StatusTooManyRequests {
		return true
	}
	if status != http.StatusForbidden {
		return false
	}
	if h.Get("Retry-After") != "" || h.Get("X-RateLimit-Remaining") == "0" {
		return true
	}
	var e struct {
		DocumentationURL string `json:"documentation_url"`
	}
	_ = json.Unmarshal(body, &e)
	return strings.Contains(e.DocumentationURL, "rate-limit") || strings.HasSuffix(e.DocumentationURL, "#abuse-rate-limits")
}

// RateLimitError says a request was not sent because GitHub's rate limit
// (or corral's reserve for runner minting) forbids it until Until. It
// wraps corral.ErrRateLimited.
type RateLimitError struct {
	Until   time.Time
	Reserve bool // refused to keep the reserve, not at the hard limit
}

func (e *RateLimitError) Error() string {
	if e.Reserve {
		return "rate-limit budget is down to the reserve kept for minting runners until " + e.Until.UTC().Format(time.RFC3339)
	}
	return "rate limited until " + e.Until.UTC().Format(time.RFC3339)
}

func (e *RateLimitError) Unwrap() error { return corral.ErrRateLimited }

var _ error = (*RateLimitError)(nil)

// isRateLimitErr reports whether err is our own refusal (not sent).
func isRateLimitErr(err error) bool {
	var rl *RateLimitError
	return errors.As(err, &rl)
}
