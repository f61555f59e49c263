package ledger_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

func TestLedger_IngestHostileLabels(t *testing.T) {
	l, st, _ := setup(t)
	many := []string{"corral"}
	for i := range 5000 {
		many = append(many, fmt.Sprint("label-", i))
	}
	tests := []struct {
		name   string
		labels []string
		reason string
	}{
		{"thousands of labels", many, "more than 100 distinct labels"},
		{"a million characters", []string{"corral", strings.Repeat("z", 1_000_000)}, "longer than 256 characters"},
		{"control characters", []string{"corral", "a\x1b[2Jb"}, "contains a control character"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := int64(100 + i)
			ingest(t, l, delivery(fmt.Sprint("h", i), corral.ActionQueued, id, "", tt.labels...))
			j, tl := job(t, st, id)
			if j.State != corral.JobUnroutable || !strings.Contains(j.Reason, tt.reason) {
				t.Fatalf("job %s %q, want unroutable: %s", j.State, j.Reason, tt.reason)
			}
			if len(j.Labels) > route.MaxLabels+1 {
				t.Errorf("%d labels stored", len(j.Labels))
			}
			for _, lb := range j.Labels {
				if utf8.RuneCountInString(lb) > route.MaxLabelLen+1 {
					t.Errorf("a label of %d characters stored", len(lb))
				}
			}
			if last := tl[len(tl)-1]; last.Kind != corral.EvUnroutable || len(last.Detail) > 400 {
				t.Errorf("timeline ends with %s of %d bytes", last.Kind, len(last.Detail))
			}
			// Routed again as stored, the verdict holds.
			if n, err := l.Reroute(t.Context()); err != nil || n != 0 {
				t.Errorf("reroute changed %d jobs (%v): the stored labels read differently", n, err)
			}
		})
	}
}
