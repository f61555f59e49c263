package reqid_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// syncBuf is a log sink safe for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// serve runs h behind reqid.Handler on a real 127.0.0.1 server.
func serve(t *testing.T, h http.Handler) (*httptest.Server, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(reqid.Handler(log, h))
	t.Cleanup(srv.Close)
	return srv, logs
}

func get(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range hdr {
		req.Header.Add(reqid.Header, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestHandler_EchoesSaneID(t *testing.T) {
	var seen string
	hlogs := &syncBuf{}
	srv, logs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = reqid.From(r.Context())
		reqid.Logger(r, slog.New(slog.NewJSONHandler(hlogs, nil))).Info("handler line")
		w.WriteHeader(http.StatusTeapot)
	}))
	id := "abc.DEF_123-" + strings.Repeat("x", reqid.MaxLen-12)
	resp := get(t, srv.URL+"/p", id)
	if got := resp.Header.Get(reqid.Header); got != id {
		t.Fatalf("answer id %q, want the request's %q", got, id)
	}
	if seen != id {
		t.Fatalf("handler saw id %q", seen)
	}
	// The access line and the handler's line both carry it.
	var access, handler bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()+hlogs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["request_id"] != id {
			t.Errorf("log line without the id: %s", line)
		}
		switch m["msg"] {
		case "http request":
			access = m["status"] == float64(http.StatusTeapot) && m["path"] == "/p"
		case "handler line":
			handler = true
		}
	}
	if !access || !handler {
		t.Fatalf("missing access (%v) or handler (%v) line: %s", access, handler, logs)
	}
}

func TestHandler_GeneratesOrReplaces(t *testing.T) {
	srv, logs := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ids := map[string]bool{}
	for name, hdr := range map[string][]string{
		"none":        nil,
		"empty":       {""},
		"too long":    {strings.Repeat("a", reqid.MaxLen+1)},
		"space":       {"a b"},
		"quote":       {`a"b`},
		"log forging": {"ok\" level=ERROR msg=forged"},
		"non-ascii":   {"idé"},
		"two headers": {"one", "two"},
	} {
		resp := get(t, srv.URL, hdr...)
		got := resp.Header.Get(reqid.Header)
		if !reqid.Valid(got) || len(got) != 32 {
			t.Errorf("%s: answer id %q, want a fresh 32-hex id", name, got)
		}
		for _, h := range hdr {
			if got == h {
				t.Errorf("%s: the hostile id %q was echoed", name, h)
			}
		}
		if ids[got] {
			t.Errorf("%s: id %q repeated", name, got)
		}
		ids[got] = true
	}
	if strings.Contains(logs.String(), "forged") {
		t.Fatalf("a hostile id reached the log: %s", logs)
	}
	// Newlines cannot pass through net/http's client, so the check is on
	// Valid, which the handler uses.
	for _, bad := range []string{"a\nb", "a\r\nX-Evil: 1", "a\x00", "a/b", "a;b"} {
		if reqid.Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}

// TestHandler_ErrorBody: the one error body shape carries the answer's id.
func TestHandler_ErrorBody(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("pool %q: %w", "x", corral.ErrNotFound),
		errors.New("database on fire"), // 500: no details, still the id
	} {
		srv, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { httperr.Write(w, err) }))
		resp := get(t, srv.URL, "trace-42")
		var body httperr.Body
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body.RequestID != "trace-42" || resp.Header.Get(reqid.Header) != "trace-42" {
			t.Errorf("%v: body %+v, header %q, want request_id trace-42", err, body, resp.Header.Get(reqid.Header))
		}
		if resp.StatusCode == 500 && strings.Contains(body.Error, "fire") {
			t.Errorf("500 body leaks the error: %+v", body)
		}
	}
}

// TestHandler_Nested: wrapped twice, one id and one access line.
func TestHandler_Nested(t *testing.T) {
	logs := &syncBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var inner string
	h := reqid.Handler(log, reqid.Handler(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = reqid.From(r.Context())
	})))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if got := w.Header().Get(reqid.Header); got == "" || got != inner {
		t.Fatalf("answer id %q, handler id %q", got, inner)
	}
	if n := strings.Count(logs.String(), `"msg":"http request"`); n != 1 {
		t.Fatalf("%d access lines, want 1: %s", n, logs)
	}
}
