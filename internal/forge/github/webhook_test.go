package github

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

const testSecret = corral.Secret("It's a Secret to Everybody")

func signedHeaders(t *testing.T, event string, body []byte) http.Header {
	t.Helper()
	h := http.Header{}
	h.Set(HeaderEvent, event)
	h.Set(HeaderDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	h.Set(HeaderSignature, Sign(testSecret, body))
	return h
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParser_ParseWebhook_workflowJobFixtures(t *testing.T) {
	tests := []struct {
		file         string
		installation int64
		repo         string
		want         corral.JobEvent
		steps        int // completed: the steps sent
	}{
		{"workflow_job.queued.json", 3456996, "Codertocat/Hello-World", corral.JobEvent{
			Action: corral.ActionQueued, ForgeJobID: 289782451, RunID: 2202229078, RunAttempt: 1,
			Repo: "Codertocat/Hello-World", Name: "update", Labels: []string{"ubuntu-latest"},
			RunnerID: 5, RunnerName: "GitHub Actions 5", At: ts("2021-09-13T02:21:13Z")}, 0},
		{"workflow_job.queued.2.json", 23154469, "lineville/elastic-machines-testing", corral.JobEvent{
			Action: corral.ActionQueued, ForgeJobID: 12877621891, RunID: 4747967848, RunAttempt: 1,
			Repo: "lineville/elastic-machines-testing", Name: "test", Labels: []string{"self-hosted", "k8s"},
			At: ts("2023-04-19T21:12:12Z")}, 0},
		{"workflow_job.waiting.json", 23154469, "lineville/elastic-machines-testing", corral.JobEvent{
			Action: corral.ActionWaiting, ForgeJobID: 12877621891, RunID: 4747967848, RunAttempt: 1,
			Repo: "lineville/elastic-machines-testing", Name: "test", Labels: []string{"self-hosted", "k8s"},
			At: ts("2023-04-19T21:12:12Z")}, 0},
		{"workflow_job.in_progress.json", 0, "octo-org/example-workflow", corral.JobEvent{
			Action: corral.ActionInProgress, ForgeJobID: 2832853555, RunID: 940463255,
			Repo: "octo-org/example-workflow", Name: "Test workflow", Labels: []string{"gpu", "db-app", "dc-03"},
			RunnerID: 1, RunnerName: "my runner", At: ts("2021-06-15T19:22:27Z")}, 0},
		{"workflow_job.in_progress.2.json", 1, "Codertocat/Hello-World", corral.JobEvent{
			Action: corral.ActionInProgress, ForgeJobID: 289782451, RunID: 2202229078, RunAttempt: 1,
			Repo: "Codertocat/Hello-World", Name: "Analyze (javascript)", Labels: []string{"ubuntu-latest"},
			RunnerID: 5, RunnerName: "GitHub Actions 5", At: ts("2021-09-13T02:21:13Z")}, 0},
		{"workflow_job.in_progress.3.json", 3456996, "wolfy1339/github-events-schemas", corral.JobEvent{
			Action: corral.ActionInProgress, ForgeJobID: 14541957942, RunID: 5373506832, RunAttempt: 1,
			Repo: "wolfy1339/github-events-schemas", Name: "Do examples need to be regenerated?",
			Labels: []string{"ubuntu-latest"}, RunnerID: 6, RunnerName: "GitHub Actions 6",
			At: ts("2023-06-26T03:31:36Z")}, 0},
		{"workflow_job.completed.json", 0, "Codertocat/Hello-World", corral.JobEvent{
			Action: corral.ActionCompleted, ForgeJobID: 289782451, RunID: 2202229078, RunAttempt: 1,
			Repo: "Codertocat/Hello-World", Name: "linters", Labels: []string{"ubuntu-latest"},
			RunnerID: 5, RunnerName: "GitHub Actions 5", Conclusion: "failure", At: ts("2021-08-05T10:38:16Z")}, 12},
		{"workflow_job.completed.2.json", 0, "Codertocat/Hello-World", corral.JobEvent{
			Action: corral.ActionCompleted, ForgeJobID: 289782451, RunID: 2202229078, RunAttempt: 1,
			Repo: "Codertocat/Hello-World", Name: "linters", Labels: []string{"ubuntu-latest"},
			RunnerID: 5, RunnerName: "GitHub Actions 5", Conclusion: "success", At: ts("2021-08-05T10:38:16Z")}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readFixture(t, tt.file)
			d, err := Parser{}.ParseWebhook(signedHeaders(t, "workflow_job", body), body, testSecret)
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if d.Event != "workflow_job" || d.ID != "72d3162e-cc78-11e3-81ab-4c9367dc0958" {
				t.Errorf("event/id = %q/%q", d.Event, d.ID)
			}
			if d.InstallationID != tt.installation || d.Repo != tt.repo {
				t.Errorf("installation/repo = %d/%q, want %d/%q", d.InstallationID, d.Repo, tt.installation, tt.repo)
			}
			if d.Job == nil {
				t.Fatal("Job is nil")
			}
			got := *d.Job
			if !slices.Equal(got.Labels, tt.want.Labels) {
				t.Errorf("labels = %q, want %q", got.Labels, tt.want.Labels)
			}
			got.Labels, tt.want.Labels = nil, nil
			if !got.At.Equal(tt.want.At) {
				t.Errorf("At = %v, want %v", got.At, tt.want.At)
			}
			got.At, tt.want.At = time.Time{}, time.Time{}
			if got.Action == corral.ActionCompleted {
				// What CI analytics reads: both fixtures are CodeQL's
				// "linters", created 10:33:58, started 10:34:58,
				// completed 10:38:16; the first step "Set up job" took 3 s.
				if got.Workflow != "CodeQL" || !got.CreatedAt.Equal(ts("2021-08-05T10:33:58Z")) ||
					!got.StartedAt.Equal(ts("2021-08-05T10:34:58Z")) || !got.CompletedAt.Equal(ts("2021-08-05T10:38:16Z")) {
					t.Errorf("analytics fields: workflow %q created %v started %v completed %v", got.Workflow, got.CreatedAt, got.StartedAt, got.CompletedAt)
				}
				if len(got.Steps) != tt.steps {
					t.Fatalf("%d steps, want %d", len(got.Steps), tt.steps)
				}
				if s := got.Steps[0]; s.Name != "Set up job" || s.Number != 1 || s.Conclusion != "success" || s.Duration() != 3*time.Second {
					t.Errorf("first step: %+v (%v)", s, s.Duration())
				}
				got.Workflow, got.CreatedAt, got.StartedAt, got.CompletedAt, got.Steps = "", time.Time{}, time.Time{}, time.Time{}, nil
			} else if got.Workflow != "" || got.Steps != nil || !got.StartedAt.IsZero() {
				t.Errorf("analytics fields set on a %s event: %+v", got.Action, got)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("job =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestParser_ParseWebhook_pingFixtures(t *testing.T) {
	for _, tt := range []struct{ file, repo string }{
		{"ping.json", "Octocoders/Hello-World"},
		{"ping.2.json", "Octocoders/Hello-World"},
		{"ping.3.json", "Octocoders/Hello-World"},
		{"ping.4.json", ""},
	} {
		t.Run(tt.file, func(t *testing.T) {
			body := readFixture(t, tt.file)
			d, err := Parser{}.ParseWebhook(signedHeaders(t, "ping", body), body, testSecret)
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if d.Event != "ping" || d.Job != nil || d.Repo != tt.repo || d.ID == "" {
				t.Errorf("delivery = %+v", d)
			}
		})
	}
}

func TestParser_ParseWebhook_otherEvent(t *testing.T) {
	body := []byte(`{"action":"requested","workflow_run":{"id":1},"repository":{"full_name":"o/r"},"installation":{"id":7}}`)
	d, err := Parser{}.ParseWebhook(signedHeaders(t, "workflow_run", body), body, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job != nil || d.Event != "workflow_run" || d.Repo != "o/r" || d.InstallationID != 7 {
		t.Errorf("delivery = %+v", d)
	}
}

func TestParser_ParseWebhook_refused(t *testing.T) {
	body := readFixture(t, "workflow_job.queued.json")
	tests := []struct {
		name   string
		mutate func(h http.Header) (http.Header, corral.Secret)
	}{
		{"wrong signature", func(h http.Header) (http.Header, corral.Secret) {
			h.Set(HeaderSignature, Sign("another secret", body))
			return h, testSecret
		}},
		{"missing signature", func(h http.Header) (http.Header, corral.Secret) {
			h.Del(HeaderSignature)
			return h, testSecret
		}},
		{"sha1 only", func(h http.Header) (http.Header, corral.Secret) {
			h.Set(HeaderSignature, "sha1=0123")
			return h, testSecret
		}},
		{"not hex", func(h http.Header) (http.Header, corral.Secret) {
			h.Set(HeaderSignature, "sha256=zz")
			return h, testSecret
		}},
		{"empty secret configured", func(h http.Header) (http.Header, corral.Secret) {
			h.Set(HeaderSignature, Sign("", body))
			return h, ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, secret := tt.mutate(signedHeaders(t, "workflow_job", body))
			_, err := Parser{}.ParseWebhook(h, body, secret)
			if !errors.Is(err, corral.ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
		})
	}
	t.Run("body changed after signing", func(t *testing.T) {
		h := signedHeaders(t, "workflow_job", body)
		changed := append([]byte(nil), body...)
		changed[len(changed)-2] = ' '
		if _, err := (Parser{}).ParseWebhook(h, changed, testSecret); !errors.Is(err, corral.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		_, err := Parser{MaxBody: 100}.ParseWebhook(signedHeaders(t, "workflow_job", body), body, testSecret)
		if !errors.Is(err, corral.ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
}

func TestParser_ParseWebhook_badInput(t *testing.T) {
	tests := []struct {
		name, event, body string
		dropDelivery      bool
	}{
		{name: "malformed JSON", event: "workflow_job", body: `{"action":"queued","workflow_job":{`},
		{name: "empty body", event: "workflow_job", body: ``},
		{name: "id is a string", event: "workflow_job", body: `{"action":"queued","workflow_job":{"id":"12"}}`},
		{name: "labels not strings", event: "workflow_job", body: `{"action":"queued","workflow_job":{"id":12,"labels":[1]}}`},
		{name: "id missing", event: "workflow_job", body: `{"action":"queued","workflow_job":{"name":"x"}}`},
		{name: "workflow_job null", event: "workflow_job", body: `{"action":"queued","workflow_job":null}`},
		{name: "action missing", event: "workflow_job", body: `{"workflow_job":{"id":12}}`},
		{name: "bad time", event: "workflow_job", body: `{"action":"queued","workflow_job":{"id":12,"created_at":"yesterday"}}`},
		{name: "bad step time", event: "workflow_job", body: `{"action":"completed","workflow_job":{"id":12,"steps":[{"name":"a","started_at":"soon"}]}}`},
		{name: "installation id wrong type", event: "ping", body: `{"installation":{"id":"x"}}`},
		{name: "ping not JSON", event: "ping", body: `zen`},
		{name: "missing delivery id", event: "ping", body: `{}`, dropDelivery: true},
		{name: "missing event", event: "", body: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			h := signedHeaders(t, tt.event, body)
			if tt.dropDelivery {
				h.Del(HeaderDelivery)
			}
			_, err := Parser{}.ParseWebhook(h, body, testSecret)
			if !errors.Is(err, corral.ErrBadInput) {
				t.Fatalf("err = %v, want ErrBadInput", err)
			}
			t.Log(err)
		})
	}
}

func TestParser_ParseWebhook_unknownAction(t *testing.T) {
	body := []byte(`{"action":"teleported","workflow_job":{"id":12},"repository":{"full_name":"o/r"}}`)
	d, err := Parser{}.ParseWebhook(signedHeaders(t, "workflow_job", body), body, testSecret)
	if err != nil {
		t.Fatalf("err = %v, want an ignored delivery", err)
	}
	if d.Job != nil || d.Repo != "o/r" {
		t.Errorf("delivery = %+v, want Job nil", d)
	}
}

func TestParser_ParseWebhook_nullFields(t *testing.T) {
	body := []byte(`{"action":"completed","workflow_job":{"id":12,"run_id":null,"labels":null,"conclusion":null,
		"runner_id":null,"runner_name":null,"created_at":"2024-01-02T03:04:05Z","started_at":null,"completed_at":null}}`)
	d, err := Parser{}.ParseWebhook(signedHeaders(t, "workflow_job", body), body, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	j := d.Job
	if j == nil || j.ForgeJobID != 12 || j.RunnerID != 0 || j.Conclusion != "" || j.Labels != nil {
		t.Fatalf("job = %+v", j)
	}
	if !j.At.Equal(ts("2024-01-02T03:04:05Z")) {
		t.Errorf("At = %v, want created_at as the fallback", j.At)
	}
}
