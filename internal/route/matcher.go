package route

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// Options tune the grammar.
type Options struct {
	// Sizes is the size-word table; nil means DefaultSizes(). A flavor's
	// empty Arch keeps the pool's arch.
	Sizes map[string]corral.Flavor
	// Generic lists extra labels every runner carries; they constrain
	// nothing. self-hosted, linux and the arch words are always generic.
	Generic []string
	// DefaultArch is the arch of jobs that name none (x64 when empty):
	// only pools of that arch, or with AcceptAnyArch, take such jobs.
	DefaultArch string
}

// Matcher routes jobs to pools. It is immutable once built and safe for
// concurrent use.
type Matcher struct {
	defArch    string // canonical; the arch of jobs that name none
	pools      []pool
	generic    map[string]bool // lower case
	sizeWords  map[string]bool // every size word of any pool
	poolLabels map[string]bool // every non-generic pool label
}

type pool struct {
	p      corral.Pool // as given, with the arch made canonical
	labels []string    // lower case, deduplicated
	sizes  map[string]corral.Flavor
}

// PoolError is one problem with one pool (Index -1: with the Options).
// Field names the config key: id, provider, labels, arch, flavor,
// max_flavor, sizes, generic.
type PoolError struct {
	Index  int
	PoolID string
	Field  string
	Msg    string
}

func (e *PoolError) Error() string {
	switch {
	case e.Index < 0:
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	case e.PoolID == "":
		return fmt.Sprintf("pool #%d: %s: %s", e.Index+1, e.Field, e.Msg)
	}
	return fmt.Sprintf("pool %q: %s: %s", e.PoolID, e.Field, e.Msg)
}

// Errors lists every problem New found. It matches corral.ErrBadInput with
// errors.Is.
type Errors []*PoolError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Is makes errors.Is(err, corral.ErrBadInput) true.
func (es Errors) Is(target error) bool { return target == corral.ErrBadInput }

// New validates the pools and builds a matcher: pool ids unique
// (case-insensitively), a provider, at least one label, none of them a
// grammar word, a known arch (empty means x64), Flavor within Max where Max
// is set. It reports every problem at once as Errors.
func New(pools []corral.Pool, opt Options) (*Matcher, error) {
	var errs Errors
	bad := func(i int, id, field, format string, args ...any) {
		errs = append(errs, &PoolError{Index: i, PoolID: id, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	m := &Matcher{generic: map[string]bool{}, sizeWords: map[string]bool{}, poolLabels: map[string]bool{}}
	for _, g := range baseGeneric {
		m.generic[g] = true
	}
	for _, g := range opt.Generic {
		if msg := plainWordProblem(g); msg != "" {
			bad(-1, "", "generic", "%q %s", g, msg)
			continue
		}
		m.generic[strings.ToLower(g)] = true
	}
	m.defArch = ArchX64
	if opt.DefaultArch != "" {
		a, ok := NormalizeArch(opt.DefaultArch)
		if !ok {
			bad(-1, "", "default_arch", "unknown arch %q (want x64 or arm64)", opt.DefaultArch)
		}
		m.defArch = a
	}
	base := opt.Sizes
	if base == nil {
		base = DefaultSizes()
	}
	baseSizes := m.sizeTable(base, func(msg string) { bad(-1, "", "sizes", "%s", msg) })
	sizeTables := make([]map[string]corral.Flavor, len(pools))
	for i, p := range pools {
		sizeTables[i] = m.sizeTable(p.Sizes, func(msg string) { bad(i, p.ID, "sizes", "%s", msg) })
	}

	seen := map[string]bool{}
	for i, p := range pools {
		if p.ID == "" {
			bad(i, p.ID, "id", "required")
		} else if id := strings.ToLower(p.ID); seen[id] {
			bad(i, p.ID, "id", "duplicate pool id %q", p.ID)
		} else {
			seen[id] = true
		}
		if p.Provider == "" {
			bad(i, p.ID, "provider", "required")
		}
		arch := ArchX64
		if p.Flavor.Arch != "" {
			a, ok := NormalizeArch(p.Flavor.Arch)
			if !ok {
				bad(i, p.ID, "arch", "unknown arch %q (want x64 or arm64)", p.Flavor.Arch)
			}
			arch = a
		}
		p.Flavor.Arch = arch
		if p.Max.Arch != "" {
			if a, _ := NormalizeArch(p.Max.Arch); a != arch {
				bad(i, p.ID, "max_flavor", "arch %q differs from the pool's arch %s", p.Max.Arch, arch)
			}
			p.Max.Arch = arch
		}
		for _, msg := range flavorProblems(p.Flavor, p.Max) {
			bad(i, p.ID, "flavor", "%s", msg)
		}
		for _, msg := range flavorProblems(p.Max, corral.Flavor{}) {
			bad(i, p.ID, "max_flavor", "%s", msg)
		}
		sizes := make(map[string]corral.Flavor, len(baseSizes)+len(sizeTables[i]))
		for w, f := range baseSizes {
			sizes[w] = f
		}
		for w, f := range sizeTables[i] {
			sizes[w] = f
		}
		m.pools = append(m.pools, pool{p: p, sizes: sizes})
	}
	// Labels need the full size vocabulary, so they come second.
	for i := range m.pools {
		pl := &m.pools[i]
		if len(pl.p.Labels) == 0 {
			bad(i, pl.p.ID, "labels", "at least one label is required")
		}
		for _, l := range pl.p.Labels {
			if msg := m.poolLabelProblem(l, pl.p.Flavor.Arch); msg != "" {
				bad(i, pl.p.ID, "labels", "%q %s", l, msg)
				continue
			}
			ll := strings.ToLower(l)
			if !slices.Contains(pl.labels, ll) {
				pl.labels = append(pl.labels, ll)
			}
			if !m.generic[ll] {
				m.poolLabels[ll] = true
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	slices.SortStableFunc(m.pools, func(a, b pool) int {
		return cmp.Or(cmp.Compare(a.p.Priority, b.p.Priority), cmp.Compare(a.p.ID, b.p.ID))
	})
	return m, nil
}

// Pools returns the pools in routing order (Priority, then ID), with
// canonical arch names.
func (m *Matcher) Pools() []corral.Pool {
	out := make([]corral.Pool, len(m.pools))
	for i, p := range m.pools {
		out[i] = p.p
	}
	return out
}

// sizeTable checks a size table and returns it with lower-case words and
// canonical arch names; each size word joins m.sizeWords.
func (m *Matcher) sizeTable(t map[string]corral.Flavor, bad func(string)) map[string]corral.Flavor {
	out := make(map[string]corral.Flavor, len(t))
	words := make([]string, 0, len(t))
	for w := range t {
		words = append(words, w)
	}
	slices.Sort(words) // stable error order
	for _, w := range words {
		f := t[w]
		lw := strings.ToLower(w)
		if msg := plainWordProblem(w); msg != "" {
			bad(fmt.Sprintf("size word %q %s", w, msg))
			continue
		}
		if _, ok, _ := ParseCapacity(w); ok {
			bad(fmt.Sprintf("size word %q is a capacity word", w))
			continue
		}
		if m.generic[lw] {
			bad(fmt.Sprintf("size word %q is a generic label", w))
			continue
		}
		if f.Arch != "" {
			a, ok := NormalizeArch(f.Arch)
			if !ok {
				bad(fmt.Sprintf("size %q: unknown arch %q", w, f.Arch))
				continue
			}
			f.Arch = a
		}
		for _, msg := range flavorProblems(f, corral.Flavor{}) {
			bad(fmt.Sprintf("size %q: %s", w, msg))
		}
		out[lw] = f
		m.sizeWords[lw] = true
	}
	return out
}

// plainWordProblem says why s cannot be a label-like word, or "".
func plainWordProblem(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "is empty"
	case strings.ContainsAny(s, " \t\r\n,"):
		return "contains a space or comma"
	case strings.Contains(s, "="):
		return "contains '='"
	}
	return ""
}

// poolLabelProblem says why l cannot be a pool label, or "".
func (m *Matcher) poolLabelProblem(l, arch string) string {
	ll := strings.ToLower(l)
	if k, _, ok := strings.Cut(ll, "="); ok && knownKeys[k] {
		return "is a routing key, not a pool label"
	}
	if msg := plainWordProblem(l); msg != "" && !strings.Contains(l, "=") {
		return msg
	}
	if a, ok := NormalizeArch(ll); ok && a != arch {
		return "contradicts the pool's arch " + arch
	}
	if m.sizeWords[ll] {
		return "is a size word"
	}
	if _, ok, _ := ParseCapacity(ll); ok {
		return "is a capacity word"
	}
	return ""
}

// flavorProblems checks that f is not negative and, where max is set, not
// above it.
func flavorProblems(f, max corral.Flavor) []string {
	var out []string
	if f.CPU < 0 || f.MemoryMB < 0 || f.DiskMB < 0 {
		out = append(out, "negative values")
	}
	if max.CPU > 0 && f.CPU > max.CPU {
		out = append(out, fmt.Sprintf("%d cpu exceeds max_flavor %d cpu", f.CPU, max.CPU))
	}
	if max.MemoryMB > 0 && f.MemoryMB > max.MemoryMB {
		out = append(out, fmt.Sprintf("%s memory exceeds max_flavor %s", FormatMiB(f.MemoryMB), FormatMiB(max.MemoryMB)))
	}
	if max.DiskMB > 0 && f.DiskMB > max.DiskMB {
		out = append(out, fmt.Sprintf("%s disk exceeds max_flavor %s", FormatMiB(f.DiskMB), FormatMiB(max.DiskMB)))
	}
	return out
}
