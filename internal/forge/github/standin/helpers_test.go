package standin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
)

const (
	testSecret = corral.Secret("hook-secret")
	adminPAT   = "ghp_admin_all_scopes"
)

var (
	keyOnce sync.Once
	keyA    *rsa.PrivateKey
	keyB    *rsa.PrivateKey
)

func testKeys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

// signJWT makes an RS256 app JWT.
func signJWT(t *testing.T, key *rsa.PrivateKey, iss any, iat, exp time.Time) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{"iss": iss, "iat": iat.Unix(), "exp": exp.Unix()})
	sum := sha256.Sum256([]byte(head))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return head + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// newStandin starts a stand-in on 127.0.0.1 with repo acme/app, org acme,
// enterprise big (owning acme) and an all-scopes classic PAT.
func newStandin(t *testing.T, opt Options) (*Server, string) {
	t.Helper()
	s := New(opt)
	s.AddRepo("acme", "app")
	s.AddEnterprise("big", "acme")
	s.AddPAT(adminPAT, "repo", "admin:org", "manage_runners:enterprise", "admin:org_hook")
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs.URL
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// do calls the stand-in; auth is the whole Authorization value ("" none).
func do(t *testing.T, method, url, auth string, body any, hdr ...string) answer {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-GitHub-Request-Id") == "" {
		t.Errorf("%s %s: no X-GitHub-Request-Id", method, url)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func want(t *testing.T, a answer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body %s", a.status, status, a.body)
	}
}

// receiver is a webhook endpoint that verifies and parses every delivery
// with the github.Parser.
type receiver struct {
	t      *testing.T
	url    string
	mu     sync.Mutex
	status int
	got    []received
}

type received struct {
	header http.Header
	body   []byte
	d      corral.Delivery
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, status: http.StatusAccepted}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			// The receiver closing at the end of a test cuts a delivery
			// in flight; that is no parse failure.
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		d, err := github.Parser{}.ParseWebhook(r.Header, b, testSecret)
		if err != nil {
			t.Errorf("parse webhook: %v (event %s, %d bytes, content-length %s, sig %s)", err, r.Header.Get("X-GitHub-Event"), len(b), r.Header.Get("Content-Length"), r.Header.Get("X-Hub-Signature-256"))
		}
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: b, d: d})
		st := rc.status
		rc.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(hs.Close)
	rc.url = hs.URL
	return rc
}

func (rc *receiver) setStatus(s int) {
	rc.mu.Lock()
	rc.status = s
	rc.mu.Unlock()
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// jobEvents returns the workflow_job actions received for job id.
func (rc *receiver) jobEvents(id int64) []corral.JobEvent {
	var out []corral.JobEvent
	for _, r := range rc.all() {
		if r.d.Job != nil && r.d.Job.ForgeJobID == id {
			out = append(out, *r.d.Job)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func token(s string) string { return "token " + s }

func jitBody(name string, labels ...string) map[string]any {
	return map[string]any{"name": name, "runner_group_id": 1, "labels": labels}
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// startRunner runs RunRunner in a goroutine; the channel gets its result.
func startRunner(ctx context.Context, env map[string]string, log io.Writer) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- RunRunner(ctx, envOf(env), log) }()
	return ch
}

func jobByID(s *Server, id int64) JobInfo {
	for _, j := range s.Jobs() {
		if j.ID == id {
			return j
		}
	}
	return JobInfo{}
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}
