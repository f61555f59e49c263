package route

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/corral-ci/corral/internal/corral"
)

// Decision is the matcher's answer for one job.
type Decision struct {
	// Labels are the job's labels as given.
	Labels []string
	// Routes are the accepting pools, best first, each with the flavor the
	// job gets there.
	Routes []corral.Route
	// Reason says, when Routes is empty, why no pool accepts the job.
	Reason string
	// Checks lists every pool considered, in routing order, with its
	// verdict.
	Checks []PoolCheck
}

// PoolCheck is one pool's verdict on a job.
type PoolCheck struct {
	PoolID   string
	Accepted bool
	Flavor   corral.Flavor // the job's flavor in this pool, when accepted
	Reason   string        // why not, when refused
}

// knownKeys are the key=value keys of the grammar.
var knownKeys = map[string]bool{
	"pool": true, "provider": true, "runs-on": true, "image": true, "arch": true,
	"cpu": true, "ram": true, "memory": true, "disk": true, "size": true,
}

// request is a job's labels read once, independently of any pool.
type request struct {
	labels  []string // lower case, deduplicated
	refuse  string   // the job is refused by every pool
	pools   []string
	provs   []string
	images  []string
	arch    string
	size    string
	capF    corral.Flavor // from capacity words
	keyF    corral.Flavor // from cpu=, ram=, memory=, disk=
	foreign []string      // labels of some pool
}

// Route decides which pools accept a job of tenantID and targetID with the
// given labels. An empty tenantID or targetID skips that check.
func (m *Matcher) Route(tenantID, targetID string, labels []string) Decision {
	d := Decision{Labels: labels, Checks: make([]PoolCheck, 0, len(m.pools))}
	r := m.parse(labels)
	for i := range m.pools {
		c := m.check(&m.pools[i], &r, tenantID, targetID)
		d.Checks = append(d.Checks, c)
		if c.Accepted {
			d.Routes = append(d.Routes, corral.Route{PoolID: c.PoolID, Flavor: c.Flavor})
		}
	}
	if len(d.Routes) == 0 {
		d.Reason = m.summarise(&r, d.Checks, tenantID)
	}
	return d
}

func (m *Matcher) parse(labels []string) request {
	var r request
	if len(labels) == 0 {
		r.refuse = "job has no labels"
		return r
	}
	for _, raw := range labels {
		if msg := labelProblem(raw); msg != "" {
			r.refuse = msg
			return r
		}
		l := strings.ToLower(strings.TrimSpace(raw))
		if l == "" || slices.Contains(r.labels, l) {
			continue
		}
		if len(r.labels) == MaxLabels {
			r.refuse = fmt.Sprintf("job has more than %d distinct labels; the forges take at most %d", MaxLabels, MaxLabels)
			return r
		}
		r.labels = append(r.labels, l)
		if err := m.read(&r, l, raw); err != "" && r.refuse == "" {
			r.refuse = err
		}
	}
	if len(r.labels) == 0 {
		r.refuse = "job has no labels"
	}
	return r
}

// read applies one lower-case label l to r; it returns a refusal or "".
func (m *Matcher) read(r *request, l, raw string) string {
	if k, v, ok := strings.Cut(l, "="); ok && knownKeys[k] {
		if v == "" {
			return fmt.Sprintf("label %q has no value", raw)
		}
		switch k {
		case "pool":
			r.pools = append(r.pools, v)
		case "provider", "runs-on":
			r.provs = append(r.provs, v)
		case "image":
			r.images = append(r.images, v)
		case "arch":
			a, ok := NormalizeArch(v)
			if !ok {
				return fmt.Sprintf("label %q: unknown arch (want x64 or arm64)", raw)
			}
			return setArch(r, a)
		case "size":
			if !m.sizeWords[v] {
				return fmt.Sprintf("label %q: no pool defines size %q", raw, v)
			}
			return setSize(r, v)
		case "cpu":
			n, err := scale(v, 1)
			if err != nil || strings.TrimLeft(v, "0123456789") != "" {
				return fmt.Sprintf("label %q: cpu must be a positive whole number", raw)
			}
			return setDim(&r.keyF.CPU, n, "labels", "cpu counts", strconv.Itoa)
		case "ram", "memory", "disk":
			n, err := ParseSize(v)
			if err != nil {
				return fmt.Sprintf("label %q: %v", raw, err)
			}
			if k == "disk" {
				return setDim(&r.keyF.DiskMB, n, "labels", "disk sizes", FormatMiB)
			}
			return setDim(&r.keyF.MemoryMB, n, "labels", "memory sizes", FormatMiB)
		}
		return ""
	}
	if m.generic[l] {
		if a, ok := NormalizeArch(l); ok {
			return setArch(r, a)
		}
		return ""
	}
	if m.sizeWords[l] {
		return setSize(r, l)
	}
	if f, ok, err := ParseCapacity(l); ok {
		if err != nil {
			return "label " + err.Error()
		}
		if msg := setDim(&r.capF.CPU, f.CPU, "capacity words", "cpu counts", strconv.Itoa); msg != "" {
			return msg
		}
		if msg := setDim(&r.capF.MemoryMB, f.MemoryMB, "capacity words", "memory sizes", FormatMiB); msg != "" {
			return msg
		}
		return setDim(&r.capF.DiskMB, f.DiskMB, "capacity words", "disk sizes", FormatMiB)
	}
	if m.poolLabels[l] {
		r.foreign = append(r.foreign, l)
	}
	return ""
}

// labelProblem says why a label is refused before it is read, or "": it
// must be valid UTF-8 without control characters and at most MaxLabelLen
// characters long. The message shows at most the label's start.
func labelProblem(raw string) string {
	if !utf8.ValidString(raw) {
		return fmt.Sprintf("label %s is not valid UTF-8", showLabel(raw))
	}
	if utf8.RuneCountInString(raw) > MaxLabelLen {
		return fmt.Sprintf("label %s is longer than %d characters, the forges' limit", showLabel(raw), MaxLabelLen)
	}
	if strings.ContainsFunc(raw, unicode.IsControl) {
		return fmt.Sprintf("label %s contains a control character", showLabel(raw))
	}
	return ""
}

// showLabel quotes a label for a message, cut to its first 40 bytes.
func showLabel(raw string) string {
	if len(raw) <= 40 {
		return strconv.Quote(raw)
	}
	return strconv.Quote(raw[:40]) + "..."
}

func setArch(r *request, a string) string {
	if r.arch != "" && r.arch != a {
		return fmt.Sprintf("labels ask for two archs: %s and %s", r.arch, a)
	}
	r.arch = a
	return ""
}

func setSize(r *request, w string) string {
	if r.size != "" && r.size != w {
		return fmt.Sprintf("labels ask for two sizes: %q and %q", r.size, w)
	}
	r.size = w
	return ""
}

// setDim sets *dst to v (v 0: nothing asked) unless it holds another value.
func setDim(dst *int, v int, who, what string, show func(int) string) string {
	if v == 0 {
		return ""
	}
	if *dst != 0 && *dst != v {
		return fmt.Sprintf("%s ask for two %s: %s and %s", who, what, show(*dst), show(v))
	}
	*dst = v
	return ""
}

// check gives one pool's verdict.
func (m *Matcher) check(pl *pool, r *request, tenantID, targetID string) PoolCheck {
	p := &pl.p
	c := PoolCheck{PoolID: p.ID}
	refuse := func(format string, args ...any) PoolCheck {
		c.Reason = fmt.Sprintf(format, args...)
		return c
	}
	if r.refuse != "" {
		return refuse("%s", r.refuse)
	}
	if tenantID != "" && p.TenantID != tenantID {
		return refuse("pool belongs to tenant %q, not %q", p.TenantID, tenantID)
	}
	if targetID != "" && len(p.Targets) > 0 && !slices.Contains(p.Targets, targetID) {
		return refuse("pool does not serve target %q", targetID)
	}
	for _, v := range r.pools {
		if !strings.EqualFold(v, p.ID) {
			return refuse("job asks for pool %q", v)
		}
	}
	for _, v := range r.provs {
		if !strings.EqualFold(v, p.Provider) {
			return refuse("job asks for provider %q, pool uses %q", v, p.Provider)
		}
	}
	for _, v := range r.images {
		if !strings.EqualFold(v, p.Image) {
			return refuse("job asks for image %q, pool uses %q", v, p.Image)
		}
	}
	for _, l := range pl.labels {
		if !slices.Contains(r.labels, l) {
			return refuse("job lacks pool label %q", l)
		}
	}
	for _, l := range r.foreign {
		if !slices.Contains(pl.labels, l) {
			return refuse("job label %q belongs to another pool, not this one", l)
		}
	}
	f := p.Flavor
	// pool= picks the pool, and with it its arch.
	namedArch := r.arch != "" || len(r.pools) > 0
	if r.size != "" {
		sf, ok := pl.sizes[r.size]
		if !ok {
			return refuse("pool does not define size %q", r.size)
		}
		if sf.Arch != "" && sf.Arch != f.Arch {
			return refuse("size %q is %s, pool is %s", r.size, sf.Arch, f.Arch)
		}
		f = overlay(f, sf)
		namedArch = namedArch || sf.Arch != ""
	}
	f = overlay(overlay(f, r.capF), r.keyF)
	if r.arch != "" && r.arch != f.Arch {
		return refuse("job asks for arch %s, pool is %s", r.arch, f.Arch)
	}
	if !namedArch && f.Arch != m.defArch && !p.AcceptAnyArch {
		return refuse("job names no arch; pool is %s, the default is %s (accept_any_arch lets the pool take such jobs)", f.Arch, m.defArch)
	}
	mx := p.Max
	switch {
	case mx.CPU > 0 && f.CPU > mx.CPU:
		return refuse("asks %d cpu, pool %s caps at %d", f.CPU, p.ID, mx.CPU)
	case mx.MemoryMB > 0 && f.MemoryMB > mx.MemoryMB:
		return refuse("asks %s memory, pool %s caps at %s", FormatMiB(f.MemoryMB), p.ID, FormatMiB(mx.MemoryMB))
	case mx.DiskMB > 0 && f.DiskMB > mx.DiskMB:
		return refuse("asks %s disk, pool %s caps at %s", FormatMiB(f.DiskMB), p.ID, FormatMiB(mx.DiskMB))
	}
	c.Accepted, c.Flavor = true, f
	return c
}

// overlay sets the dimensions that o names (non-zero) on f; arch stays.
func overlay(f, o corral.Flavor) corral.Flavor {
	if o.CPU != 0 {
		f.CPU = o.CPU
	}
	if o.MemoryMB != 0 {
		f.MemoryMB = o.MemoryMB
	}
	if o.DiskMB != 0 {
		f.DiskMB = o.DiskMB
	}
	return f
}

// summarise writes the one-sentence reason for a job no pool accepts. Pools
// of other tenants stay out of it: the reason is shown to the tenant.
func (m *Matcher) summarise(r *request, checks []PoolCheck, tenantID string) string {
	if r.refuse != "" {
		return r.refuse
	}
	var reasons []string
	ids := map[string][]string{}
	for i, c := range checks {
		if tenantID != "" && m.pools[i].p.TenantID != tenantID {
			continue
		}
		if _, ok := ids[c.Reason]; !ok {
			reasons = append(reasons, c.Reason)
		}
		ids[c.Reason] = append(ids[c.Reason], c.PoolID)
	}
	switch {
	case len(reasons) == 0 && tenantID != "" && len(m.pools) > 0:
		return fmt.Sprintf("tenant %q has no pools", tenantID)
	case len(reasons) == 0:
		return "no pools are configured"
	}
	parts := make([]string, len(reasons))
	for i, why := range reasons {
		parts[i] = strings.Join(ids[why], ", ") + ": " + why
	}
	return "no pool accepts the job: " + strings.Join(parts, "; ")
}
