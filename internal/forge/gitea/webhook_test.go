package gitea

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
)

const hookSecret = corral.Secret("hook-secret-of-the-test")

type recorded struct {
	Event    string          `json:"event"`
	Delivery string          `json:"delivery"`
	Payload  json.RawMessage `json:"payload"`
}

// fixtures reads the webhooks a real Gitea 1.27.3 sent.
func fixtures(t *testing.T) []recorded {
	t.Helper()
	f, err := os.Open("testdata/gitea-1.27.3-webhooks.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []recorded
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r recorded
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// giteaHeaders are the headers Gitea 1.27 sets, with the signatures of body.
func giteaHeaders(event, delivery string, body []byte, secret corral.Secret) http.Header {
	h := http.Header{}
	for _, p := range []string{"X-Gitea-", "X-Gogs-", "X-GitHub-"} {
		h.Set(p+"Delivery", delivery)
		h.Set(p+"Event", event)
		h.Set(p+"Event-Type", event)
	}
	h.Set(HeaderGiteaSignature, Sign(secret, body))
	h.Set("X-Gogs-Signature", Sign(secret, body))
	h.Set(HeaderHubSignature, github.Sign(secret, body))
	return h
}

func TestParser_ParseWebhook(t *testing.T) {
	created := time.Date(2026, 11, 22, 14, 15, 56, 0, time.UTC)
	started := time.Date(2026, 11, 22, 14, 18, 1, 0, time.UTC)
	want := map[string]corral.JobEvent{
		"7eebe7a6-393f-4cad-9f66-a746e1b04b56": {Action: corral.ActionQueued, ForgeJobID: 1, RunID: 1, RunAttempt: 1,
			Repo: "saadmin/testrepo", Name: "build", Labels: []string{"self-hosted", "foo"}, At: created},
		"73965e26-6cf0-4627-b0d9-97b10fb26f46": {Action: corral.ActionInProgress, ForgeJobID: 1, RunID: 1, RunAttempt: 1,
			Repo: "saadmin/testrepo", Name: "build", Labels: []string{"self-hosted", "foo"}, RunnerID: 1, RunnerName: "eph-1", At: started},
		"ee7bca45-300c-45aa-b152-99ccc3049cc1": {Action: corral.ActionCompleted, ForgeJobID: 1, RunID: 1, RunAttempt: 1,
			Repo: "saadmin/testrepo", Name: "build", Labels: []string{"self-hosted", "foo"}, RunnerID: 1, RunnerName: "eph-1",
			Conclusion: "success", At: started},
	}
	jobs := 0
	for _, r := range fixtures(t) {
		t.Run(r.Event+"/"+r.Delivery[:8], func(t *testing.T) {
			d, err := Parser{}.ParseWebhook(giteaHeaders(r.Event, r.Delivery, r.Payload, hookSecret), r.Payload, hookSecret)
			if err != nil {
				t.Fatal(err)
			}
			if d.ID != r.Delivery || d.Event != r.Event || d.Repo != "saadmin/testrepo" {
				t.Errorf("delivery = %q %q %q", d.ID, d.Event, d.Repo)
			}
			w, isJob := want[r.Delivery]
			if !isJob {
				if d.Job != nil {
					t.Errorf("%s: Job = %+v, want nil", r.Event, d.Job)
				}
				return
			}
			jobs++
			if d.Job == nil {
				t.Fatal("Job is nil")
			}
			got := *d.Job
			if !equalEvent(got, w) {
				t.Errorf("job event\n got %+v\nwant %+v", got, w)
			}
			if got.Action != corral.ActionCompleted {
				return
			}
			// What CI analytics reads: the forge's times and its one step;
			// Gitea sends no workflow name.
			if !got.CreatedAt.Equal(created) || !got.StartedAt.Equal(started) || !got.CompletedAt.Equal(started) || got.Workflow != "" {
				t.Errorf("analytics times: created %v started %v completed %v workflow %q", got.CreatedAt, got.StartedAt, got.CompletedAt, got.Workflow)
			}
			if len(got.Steps) != 1 || got.Steps[0].Name != "Run echo hello from $(hostname)" || got.Steps[0].Conclusion != "success" ||
				!got.Steps[0].StartedAt.Equal(started) || got.Steps[0].Duration() != 0 {
				t.Errorf("steps: %+v", got.Steps)
			}
		})
	}
	if jobs != 3 {
		t.Errorf("parsed %d workflow_job fixtures, want 3", jobs)
	}
}

func equalEvent(a, b corral.JobEvent) bool {
	return a.Action == b.Action && a.ForgeJobID == b.ForgeJobID && a.RunID == b.RunID && a.RunAttempt == b.RunAttempt &&
		a.Repo == b.Repo && a.Name == b.Name && strings.Join(a.Labels, ",") == strings.Join(b.Labels, ",") &&
		a.RunnerID == b.RunnerID && a.RunnerName == b.RunnerName && a.Conclusion == b.Conclusion && a.At.Equal(b.At)
}

func queuedFixture(t *testing.T) recorded {
	t.Helper()
	for _, r := range fixtures(t) {
		if r.Event == "workflow_job" {
			return r
		}
	}
	t.Fatal("no workflow_job fixture")
	return recorded{}
}

func TestParser_ParseWebhook_signatures(t *testing.T) {
	r := queuedFixture(t)
	body := []byte(r.Payload)
	only := func(name, value string) http.Header {
		h := http.Header{}
		h.Set("X-Gitea-Delivery", r.Delivery)
		h.Set("X-Gitea-Event", "workflow_job")
		h.Set(name, value)
		return h
	}
	cases := []struct {
		name   string
		h      http.Header
		secret corral.Secret
		want   error
	}{
		{"gitea hex", only(HeaderGiteaSignature, Sign(hookSecret, body)), hookSecret, nil},
		{"forgejo hex", only(HeaderForgejoSignature, Sign(hookSecret, body)), hookSecret, nil},
		{"hub sha256=", only(HeaderHubSignature, github.Sign(hookSecret, body)), hookSecret, nil},
		{"upper-case hex", only(HeaderGiteaSignature, strings.ToUpper(Sign(hookSecret, body))), hookSecret, nil},
		{"wrong secret", only(HeaderGiteaSignature, Sign("other", body)), hookSecret, corral.ErrUnauthorized},
		{"hub without prefix", only(HeaderHubSignature, Sign(hookSecret, body)), hookSecret, corral.ErrUnauthorized},
		{"not hex", only(HeaderGiteaSignature, "zz"), hookSecret, corral.ErrUnauthorized},
		{"no signature", only("X-Other", "x"), hookSecret, corral.ErrUnauthorized},
		{"empty signature headers (hook without secret)", only(HeaderGiteaSignature, ""), hookSecret, corral.ErrUnauthorized},
		{"empty secret", only(HeaderGiteaSignature, Sign("", body)), "", corral.ErrUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parser{}.ParseWebhook(tc.h, body, tc.secret)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), hookSecret.Reveal()) {
				t.Fatal("error reveals the secret")
			}
		})
	}
	t.Run("a wrong gitea signature is not saved by a right hub one", func(t *testing.T) {
		h := only(HeaderGiteaSignature, Sign("other", body))
		h.Set(HeaderHubSignature, github.Sign(hookSecret, body))
		if _, err := (Parser{}).ParseWebhook(h, body, hookSecret); !errors.Is(err, corral.ErrUnauthorized) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("tampered body", func(t *testing.T) {
		h := only(HeaderGiteaSignature, Sign(hookSecret, body))
		bad := append([]byte(nil), body...)
		bad[len(bad)-2] = ' '
		if _, err := (Parser{}).ParseWebhook(h, bad, hookSecret); !errors.Is(err, corral.ErrUnauthorized) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParser_ParseWebhook_headers(t *testing.T) {
	r := queuedFixture(t)
	body := []byte(r.Payload)
	t.Run("forgejo names", func(t *testing.T) {
		h := http.Header{}
		h.Set("X-Forgejo-Delivery", "d-1")
		h.Set("X-Forgejo-Event", "workflow_job")
		h.Set(HeaderForgejoSignature, Sign(hookSecret, body))
		d, err := Parser{}.ParseWebhook(h, body, hookSecret)
		if err != nil || d.ID != "d-1" || d.Job == nil {
			t.Fatalf("d = %+v, err = %v", d, err)
		}
	})
	t.Run("github names", func(t *testing.T) {
		h := http.Header{}
		h.Set("X-GitHub-Delivery", "d-2")
		h.Set("X-GitHub-Event", "workflow_job")
		h.Set(HeaderHubSignature, github.Sign(hookSecret, body))
		d, err := Parser{}.ParseWebhook(h, body, hookSecret)
		if err != nil || d.ID != "d-2" || d.Job == nil {
			t.Fatalf("d = %+v, err = %v", d, err)
		}
	})
	t.Run("no delivery id", func(t *testing.T) {
		h := giteaHeaders("workflow_job", "x", body, hookSecret)
		for _, p := range []string{"X-Gitea-", "X-Gogs-", "X-GitHub-"} {
			h.Del(p + "Delivery")
		}
		if _, err := (Parser{}).ParseWebhook(h, body, hookSecret); !errors.Is(err, corral.ErrBadInput) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("forgejo status event is acknowledged and ignored", func(t *testing.T) {
		b := []byte(`{"action":"status-changed","job":{"id":3},"repository":{"full_name":"o/r"}}`)
		h := http.Header{}
		h.Set("X-Forgejo-Delivery", "d-3")
		h.Set("X-Forgejo-Event", "workflow_job_waiting")
		h.Set(HeaderForgejoSignature, Sign(hookSecret, b))
		d, err := Parser{}.ParseWebhook(h, b, hookSecret)
		if err != nil || d.Job != nil || d.Repo != "o/r" {
			t.Fatalf("d = %+v, err = %v", d, err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		h := giteaHeaders("workflow_job", "x", body, hookSecret)
		if _, err := (Parser{MaxBody: 10}).ParseWebhook(h, body, hookSecret); !errors.Is(err, corral.ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParser_ParseWebhook_payloads(t *testing.T) {
	cases := []struct {
		name string
		body string
		want error
		job  bool
	}{
		{"unknown action ignored", `{"action":"frobbed","workflow_job":{"id":1}}`, nil, false},
		{"missing action", `{"workflow_job":{"id":1}}`, corral.ErrBadInput, false},
		{"missing job", `{"action":"queued"}`, corral.ErrBadInput, false},
		{"zero id", `{"action":"queued","workflow_job":{"id":0}}`, corral.ErrBadInput, false},
		{"id as string", `{"action":"queued","workflow_job":{"id":"1"}}`, corral.ErrBadInput, false},
		{"bad time", `{"action":"queued","workflow_job":{"id":1,"created_at":"yesterday"}}`, corral.ErrBadInput, false},
		{"not json", `{"action":`, corral.ErrBadInput, false},
		{"empty", ``, corral.ErrBadInput, false},
		{"minimal queued", `{"action":"queued","workflow_job":{"id":5,"labels":["a"],"created_at":"1970-01-01T00:00:00Z"}}`, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.body)
			d, err := Parser{}.ParseWebhook(giteaHeaders("workflow_job", "id", b, hookSecret), b, hookSecret)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && (d.Job != nil) != tc.job {
				t.Fatalf("Job = %+v", d.Job)
			}
			if d.Job != nil && !d.Job.At.IsZero() {
				t.Errorf("At = %v: the epoch means unset", d.Job.At)
			}
		})
	}
}
