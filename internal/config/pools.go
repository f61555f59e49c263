package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

// buildSizes returns route's default table with the config's sizes over it.
func (b *builder) buildSizes() map[string]corral.Flavor {
	table := route.DefaultSizes()
	for w, f := range b.sizeWords("sizes", b.c.Sizes) {
		table[w] = f
	}
	return table
}

// sizeWords parses a word: capacity-word map.
func (b *builder) sizeWords(key string, m map[string]string) map[string]corral.Flavor {
	out := make(map[string]corral.Flavor, len(m))
	for _, w := range slices.Sorted(func(yield func(string) bool) {
		for w := range m {
			if !yield(w) {
				return
			}
		}
	}) {
		if f, ok := b.capacity(key+"."+w, m[w]); ok {
			out[w] = f
		}
	}
	return out
}

// capacity parses a capacity word; ok is false (and a problem recorded)
// when it is not a valid one.
func (b *builder) capacity(key, s string) (corral.Flavor, bool) {
	f, ok, err := route.ParseCapacity(s)
	switch {
	case err != nil:
		b.bad(key, "%v", err)
	case !ok:
		b.bad(key, "want a capacity word like 4cpu8gb40gb, got %q", s)
	}
	return f, ok && err == nil
}

func (b *builder) buildPools() []corral.Pool {
	var out []corral.Pool
	for i, p := range b.c.Pools {
		k := fmt.Sprintf("pools[%d]", i)
		if p.ID != "" && !slugRE.MatchString(p.ID) {
			b.bad(k+".id", "%s", slugMsg)
		}
		if !b.tenants[p.Tenant] {
			b.bad(k+".tenant", "unknown tenant %q", p.Tenant)
		}
		for j, t := range p.Targets {
			switch tenant, ok := b.targets[t]; {
			case !ok:
				b.bad(fmt.Sprintf("%s.targets[%d]", k, j), "unknown target %q", t)
			case tenant != p.Tenant:
				b.bad(fmt.Sprintf("%s.targets[%d]", k, j), "target %q belongs to tenant %q, not %q", t, tenant, p.Tenant)
			case p.MinIdle > 0 && b.oneJob(t):
				// A one-job runner is made for one waiting job's handle:
				// there is no warm runner to keep.
				b.bad(k+".min_idle", "target %q is in mode one-job, whose runners are each made for one waiting job: min_idle must be 0", t)
			}
		}
		cp := corral.Pool{
			ID: p.ID, TenantID: p.Tenant, Targets: slices.Clone(p.Targets), Labels: slices.Clone(p.Labels),
			Provider: p.Provider, Image: p.Image, Priority: p.Priority, ManagedRunner: p.Runner == "managed", ProviderOptions: poolOptions(p.ProviderOptions),
			AcceptAnyArch: p.AcceptAnyArch, PricePerMinute: p.PricePerMinute,
			MaxInstances: p.MaxInstances, MinIdle: p.MinIdle, Concurrency: p.Concurrency,
			BootTimeout: p.BootTimeout, MaxJobRuntime: p.MaxJobRuntime, IdleTimeout: p.IdleTimeout, MaxLifetime: p.MaxLifetime,
		}
		if p.Flavor != "" {
			cp.Flavor, _ = b.capacity(k+".flavor", p.Flavor)
		}
		if p.MaxFlavor != "" {
			cp.Max, _ = b.capacity(k+".max_flavor", p.MaxFlavor)
		}
		// route.New reports an unknown arch.
		cp.Flavor.Arch = p.Arch
		if a, ok := route.NormalizeArch(p.Arch); ok {
			cp.Flavor.Arch = a
		}
		if len(p.Sizes) > 0 {
			cp.Sizes = b.sizeWords(k+".sizes", p.Sizes)
		}
		cp.HeadroomCount, cp.HeadroomPercent = b.headroom(k+".headroom", p.Headroom)
		for j, s := range p.Schedules {
			cp.Schedules = append(cp.Schedules, b.schedule(fmt.Sprintf("%s.schedules[%d]", k, j), s))
		}
		for _, d := range []struct {
			key string
			v   time.Duration
		}{{"boot_timeout", p.BootTimeout}, {"max_job_runtime", p.MaxJobRuntime}, {"idle_timeout", p.IdleTimeout}, {"max_lifetime", p.MaxLifetime}} {
			if d.v <= 0 {
				b.bad(k+"."+d.key, "must be positive")
			}
		}
		for _, pr := range cp.Problems() {
			if pr.Key != "priority" { // checked where it is read (input.go)
				b.bad(k+"."+pr.Key, "%s", pr.Msg)
			}
		}
		out = append(out, cp)
	}
	return out
}

// headroom parses "2" (a count) or "25%" (a share of demand).
func (b *builder) headroom(key, s string) (count, percent int) {
	count, percent, err := corral.ParseHeadroom(s)
	if err != nil {
		b.bad(key, "%v", err)
	}
	return count, percent
}

// weekdays maps "mon" and "monday" (any case) to their weekday.
var weekdays = func() map[string]time.Weekday {
	m := map[string]time.Weekday{}
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := strings.ToLower(d.String())
		m[name], m[name[:3]] = d, d
	}
	return m
}()

func (b *builder) schedule(k string, s Schedule) corral.IdleSchedule {
	var out corral.IdleSchedule
	for j, d := range s.Days {
		wd, ok := weekdays[strings.ToLower(strings.TrimSpace(d))]
		if !ok {
			b.bad(fmt.Sprintf("%s.days[%d]", k, j), "want mon, tue, wed, thu, fri, sat or sun, got %q", d)
			continue
		}
		out.Days = append(out.Days, wd)
	}
	var okFrom, okTo bool
	out.From, okFrom = clock(s.From, false)
	if !okFrom {
		b.bad(k+".from", `want a time like "08:00", got %q`, s.From)
	}
	out.To, okTo = clock(s.To, true)
	if !okTo {
		b.bad(k+".to", `want a time like "18:00" (up to "24:00"), got %q`, s.To)
	}
	if okFrom && okTo && out.From == out.To%(24*time.Hour) {
		b.bad(k+".to", "the window is empty: from and to are equal")
	}
	if s.Timezone != "" {
		loc, err := time.LoadLocation(s.Timezone)
		if err != nil {
			b.bad(k+".timezone", "unknown time zone %q", s.Timezone)
		}
		out.Location = loc
	}
	out.MinIdle = s.MinIdle // checked with the pool (corral.Pool.Problems)
	return out
}

// clock parses "HH:MM" into an offset from midnight; "24:00" only when
// end is set.
func clock(s string, end bool) (time.Duration, bool) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(h) == 0 || len(h) > 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, false
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, true
}

// oneJob tells whether target id is in mode one-job.
func (b *builder) oneJob(id string) bool {
	for _, t := range b.c.Targets {
		if t.ID == id {
			return t.Mode == string(corral.ModeOneJob)
		}
	}
	return false
}
