package route

import (
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/corral-ci/corral/internal/corral"
)

// Covers reports whether a runner with the runner labels may take a job
// with the job labels: every job label is among the runner's,
// case-insensitively (GitHub's and Gitea's rule). Surrounding spaces are
// ignored and blank job labels ask for nothing, as in Route.
func Covers(runner, job []string) bool {
	for _, j := range job {
		j = strings.TrimSpace(j)
		if j == "" {
			continue
		}
		if !slices.ContainsFunc(runner, func(r string) bool { return strings.EqualFold(strings.TrimSpace(r), j) }) {
			return false
		}
	}
	return true
}

// WarmLabels returns the labels a warm runner of the pool (one not created
// for a job) registers with: the pool's labels plus self-hosted, linux and
// the pool's arch (x64 when unset).
func WarmLabels(p corral.Pool) []string {
	arch, ok := NormalizeArch(p.Flavor.Arch)
	if !ok {
		arch = ArchX64
	}
	return dedup(append(slices.Clone(p.Labels), "self-hosted", "linux", arch))
}

// RunnerLabels returns the labels of a runner created for a job: exactly
// the job's labels, deduplicated case-insensitively in their first
// spelling, so that a unique label binds the runner to that job. A job
// without labels (never routed) gets WarmLabels.
func RunnerLabels(p corral.Pool, job []string) []string {
	out := dedup(slices.Clone(job))
	if len(out) == 0 {
		return WarmLabels(p)
	}
	return out
}

// dedup drops blank labels and case-insensitive repeats, in place.
func dedup(ls []string) []string {
	out := ls[:0]
	for _, l := range ls {
		l = strings.TrimSpace(l)
		if l == "" || slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, l) }) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// Explain writes the decision for people, as the `corral route LABEL...`
// command prints it:
//
//	labels: corral, large
//	routes: linux (8 cpu, 16 GiB memory, 80 GiB disk, x64)
//	pools, in routing order:
//	  linux  accepts  8 cpu, 16 GiB memory, 80 GiB disk, x64
//	  gpu    refuses  job lacks pool label "gpu"
func (d Decision) Explain() string {
	var b strings.Builder
	labels := strings.Join(d.Labels, ", ")
	if labels == "" {
		labels = "(none)"
	}
	b.WriteString("labels: " + labels + "\n")
	if len(d.Routes) == 0 {
		b.WriteString("no route: " + d.Reason + "\n")
	} else {
		rs := make([]string, len(d.Routes))
		for i, r := range d.Routes {
			rs[i] = r.PoolID + " (" + FormatFlavor(r.Flavor) + ")"
		}
		b.WriteString("routes: " + strings.Join(rs, ", ") + "\n")
	}
	if len(d.Checks) == 0 {
		return b.String()
	}
	b.WriteString("pools, in routing order:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range d.Checks {
		if c.Accepted {
			tw.Write([]byte("  " + c.PoolID + "\taccepts\t" + FormatFlavor(c.Flavor) + "\n"))
		} else {
			tw.Write([]byte("  " + c.PoolID + "\trefuses\t" + c.Reason + "\n"))
		}
	}
	tw.Flush()
	return b.String()
}

// Label limits, the strictest of the forges': GitHub's JIT call takes 1 to
// 100 labels (422 beyond); Gitea and Forgejo set no count, but keep a
// runner's labels as JSON in one TEXT column (64 KiB on MySQL), which 100
// labels of MaxLabelLen fit. A job over a limit is refused at routing.
const (
	MaxLabels   = 100
	MaxLabelLen = 256
)

// BoundLabels returns the labels a job is recorded with: in their order
// and spelling, case-insensitive repeats dropped, at most MaxLabels+1
// distinct ones, each cut to MaxLabelLen+1 characters. Route gives the
// bounded labels the same verdict as the full ones (a job over a limit
// stays over it), while a hostile job's million-character label or ten
// thousand labels are not stored.
func BoundLabels(ls []string) []string {
	out := make([]string, 0, min(len(ls), MaxLabels+1))
	seen := make(map[string]bool, min(len(ls), MaxLabels+1))
	for _, l := range ls {
		if len(out) > MaxLabels {
			break
		}
		if n := 0; len(l) > MaxLabelLen {
			for i := range l {
				if n == MaxLabelLen+1 {
					l = l[:i]
					break
				}
				n++
			}
		}
		k := strings.ToLower(strings.TrimSpace(l))
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, l)
	}
	return out
}
