package standin

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxFilteredRuns: "This endpoint will return up to 1,000 results for
// each search when using the following parameters: actor, branch,
// check_suite_id, created, event, head_sha, status." total_count still
// counts every match; pages past the thousandth result are empty.
const maxFilteredRuns = 1000

var cappingParams = []string{"actor", "branch", "check_suite_id", "created", "event", "head_sha", "status"}

func capsRuns(q url.Values) bool {
	for _, p := range cappingParams {
		if q.Get(p) != "" {
			return true
		}
	}
	return false
}

// createdFilter parses GitHub's date-range syntax of the created
// parameter: ">=T", ">T", "<=T", "<T", "A..B", or a bare date; T is a date
// (YYYY-MM-DD) or an RFC 3339 time. ok is false for a value it cannot
// read (GitHub then matches nothing).
func createdFilter(v string) (match func(time.Time) bool, ok bool) {
	parse := func(s string, end bool) (time.Time, bool) {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			return t, true
		}
		if t, err := time.Parse("2006-01-02", s); err == nil {
			if end {
				t = t.Add(24*time.Hour - time.Nanosecond)
			}
			return t, true
		}
		return time.Time{}, false
	}
	switch {
	case v == "":
		return func(time.Time) bool { return true }, true
	case strings.Contains(v, ".."):
		a, b, _ := strings.Cut(v, "..")
		from, ok1 := parse(a, false)
		to, ok2 := parse(b, true)
		return func(t time.Time) bool { return !t.Before(from) && !t.After(to) }, ok1 && ok2
	case strings.HasPrefix(v, ">="):
		from, ok := parse(v[2:], false)
		return func(t time.Time) bool { return !t.Before(from) }, ok
	case strings.HasPrefix(v, "<="):
		to, ok := parse(v[2:], true)
		return func(t time.Time) bool { return !t.After(to) }, ok
	case strings.HasPrefix(v, ">"):
		from, ok := parse(v[1:], true)
		return func(t time.Time) bool { return t.After(from) }, ok
	case strings.HasPrefix(v, "<"):
		to, ok := parse(v[1:], false)
		return func(t time.Time) bool { return t.Before(to) }, ok
	}
	from, ok1 := parse(v, false)
	to, ok2 := parse(v, true)
	return func(t time.Time) bool { return !t.Before(from) && !t.After(to) }, ok1 && ok2
}

// pageRuns is page() for the run listing: with a capping filter, paging
// stops at the thousandth result while total stays the full count.
func (s *Server) pageRuns(w http.ResponseWriter, r *http.Request, c *call, total int) (from, to int) {
	limit := maxFilteredRuns
	if s.opt.RunListCap > 0 {
		limit = s.opt.RunListCap
	}
	if !capsRuns(r.URL.Query()) || total <= limit {
		return page(w, r, c, total)
	}
	return page(w, r, c, limit)
}
