package webhook

import (
	"net/http"
	"sync"
	"time"
)

// RecentSize is how many deliveries the handler remembers for the
// dashboard (Recent).
const RecentSize = 200

// Seen is one delivery as the dashboard shows it: when, for which target,
// the forge's delivery id and event, and what corral made of it. It never
// holds the body, a header other than those two, or a secret.
type Seen struct {
	At       time.Time     `json:"at"`
	Target   string        `json:"target"`           // the path's target, or "app:ID"
	Routed   string        `json:"routed,omitempty"` // for App deliveries: the target chosen
	Delivery string        `json:"delivery,omitempty"`
	Event    string        `json:"event,omitempty"`
	Result   string        `json:"result"` // as Recorder.Delivery's result
	Status   int           `json:"status"` // the HTTP status sent to the forge
	JobID    int64         `json:"job_id,omitempty"`
	Took     time.Duration `json:"took_ns"`
}

// recent is a bounded ring of the last deliveries, in memory only: it is
// a view for people, not a record (the store holds what matters).
type recent struct {
	mu   sync.Mutex
	buf  []Seen
	next int
	full bool
}

func newRecent(n int) *recent { return &recent{buf: make([]Seen, n)} }

func (r *recent) add(s Seen) {
	r.mu.Lock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
}

// list returns the deliveries newest first.
func (r *recent) list() []Seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Seen, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// Recent returns the last RecentSize deliveries this replica answered,
// newest first.
func (h *Handler) Recent() []Seen { return h.recent.list() }

// eventOf is the forge's event name header, cut short.
func eventOf(hd http.Header) string {
	for _, k := range []string{"X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"} {
		if v := hd.Get(k); v != "" {
			if len(v) > 64 {
				v = v[:64]
			}
			return v
		}
	}
	return ""
}

// status is the HTTP status the forge got: a duplicate was answered 202.
func sentStatus(code int) int {
	if code == statusDuplicate {
		return http.StatusAccepted
	}
	return code
}
