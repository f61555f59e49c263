package route

import (
	"fmt"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// issuePools are the pools of issue 18 item 4: an x64 pool capped at 8 cpu
// and an arm64 pool with no cap.
func issuePools(armAny bool) []corral.Pool {
	return []corral.Pool{
		{ID: "small-docker", Labels: []string{"corral"}, Provider: "docker", Flavor: fl(2, 4, 20, "x64"), Max: fl(8, 0, 0, "")},
		{ID: "arm", Labels: []string{"corral"}, Provider: "docker", Flavor: fl(2, 4, 20, "arm64"), AcceptAnyArch: armAny},
	}
}

func TestMatcher_RouteArchless(t *testing.T) {
	tests := []struct {
		name    string
		armAny  bool
		defArch string
		labels  []string
		want    []string          // pool ids
		why     map[string]string // substring of a pool's check reason
	}{
		{name: "arch-less job goes to the default arch only", labels: []string{"self-hosted", "corral"},
			want: []string{"small-docker"}, why: map[string]string{"arm": "job names no arch; pool is arm64, the default is x64"}},
		{name: "arch-less job over the x64 cap is not sent to arm", labels: []string{"self-hosted", "corral", "64cpu"},
			why: map[string]string{"small-docker": "asks 64 cpu, pool small-docker caps at 8", "arm": "job names no arch"}},
		{name: "arm64 word", labels: []string{"corral", "ARM64", "64cpu"}, want: []string{"arm"}},
		{name: "x64 word", labels: []string{"corral", "x64"}, want: []string{"small-docker"}},
		{name: "pool opts in", armAny: true, labels: []string{"corral"}, want: []string{"arm", "small-docker"}},
		{name: "default arch arm64", defArch: "aarch64", labels: []string{"corral"}, want: []string{"arm"},
			why: map[string]string{"small-docker": "job names no arch; pool is x64, the default is arm64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(issuePools(tt.armAny), Options{DefaultArch: tt.defArch})
			if err != nil {
				t.Fatal(err)
			}
			d := m.Route("", "", tt.labels)
			var got []string
			for _, r := range d.Routes {
				got = append(got, r.PoolID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("routes %v, want %v; reason %q", got, tt.want, d.Reason)
			}
			for _, c := range d.Checks {
				if w, ok := tt.why[c.PoolID]; ok && !strings.Contains(c.Reason, w) {
					t.Errorf("pool %s: reason %q, want it to contain %q", c.PoolID, c.Reason, w)
				}
			}
			if len(tt.want) == 0 && !strings.Contains(d.Explain(), "refuses  job names no arch") {
				t.Errorf("explain does not say why arm was not chosen:\n%s", d.Explain())
			}
		})
	}
	t.Run("unknown default arch", func(t *testing.T) {
		if _, err := New(issuePools(false), Options{DefaultArch: "sparc"}); err == nil || !strings.Contains(err.Error(), "default_arch") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestMatcher_RouteLabelLimits(t *testing.T) {
	m, err := New(issuePools(false), Options{})
	if err != nil {
		t.Fatal(err)
	}
	many := func(n int, f func(i int) string) []string {
		out := []string{"corral"}
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	tests := []struct {
		name   string
		labels []string
		reason string // "" = routed
	}{
		{name: "at the count limit", labels: many(MaxLabels-1, func(i int) string { return fmt.Sprint("l", i) })},
		{name: "over the count limit", labels: many(MaxLabels, func(i int) string { return fmt.Sprint("l", i) }),
			reason: "job has more than 100 distinct labels; the forges take at most 100"},
		{name: "thousands of copies count once", labels: many(5000, func(i int) string { return []string{"corral", "CORRAL", "x64"}[i%3] })},
		{name: "at the length limit", labels: []string{"corral", strings.Repeat("a", MaxLabelLen)}},
		{name: "a million characters", labels: []string{"corral", strings.Repeat("b", 1_000_000)},
			reason: "is longer than 256 characters, the forges' limit"},
		{name: "newline", labels: []string{"corral", "evil\nlabel"}, reason: `label "evil\nlabel" contains a control character`},
		{name: "nul", labels: []string{"corral", "a\x00b"}, reason: "contains a control character"},
		{name: "escape", labels: []string{"corral", "\x1b[31mred"}, reason: "contains a control character"},
		{name: "del", labels: []string{"corral", "a\x7f"}, reason: "contains a control character"},
		{name: "invalid utf-8", labels: []string{"corral", "a\xffb"}, reason: "is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := m.Route("", "", tt.labels)
			if tt.reason == "" {
				if len(d.Routes) == 0 {
					t.Fatalf("refused: %s", d.Reason)
				}
				return
			}
			if len(d.Routes) != 0 || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("routes %v reason %q, want a refusal containing %q", d.Routes, d.Reason, tt.reason)
			}
			if len(d.Reason) > 400 {
				t.Fatalf("reason of %d bytes echoes the label", len(d.Reason))
			}
		})
	}
}

func TestBoundLabels(t *testing.T) {
	m, err := New(issuePools(false), Options{})
	if err != nil {
		t.Fatal(err)
	}
	many := []string{"corral"}
	for i := range 300 {
		many = append(many, fmt.Sprint("L", i), fmt.Sprint("l", i))
	}
	for _, ls := range [][]string{
		many, many[:100], many[:101],
		{"corral", strings.Repeat("é", 10_000)}, {"corral", strings.Repeat("a", MaxLabelLen)},
		{"corral", " x64\t"}, {"corral", "Corral", "CORRAL"},
	} {
		b := BoundLabels(ls)
		if len(b) > MaxLabels+1 {
			t.Fatalf("%d labels kept", len(b))
		}
		full, bound := m.Route("", "", ls), m.Route("", "", b)
		if fmt.Sprint(full.Routes) != fmt.Sprint(bound.Routes) || full.Reason != bound.Reason {
			t.Errorf("verdicts differ for %d labels:\n%v %q\n%v %q", len(ls), full.Routes, full.Reason, bound.Routes, bound.Reason)
		}
	}
}

func TestRunnerLabels_Dedup(t *testing.T) {
	job := []string{"corral", "CORRAL", " x64", "Corral", "run-1", "X64"}
	got := RunnerLabels(corral.Pool{}, job)
	if fmt.Sprint(got) != "[corral x64 run-1]" {
		t.Fatalf("RunnerLabels = %v", got)
	}
}
