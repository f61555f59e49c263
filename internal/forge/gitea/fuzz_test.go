package gitea

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

const fuzzSecret = corral.Secret("fuzz-secret")

// FuzzParseWebhook feeds correctly signed bodies of any shape, seeded with
// the webhooks a real Gitea 1.27.3 sent: the parser never panics, every
// refusal wraps ErrBadInput (or ErrUnauthorized), and an accepted
// workflow_job delivery carries a job id.
func FuzzParseWebhook(f *testing.F) {
	fh, err := os.Open("testdata/gitea-1.27.3-webhooks.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r recorded
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			f.Fatal(err)
		}
		f.Add(r.Event, []byte(r.Payload))
	}
	fh.Close()
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		h := giteaHeaders(event, "fuzz-delivery", body, fuzzSecret)
		d, err := Parser{}.ParseWebhook(h, body, fuzzSecret)
		if err != nil {
			if !errors.Is(err, corral.ErrBadInput) && !errors.Is(err, corral.ErrUnauthorized) {
				t.Fatalf("refusal %v wraps neither ErrBadInput nor ErrUnauthorized", err)
			}
			return
		}
		if d.Job != nil && d.Job.ForgeJobID == 0 {
			t.Fatalf("a job delivery accepted without a job id: %+v", d.Job)
		}
	})
}
