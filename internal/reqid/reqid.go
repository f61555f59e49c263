// Package reqid gives every HTTP answer of corral a request id: the
// X-Request-Id header of the request when it is a sane token (1 to 128
// characters of A-Z, a-z, 0-9, '.', '_', '-'), else a new random one. The
// id is set on the answer's header before the handler runs (so that
// httperr's error body carries it), kept in the request's context (Logger
// adds it to a handler's log lines) and written in the access log line.
package reqid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"time"
)

// Header is the request and answer header that carries the id.
const Header = "X-Request-Id"

// MaxLen is the longest id taken from a request.
const MaxLen = 128

type ctxKey struct{}

// Valid reports whether s is a sane request id: 1 to MaxLen characters of
// [A-Za-z0-9._-]. Anything else (newlines, spaces, quotes, a long value)
// would let a caller forge or bloat log lines, and is replaced.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// New returns a fresh id: 16 random bytes in hex.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// From returns the request id in ctx, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// Logger returns log with the request's id attached (log itself when the
// request has none).
func Logger(r *http.Request, log *slog.Logger) *slog.Logger {
	if id := From(r.Context()); id != "" {
		return log.With("request_id", id)
	}
	return log
}

// Handler wraps next: it picks the request id, sets it on the answer,
// hands it down in the context and logs one access line per request
// (debug for answers below 500, error for 5xx). A request that already
// carries an id in its context (an outer Handler) passes through
// unchanged, so that wrapping twice neither logs twice nor changes the id.
func Handler(log *slog.Logger, next http.Handler) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if From(r.Context()) != "" {
			next.ServeHTTP(w, r)
			return
		}
		id := r.Header.Get(Header)
		if !Valid(id) || len(r.Header.Values(Header)) > 1 {
			id = New()
		}
		w.Header().Set(Header, id)
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r.WithContext(With(r.Context(), id)))
		level := slog.LevelDebug
		if rec.status >= 500 {
			level = slog.LevelError
		}
		log.Log(r.Context(), level, "http request", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "bytes", rec.bytes, "duration", time.Since(start), "remote", r.RemoteAddr)
	})
}

// recorder notes the status and size of the answer.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer
// (flushes of the dashboard's and the runner downloads' streams).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
