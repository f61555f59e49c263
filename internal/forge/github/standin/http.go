package standin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	docsURL   = "https://docs.github.com/rest"
	rateDocs  = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
	maxBody   = 1 << 20
	ghesAPI   = "/api/v3"
	jitMinVer = "3.10"
)

// authKind says what credential a route takes.
type authKind int

const (
	authNone  authKind = iota // no credential needed (rate_limit, meta)
	authJWT                   // app JWT (Bearer)
	authToken                 // PAT or installation token
)

type route struct {
	name  string // key in Stats.Calls
	auth  authKind
	area  string // authorization area for scoped routes: runners, actions, hooks
	write bool
	free  bool // not counted against the rate limit
	h     func(w http.ResponseWriter, r *http.Request, c *call)
}

// call is one authenticated API request.
type call struct {
	rt    *route
	cred  *credential // nil for anonymous
	scope scope       // zero for unscoped routes
	base  string      // scheme://host[/api/v3], for Link headers and JIT configs
	web   string      // scheme://host, the "web" URL (config.sh --url)
}

type prefixKey struct{}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	scoped := func(method, suffix string, rt *route) {
		for _, p := range []string{"/repos/{owner}/{repo}", "/orgs/{org}", "/enterprises/{enterprise}"} {
			mux.Handle(method+" "+p+suffix, s.api(rt))
		}
	}
	repoOnly := func(method, suffix string, rt *route) {
		mux.Handle(method+" /repos/{owner}/{repo}"+suffix, s.api(rt))
	}
	scoped("POST", "/actions/runners/generate-jitconfig", &route{name: "POST generate-jitconfig", auth: authToken, area: "runners", write: true, h: s.handleJIT})
	scoped("POST", "/actions/runners/registration-token", &route{name: "POST registration-token", auth: authToken, area: "runners", write: true, h: s.handleRegToken(false)})
	scoped("POST", "/actions/runners/remove-token", &route{name: "POST remove-token", auth: authToken, area: "runners", write: true, h: s.handleRegToken(true)})
	scoped("GET", "/actions/runners", &route{name: "GET runners", auth: authToken, area: "runners", h: s.handleListRunners})
	scoped("GET", "/actions/runners/downloads", &route{name: "GET runner downloads", auth: authToken, area: "runners", h: s.handleDownloads})
	scoped("GET", "/actions/runners/{runner_id}", &route{name: "GET runner", auth: authToken, area: "runners", h: s.handleGetRunner})
	scoped("DELETE", "/actions/runners/{runner_id}", &route{name: "DELETE runner", auth: authToken, area: "runners", write: true, h: s.handleDeleteRunner})
	scoped("GET", "/actions/runners/{runner_id}/labels", &route{name: "GET runner labels", auth: authToken, area: "runners", h: s.handleRunnerLabels})
	for _, p := range []string{"/orgs/{org}", "/enterprises/{enterprise}"} {
		mux.Handle("GET "+p+"/actions/runner-groups", s.api(&route{name: "GET runner-groups", auth: authToken, area: "runners", h: s.handleRunnerGroups}))
	}
	repoOnly("GET", "/actions/runs", &route{name: "GET runs", auth: authToken, area: "actions", h: s.handleListRuns})
	repoOnly("GET", "/actions/runs/{run_id}", &route{name: "GET run", auth: authToken, area: "actions", h: s.handleGetRun})
	repoOnly("GET", "/actions/runs/{run_id}/jobs", &route{name: "GET run jobs", auth: authToken, area: "actions", h: s.handleRunJobs})
	repoOnly("POST", "/actions/runs/{run_id}/rerun", &route{name: "POST rerun", auth: authToken, area: "actions", write: true, h: s.handleRerun(false)})
	repoOnly("POST", "/actions/runs/{run_id}/rerun-failed-jobs", &route{name: "POST rerun-failed-jobs", auth: authToken, area: "actions", write: true, h: s.handleRerun(true)})
	repoOnly("GET", "/actions/jobs/{job_id}", &route{name: "GET job", auth: authToken, area: "actions", h: s.handleGetJob})

	mux.Handle("GET /app", s.api(&route{name: "GET app", auth: authJWT, h: s.handleGetApp}))
	mux.Handle("GET /app/installations", s.api(&route{name: "GET app installations", auth: authJWT, h: s.handleListInstallations}))
	mux.Handle("POST /app/installations/{installation_id}/access_tokens", s.api(&route{name: "POST access_tokens", auth: authJWT, h: s.handleAccessToken}))
	mux.Handle("GET /repos/{owner}/{repo}/installation", s.api(&route{name: "GET repo installation", auth: authJWT, h: s.handleScopeInstallation}))
	mux.Handle("GET /orgs/{org}/installation", s.api(&route{name: "GET org installation", auth: authJWT, h: s.handleScopeInstallation}))
	mux.Handle("GET /rate_limit", s.api(&route{name: "GET rate_limit", auth: authNone, free: true, h: s.handleRateLimit}))
	mux.Handle("GET /meta", s.api(&route{name: "GET meta", auth: authNone, free: true, h: s.handleMeta}))

	mux.Handle("GET /app/hook/deliveries", s.api(&route{name: "GET hook deliveries", auth: authJWT, h: s.handleListDeliveries}))
	mux.Handle("GET /app/hook/deliveries/{delivery_id}", s.api(&route{name: "GET hook delivery", auth: authJWT, h: s.handleGetDelivery}))
	mux.Handle("POST /app/hook/deliveries/{delivery_id}/attempts", s.api(&route{name: "POST hook delivery attempts", auth: authJWT, h: s.handleRedeliver}))
	for _, p := range []string{"/repos/{owner}/{repo}", "/orgs/{org}"} {
		mux.Handle("GET "+p+"/hooks", s.api(&route{name: "GET hooks", auth: authToken, area: "hooks", h: s.handleListHooks}))
		mux.Handle("GET "+p+"/hooks/{hook_id}/deliveries", s.api(&route{name: "GET hook deliveries", auth: authToken, area: "hooks", h: s.handleListDeliveries}))
		mux.Handle("GET "+p+"/hooks/{hook_id}/deliveries/{delivery_id}", s.api(&route{name: "GET hook delivery", auth: authToken, area: "hooks", h: s.handleGetDelivery}))
		mux.Handle("POST "+p+"/hooks/{hook_id}/deliveries/{delivery_id}/attempts", s.api(&route{name: "POST hook delivery attempts", auth: authToken, area: "hooks", write: true, h: s.handleRedeliver}))
	}
	mux.Handle("GET /installation/repositories", s.api(&route{name: "GET installation repositories", auth: authToken, h: s.handleInstallationRepos}))
	mux.Handle("GET /orgs/{org}/repos", s.api(&route{name: "GET org repos", auth: authToken, h: s.handleOrgRepos}))
	mux.Handle("POST /app-manifests/{code}/conversions", s.api(&route{name: "POST app-manifests conversions", auth: authNone, h: s.handleManifestConversion}))
	mux.HandleFunc("POST /settings/apps/new", s.handleManifestNew)
	mux.HandleFunc("POST /organizations/{org}/settings/apps/new", s.handleManifestNew)
	s.runnerRoutes(mux)
	s.scaleSetRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found")
	})

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.nextReq++
		a, b := s.rng.Uint32(), s.rng.Uint32()
		reqID := fmt.Sprintf("%04X:%04X:%06X:%06X:%08X", a>>16, a&0xffff, b>>8, s.nextReq&0xffffff, uint32(s.nextReq*2654435761))
		s.mu.Unlock()
		w.Header().Set("X-GitHub-Request-Id", reqID)
		// GitHub stamps its own clock; with Options.Now skewed, so is Date.
		w.Header().Set("Date", s.now().UTC().Format(http.TimeFormat))
		w.Header().Set("X-GitHub-Media-Type", "github.v3; format=json")
		prefix := ""
		if rest, ok := strings.CutPrefix(r.URL.Path, ghesAPI); ok && (rest == "" || rest[0] == '/') {
			prefix = ghesAPI
			r2 := r.Clone(r.Context())
			r2.URL.Path = rest
			r2.URL.RawPath = ""
			if r2.URL.Path == "" {
				r2.URL.Path = "/"
			}
			r = r2
			if s.opt.GHESVersion != "" {
				w.Header().Set("X-GitHub-Enterprise-Version", s.opt.GHESVersion)
			}
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), prefixKey{}, prefix)))
	})
}

// api wraps a route: latency, authentication, counting, rate limits,
// faults, scope existence and authorization, then the handler.
func (s *Server) api(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.checkAPIVersion(w, r) {
			return
		}
		c := &call{rt: rt}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		c.web = scheme + "://" + r.Host
		prefix, _ := r.Context().Value(prefixKey{}).(string)
		c.base = c.web + prefix
		c.scope = scopeOf(r)
		s.mu.Lock()
		latency := s.faults.Latency
		s.mu.Unlock()
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-r.Context().Done():
				return
			}
		}
		cred, status, msg := s.authenticate(r, rt.auth)
		s.mu.Lock()
		s.calls[rt.name]++
		if status != 0 {
			s.mu.Unlock()
			writeError(w, status, msg)
			return
		}
		c.cred = cred
		if cred != nil {
			s.callsByCred[cred.key]++
		}
		if !s.admitLocked(w, c) {
			s.mu.Unlock()
			return
		}
		if c.scope.kind != "" && rt.auth == authToken {
			if !s.scopeExistsLocked(c.scope) {
				s.mu.Unlock()
				s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
				return
			}
			if st, m := s.authorizeLocked(w, cred, c.scope, rt.area, rt.write); st != 0 {
				s.mu.Unlock()
				s.respond(w, r, c, st, errBody(st, m))
				return
			}
		}
		s.mu.Unlock()
		rt.h(w, r, c)
	})
}

func scopeOf(r *http.Request) scope {
	switch {
	case r.PathValue("repo") != "":
		return scope{"repos", r.PathValue("owner") + "/" + r.PathValue("repo")}
	case r.PathValue("org") != "":
		return scope{"orgs", r.PathValue("org")}
	case r.PathValue("enterprise") != "":
		return scope{"enterprises", r.PathValue("enterprise")}
	}
	return scope{}
}

// secondaryMinWait is how long GitHub asks a client to wait after a
// secondary rate limit that carries no Retry-After (seconds).
const secondaryMinWait = 60

// inFlightGrace: requests arriving this soon after a rate-limit refusal
// were in flight before the client could have read it. Half of the
// shortest Retry-After the stand-in sends (1 s), so that a client that
// ignores one is still caught. 250 ms was too little on 2 cores at load
// 16 under the race detector: a GET that corral admitted before the
// refusal came back arrived later than that, once in CI.
const inFlightGrace = 500 * time.Millisecond

// admitLocked applies rate limits and API faults; false means it answered.
func (s *Server) admitLocked(w http.ResponseWriter, c *call) bool {
	if c.cred != nil && !c.rt.free {
		b := s.bucketLocked(c.cred.key)
		now := s.now()
		// A request that arrives just after a refusal was sent before the
		// client could read it (requests in flight): not a violation.
		inFlight := now.Sub(b.limitedAt) < inFlightGrace
		if now.Before(b.retryUntil) && !inFlight {
			s.violationLocked(c.cred.key, c.rt.name, "Retry-After not elapsed")
		} else if now.Before(b.zeroUntil) && s.remainingLocked(b) == 0 && !inFlight {
			s.violationLocked(c.cred.key, c.rt.name, "primary limit exhausted, before X-RateLimit-Reset")
		}
		if s.burstLeft > 0 {
			s.burstLeft--
			s.burstN++
			ra := s.faults.SecondaryRetryAfter
			if ra <= 0 {
				ra = time.Second
			}
			secs := int(math.Ceil(ra.Seconds()))
			if s.faults.SecondaryNoRetryAfter {
				secs = secondaryMinWait
			}
			b.retryUntil = now.Add(time.Duration(secs) * time.Second)
			b.limitedAt = now
			status := http.StatusForbidden
			if s.burstN%2 == 0 {
				status = http.StatusTooManyRequests
			}
			s.rateHeadersLocked(w, b)
			if !s.faults.SecondaryNoRetryAfter {
				w.Header().Set("Retry-After", strconv.Itoa(secs))
			}
			writeJSONRaw(w, status, map[string]string{
				"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID " + w.Header().Get("X-GitHub-Request-Id") + ".",
				"documentation_url": rateDocs + "#about-secondary-rate-limits",
				"status":            strconv.Itoa(status),
			})
			return false
		}
		if wait := s.pointsLocked(c.cred.key, c.rt.name, now); wait > 0 {
			secs := int(math.Ceil(wait.Seconds()))
			b.retryUntil = now.Add(time.Duration(secs) * time.Second)
			b.limitedAt = now
			s.pointsRefused++
			s.rateHeadersLocked(w, b)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeJSONRaw(w, http.StatusForbidden, map[string]string{
				"message":           "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID " + w.Header().Get("X-GitHub-Request-Id") + ".",
				"documentation_url": rateDocs + "#about-secondary-rate-limits",
				"status":            "403",
			})
			return false
		}
		if s.remainingLocked(b) == 0 {
			if b.zeroUntil.IsZero() || now.After(b.zeroUntil) {
				b.limitedAt = now
			}
			b.zeroUntil = s.resetLocked(b)
			s.rateHeadersLocked(w, b)
			writeJSONRaw(w, http.StatusForbidden, map[string]string{
				"message":           fmt.Sprintf("API rate limit exceeded for %s.", strings.ReplaceAll(c.cred.key, ":", " ID ")),
				"documentation_url": rateDocs + "#about-primary-rate-limits",
				"status":            "403",
			})
			return false
		}
	}
	if c.rt.auth != authNone && s.rng.Float64() < s.faults.ServerErrorRate {
		status := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[s.rng.IntN(3)]
		if c.cred != nil {
			s.consumeLocked(w, c)
		}
		writeJSONRaw(w, status, errBody(status, http.StatusText(status)))
		return false
	}
	return true
}

// pointsWindow is the points one credential spent on one endpoint in the
// last minute (Options.PointsPerMinute), oldest first.
type pointsWindow struct {
	at  []time.Time
	pts []int
	sum int
}

// pointsLocked charges a call to endpoint ("POST generate-jitconfig") by
// credential cred against Options.PointsPerMinute, or, when it would pass
// the limit, charges nothing and returns how long until it would fit.
func (s *Server) pointsLocked(cred, endpoint string, now time.Time) time.Duration {
	limit := s.opt.PointsPerMinute
	if limit <= 0 {
		return 0
	}
	cost := 5
	if strings.HasPrefix(endpoint, "GET ") {
		cost = 1
	}
	key := cred + " " + endpoint
	w := s.points[key]
	if w == nil {
		w = &pointsWindow{}
		s.points[key] = w
	}
	for len(w.at) > 0 && !w.at[0].After(now.Add(-time.Minute)) {
		w.sum -= w.pts[0]
		w.at, w.pts = w.at[1:], w.pts[1:]
	}
	if w.sum+cost <= limit {
		w.at, w.pts = append(w.at, now), append(w.pts, cost)
		w.sum += cost
		return 0
	}
	need, freed := w.sum+cost-limit, 0
	for i := range w.at {
		if freed += w.pts[i]; freed >= need {
			return w.at[i].Add(time.Minute).Sub(now)
		}
	}
	return time.Minute
}

type bucket struct {
	used                  int
	reset                 time.Time
	zeroUntil, retryUntil time.Time
	limitedAt             time.Time // when the last refusal was answered
}

func (s *Server) bucketLocked(key string) *bucket {
	now := s.now()
	b := s.buckets[key]
	if b == nil {
		b = &bucket{}
		s.buckets[key] = b
	}
	if !now.Before(b.reset) {
		b.used, b.reset = 0, now.Add(time.Hour).Truncate(time.Second)
	}
	return b
}

func (s *Server) remainingLocked(b *bucket) int {
	if s.now().Before(s.exhaustTill) {
		return 0
	}
	return max(s.opt.RateLimit-b.used, 0)
}

func (s *Server) resetLocked(b *bucket) time.Time {
	if s.now().Before(s.exhaustTill) {
		return s.exhaustTill
	}
	return b.reset
}

func (s *Server) rateHeadersLocked(w http.ResponseWriter, b *bucket) {
	h := w.Header()
	rem := s.remainingLocked(b)
	h.Set("X-RateLimit-Limit", strconv.Itoa(s.opt.RateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(rem))
	h.Set("X-RateLimit-Used", strconv.Itoa(s.opt.RateLimit-rem))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(unixCeil(s.resetLocked(b)), 10))
	h.Set("X-RateLimit-Resource", "core")
}

func unixCeil(t time.Time) int64 {
	if t.Truncate(time.Second).Equal(t) {
		return t.Unix()
	}
	return t.Unix() + 1
}

// consumeLocked counts one call against the credential's primary limit and
// sets the rate-limit headers.
func (s *Server) consumeLocked(w http.ResponseWriter, c *call) {
	b := s.bucketLocked(c.cred.key)
	if !c.rt.free {
		b.used++
	}
	s.rateHeadersLocked(w, b)
	if s.remainingLocked(b) == 0 {
		b.zeroUntil = s.resetLocked(b)
	}
}

// respond writes v as JSON with rate-limit headers; a GET 200 gets an ETag
// and answers 304 (not counted) when If-None-Match matches.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, c *call, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"message":"Server Error"}`)
	}
	body = append(body, '\n')
	notModified := false
	if r.Method == http.MethodGet && status == http.StatusOK {
		sum := sha256.Sum256(body)
		etag := `W/"` + hex.EncodeToString(sum[:16]) + `"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "private, max-age=60, s-maxage=60")
		w.Header().Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
		notModified = etagMatch(r.Header.Get("If-None-Match"), etag)
	}
	s.mu.Lock()
	if notModified {
		s.notModified[c.rt.name]++
	}
	if c.cred != nil {
		if notModified {
			s.rateHeadersLocked(w, s.bucketLocked(c.cred.key))
		} else {
			s.consumeLocked(w, c)
		}
	}
	s.mu.Unlock()
	if notModified {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func etagMatch(header, etag string) bool {
	strip := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for _, v := range strings.Split(header, ",") {
		if strings.TrimSpace(v) == "*" || (strip(v) != "" && strip(v) == strip(etag)) {
			return true
		}
	}
	return false
}

func errBody(status int, msg string) map[string]string {
	return map[string]string{"message": msg, "documentation_url": docsURL, "status": strconv.Itoa(status)}
}

func writeJSONRaw(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSONRaw(w, status, errBody(status, msg))
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// page reads per_page (default 30, max 100) and page (from 1), sets a
// GitHub Link header (next, last, first, prev) and returns slice bounds.
func page(w http.ResponseWriter, r *http.Request, c *call, total int) (from, to int) {
	q := r.URL.Query()
	perPage, pg := 30, 1
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 {
		perPage = min(n, 100)
	}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 0 {
		pg = n
	}
	last := max((total+perPage-1)/perPage, 1)
	link := func(p int, rel string) string {
		v := r.URL.Query()
		v.Set("per_page", strconv.Itoa(perPage))
		v.Set("page", strconv.Itoa(p))
		return fmt.Sprintf("<%s%s?%s>; rel=%q", c.base, r.URL.EscapedPath(), v.Encode(), rel)
	}
	var links []string
	if pg > 1 {
		links = append(links, link(min(pg-1, last), "prev"))
	}
	if pg < last {
		links = append(links, link(pg+1, "next"), link(last, "last"))
	}
	if pg > 1 {
		links = append(links, link(1, "first"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	from = min((pg-1)*perPage, total)
	return from, min(from+perPage, total)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func pathID(r *http.Request, name string) int64 {
	n, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
