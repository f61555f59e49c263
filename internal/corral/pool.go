package corral

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Flavor is the size of an instance: CPU count, memory and disk in MiB, and
// the CPU architecture ("x64" or "arm64").
type Flavor struct {
	CPU      int
	MemoryMB int
	DiskMB   int
	Arch     string
}

// Pool is a routing rule plus capacity: which jobs it serves, where and how
// they run, and how many may run.
type Pool struct {
	ID       string
	TenantID string
	// Targets the pool serves (target ids); empty = every target of its tenant.
	Targets []string
	// Labels the pool requires on a job (all of them), e.g. ["corral"].
	Labels []string
	// Provider names the provider instance (e.g. "local", "rack1"; "process"
	// or "docker" for the implicit instances of those types); Image is
	// what the provider starts (image name, runner path, VM disk).
	Provider string
	Image    string
	// ManagedRunner: instances get the newest runner release the forge
	// accepts from corral's own cache (package runners), instead of one
	// baked into the image.
	ManagedRunner bool
	// ProviderOptions are options for the pool's provider type (JSON of
	// its pool-options struct, e.g. docker_in_docker), opaque here.
	ProviderOptions json.RawMessage
	// Flavor is the default size; Max is the largest a job may ask for.
	Flavor Flavor
	Max    Flavor
	// AcceptAnyArch lets the pool take jobs that name no arch although its
	// arch is not the default one (package route; config accept_any_arch).
	AcceptAnyArch bool
	// Sizes maps size words (small, medium, ...) to flavors; empty = the
	// default table in package route.
	Sizes map[string]Flavor
	// Priority orders pools that accept the same job: lower first.
	Priority int

	MaxInstances int // 0 = no cap
	MinIdle      int
	// Concurrency caps the provider calls (creates and deletes) under way
	// at once for this pool; 0 = the scheduler's default (8).
	Concurrency int
	Schedules   []IdleSchedule
	// Headroom adds warm runners above demand: HeadroomCount runners, or
	// HeadroomPercent of current demand (rounded up), whichever is larger.
	HeadroomCount   int
	HeadroomPercent int

	BootTimeout   time.Duration // runner must come online within this
	MaxJobRuntime time.Duration // a job running longer is stopped
	IdleTimeout   time.Duration // idle warm runners above min idle go after this
	MaxLifetime   time.Duration // the instance kills itself after this

	// PricePerMinute is what a runner minute of this pool costs (any
	// currency); 0 = no price. The usage report multiplies it out.
	PricePerMinute float64 `json:",omitempty"`
}

// PoolState is a pool's operational state, set through the API and kept
// in the store, so that every replica's scheduler obeys it.
type PoolState string

// Pool states.
const (
	// PoolActive: the pool serves jobs (the state of every pool no
	// operation touched).
	PoolActive PoolState = "active"
	// PoolPaused: no new instance; the pool's instances stay.
	PoolPaused PoolState = "paused"
	// PoolDraining: no new instance; running jobs finish; idle and
	// starting runners not bound to a job are removed.
	PoolDraining PoolState = "draining"
)

// IdleSchedule sets MinIdle during weekday and time windows in a time zone.
// The first schedule that contains the instant wins; outside every schedule
// the pool's MinIdle applies.
type IdleSchedule struct {
	Days     []time.Weekday // empty = every day
	From, To time.Duration  // offsets from midnight; To <= From wraps past midnight
	Location *time.Location // nil = UTC
	MinIdle  int
}

// Contains reports whether t falls inside the schedule's window.
func (s IdleSchedule) Contains(t time.Time) bool {
	loc := s.Location
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	midnight := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
	off := lt.Sub(midnight)
	day := lt.Weekday()
	if s.To > s.From {
		return s.dayOK(day) && off >= s.From && off < s.To
	}
	// Window wraps past midnight: [From, 24h) on day, [0, To) on day+1.
	if off >= s.From && s.dayOK(day) {
		return true
	}
	return off < s.To && s.dayOK((day+6)%7)
}

func (s IdleSchedule) dayOK(d time.Weekday) bool {
	if len(s.Days) == 0 {
		return true
	}
	for _, x := range s.Days {
		if x == d {
			return true
		}
	}
	return false
}

// MinIdleAt returns the min idle count in force at t.
func (p *Pool) MinIdleAt(t time.Time) int {
	for _, s := range p.Schedules {
		if s.Contains(t) {
			return s.MinIdle
		}
	}
	return p.MinIdle
}

// Headroom returns how many warm runners to keep above a demand of n jobs.
func (p *Pool) Headroom(demand int) int {
	h := p.HeadroomCount
	if p.HeadroomPercent > 0 {
		pct := (demand*p.HeadroomPercent + 99) / 100
		if pct > h {
			h = pct
		}
	}
	return h
}

// FieldProblem is one setting of a pool that is out of range: its key in
// the config's terms (max_instances, schedules[0].min_idle, ...) and why.
type FieldProblem struct {
	Key, Msg string
}

// Problems checks the pool's counts and durations against each other, the
// same rules for a config file and for an API write (a zero duration is
// "off" here; the config file and the API refuse to set one). Nil means
// none.
func (p *Pool) Problems() []FieldProblem {
	var out []FieldProblem
	bad := func(key, format string, args ...any) {
		out = append(out, FieldProblem{key, fmt.Sprintf(format, args...)})
	}
	if p.Priority < 0 {
		bad("priority", "must not be negative (0 routes first)")
	}
	if p.PricePerMinute < 0 {
		bad("price_per_minute", "must not be negative")
	}
	if p.MaxInstances < 0 {
		bad("max_instances", "must not be negative")
	}
	if p.Concurrency < 0 {
		bad("concurrency", "must not be negative (0 = the default, 8)")
	}
	switch {
	case p.MinIdle < 0:
		bad("min_idle", "must not be negative")
	case p.MaxInstances > 0 && p.MinIdle > p.MaxInstances:
		bad("min_idle", "%d exceeds max_instances %d", p.MinIdle, p.MaxInstances)
	}
	if p.HeadroomCount < 0 || p.HeadroomPercent < 0 {
		bad("headroom", "must not be negative")
	}
	for i, s := range p.Schedules {
		k := fmt.Sprintf("schedules[%d].min_idle", i)
		switch {
		case s.MinIdle < 0:
			bad(k, "must not be negative")
		case p.MaxInstances > 0 && s.MinIdle > p.MaxInstances:
			bad(k, "%d exceeds the pool's max_instances %d", s.MinIdle, p.MaxInstances)
		}
	}
	if p.MaxJobRuntime > 0 && p.MaxLifetime > 0 && p.MaxLifetime <= p.MaxJobRuntime {
		bad("max_lifetime", "%s must exceed max_job_runtime %s", FormatDuration(p.MaxLifetime), FormatDuration(p.MaxJobRuntime))
	}
	return out
}

// FormatDuration writes 2h instead of 2h0m0s, and 90m as 1h30m.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseHeadroom parses a headroom setting: "2" (a count of warm runners
// above demand) or "25%" (a share of demand, at most 1000%); "" is none.
func ParseHeadroom(s string) (count, percent int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	switch {
	case err != nil || n < 0:
		return 0, 0, fmt.Errorf(`want a count like 2 or a percentage like "25%%", got %q`, s)
	case pct && n > 1000:
		return 0, 0, fmt.Errorf("at most 1000%%")
	case pct:
		return 0, n, nil
	}
	return n, 0, nil
}
