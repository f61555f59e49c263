package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/route"
)

// PoolPatch is the body of PATCH /api/v1/pools/{pool}: the settings an
// operator may change on a live pool, in the config file's keys and
// spellings. A key that is absent keeps its value. The pool's id, tenant,
// provider, arch, targets, provider options and schedules are changed in
// the config file (then SIGHUP or `corral apply`), not here.
type PoolPatch struct {
	Labels         *[]string `json:"labels"`
	Image          *string   `json:"image"`
	Flavor         *string   `json:"flavor"`     // capacity word, e.g. 2cpu4gb
	MaxFlavor      *string   `json:"max_flavor"` // capacity word; "" = no cap
	Priority       *int      `json:"priority"`
	MaxInstances   *int      `json:"max_instances"`
	MinIdle        *int      `json:"min_idle"`
	Concurrency    *int      `json:"concurrency"`
	Headroom       *string   `json:"headroom"` // "2" or "25%"
	BootTimeout    *string   `json:"boot_timeout"`
	MaxJobRuntime  *string   `json:"max_job_runtime"`
	IdleTimeout    *string   `json:"idle_timeout"`
	MaxLifetime    *string   `json:"max_lifetime"`
	PricePerMinute *float64  `json:"price_per_minute"`
}

// poolPatchKeys are PoolPatch's keys, for the error on an unknown one.
const poolPatchKeys = "labels, image, flavor, max_flavor, priority, max_instances, min_idle, concurrency, headroom, boot_timeout, max_job_runtime, idle_timeout, max_lifetime, price_per_minute"

// Apply edits p; every bad value is named with its key.
func (pp PoolPatch) Apply(p *corral.Pool) error {
	var probs []string
	bad := func(key, format string, args ...any) {
		probs = append(probs, key+": "+fmt.Sprintf(format, args...))
	}
	if pp.Labels != nil {
		if len(*pp.Labels) == 0 {
			bad("labels", "a pool needs at least one label")
		}
		p.Labels = slices.Clone(*pp.Labels)
	}
	if pp.Image != nil {
		p.Image = *pp.Image
	}
	capacity := func(key, s string, keepArch string) (corral.Flavor, bool) {
		f, ok, err := route.ParseCapacity(s)
		switch {
		case err != nil:
			bad(key, "%v", err)
		case !ok:
			bad(key, "want a capacity word like 4cpu8gb40gb, got %q", s)
		}
		f.Arch = keepArch
		return f, ok && err == nil
	}
	if pp.Flavor != nil {
		if f, ok := capacity("flavor", *pp.Flavor, p.Flavor.Arch); ok {
			p.Flavor = f
		}
	}
	if pp.MaxFlavor != nil {
		if *pp.MaxFlavor == "" {
			p.Max = corral.Flavor{}
		} else if f, ok := capacity("max_flavor", *pp.MaxFlavor, p.Max.Arch); ok {
			p.Max = f
		}
	}
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setInt(&p.Priority, pp.Priority)
	setInt(&p.MaxInstances, pp.MaxInstances)
	setInt(&p.MinIdle, pp.MinIdle)
	setInt(&p.Concurrency, pp.Concurrency)
	if pp.Headroom != nil {
		c, pct, err := corral.ParseHeadroom(*pp.Headroom)
		if err != nil {
			bad("headroom", "%v", err)
		}
		p.HeadroomCount, p.HeadroomPercent = c, pct
	}
	for _, d := range []struct {
		key string
		v   *string
		dst *time.Duration
	}{{"boot_timeout", pp.BootTimeout, &p.BootTimeout}, {"max_job_runtime", pp.MaxJobRuntime, &p.MaxJobRuntime},
		{"idle_timeout", pp.IdleTimeout, &p.IdleTimeout}, {"max_lifetime", pp.MaxLifetime, &p.MaxLifetime}} {
		if d.v == nil {
			continue
		}
		v, err := time.ParseDuration(*d.v)
		if err != nil || v <= 0 {
			bad(d.key, `want a positive duration like "10m" or "2h", got %q`, *d.v)
			continue
		}
		*d.dst = v
	}
	if pp.PricePerMinute != nil {
		p.PricePerMinute = *pp.PricePerMinute
	}
	if len(probs) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(probs, "; "), corral.ErrBadInput)
	}
	return nil
}

// DecodePoolPatch reads the body of PATCH /api/v1/pools/{pool}: one JSON
// object of PoolPatch's keys; an unknown key is named with the settable
// ones. Errors wrap corral.ErrBadInput.
func DecodePoolPatch(body []byte) (PoolPatch, error) {
	return DecodeStrict[PoolPatch](body, poolPatchKeys)
}

// DecodeStrict reads an API write's body: exactly one JSON object of T's
// keys; an unknown key is answered with keys, the settable ones. The
// decoder's messages never quote a value of the body. Errors wrap
// corral.ErrBadInput.
func DecodeStrict[T any](body []byte, keys string) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		msg := err.Error()
		if strings.HasPrefix(msg, "json: unknown field ") {
			msg += " (settable: " + keys + ")"
		}
		var zero T
		return zero, fmt.Errorf("body: %s: %w", msg, corral.ErrBadInput)
	}
	if dec.More() {
		var zero T
		return zero, fmt.Errorf("body: one JSON object expected: %w", corral.ErrBadInput)
	}
	return v, nil
}
