package github

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// FuzzParseWebhook feeds correctly signed bodies of any shape to the
// parser (the signature is checked first, so only a holder of the secret
// reaches the decoder, but a forge may still send what corral does not
// expect): it never panics, and every refusal wraps ErrBadInput; a
// delivery it accepts carries the event it was sent as.
func FuzzParseWebhook(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("workflow_job", b)
	}
	f.Add("ping", []byte(`{"zen":"x","hook_id":1}`))
	f.Add("workflow_job", []byte(`{"action":"queued","workflow_job":{"id":-1,"labels":[""]}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := signedHeaders(t, event, body)
		d, err := Parser{}.ParseWebhook(h, body, testSecret)
		if err != nil {
			if !errors.Is(err, corral.ErrBadInput) && !errors.Is(err, corral.ErrUnauthorized) {
				t.Fatalf("refusal %v wraps neither ErrBadInput nor ErrUnauthorized", err)
			}
			return
		}
		if d.Event != event {
			t.Fatalf("accepted as event %q, sent as %q", d.Event, event)
		}
		if d.Job != nil && d.Job.ForgeJobID == 0 && d.Event == "workflow_job" {
			t.Fatalf("a workflow_job delivery accepted without a job id: %+v", d.Job)
		}
	})
}
