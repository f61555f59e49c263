package route

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// Canonical arch names.
const (
	ArchX64   = "x64"
	ArchARM64 = "arm64"
)

// maxValue bounds every parsed number (CPUs, MiB) so that no arithmetic
// overflows an int on any platform.
const maxValue = 1<<31 - 1

const gib = 1024

// DefaultSizes returns a fresh copy of the default size-word table. Arch is
// empty: a size word keeps the pool's arch.
func DefaultSizes() map[string]corral.Flavor {
	return map[string]corral.Flavor{
		"small":  {CPU: 2, MemoryMB: 4 * gib, DiskMB: 20 * gib},
		"medium": {CPU: 4, MemoryMB: 8 * gib, DiskMB: 40 * gib},
		"large":  {CPU: 8, MemoryMB: 16 * gib, DiskMB: 80 * gib},
		"xlarge": {CPU: 16, MemoryMB: 32 * gib, DiskMB: 160 * gib},
	}
}

// NormalizeArch returns the canonical arch (x64 or arm64) for any of its
// spellings, case-insensitively; ok is false for anything else.
func NormalizeArch(s string) (arch string, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "x64", "amd64", "x86_64", "x86-64":
		return ArchX64, true
	case "arm64", "aarch64":
		return ArchARM64, true
	}
	return "", false
}

// baseGeneric are the labels every runner carries (lower case).
var baseGeneric = []string{"self-hosted", "linux", "x64", "x86_64", "amd64", "arm64", "aarch64"}

// sizeUnit returns the MiB per unit, or 0 for an unknown unit.
func sizeUnit(u string) int64 {
	switch u {
	case "mb", "mib":
		return 1
	case "gb", "gib":
		return gib
	case "tb", "tib":
		return gib * gib
	}
	return 0
}

// ParseSize parses a memory or disk size into MiB: "8", "8gb", "8GiB",
// "512mb", "1tb" (a bare number is GiB; gb and gib both mean GiB). The size
// must be positive.
func ParseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (mb, gb, tb)", s)
	}
	unit := strings.TrimSpace(t[i:])
	per := int64(gib)
	if unit != "" {
		if per = sizeUnit(unit); per == 0 {
			return 0, fmt.Errorf("size %q: unknown unit %q (want mb, mib, gb, gib, tb or tib)", s, unit)
		}
	}
	mib, err := scale(t[:i], per)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return mib, nil
}

// scale parses the decimal digits and multiplies them by per, bounded by
// maxValue; zero is refused.
func scale(digits string, per int64) (int, error) {
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxValue || n*per > maxValue {
		return 0, errors.New("too large")
	}
	if n == 0 {
		return 0, errors.New("must be positive")
	}
	return int(n * per), nil
}

// ParseCapacity parses a capacity word such as 4cpu8gb50gb, 2cpu4gb or 8gb:
// one or more groups of digits followed by a unit, no spaces. The group with
// unit cpu is the CPU count (it may stand anywhere); the first size group
// (mb, mib, gb, gib, tb, tib) is the memory, the second the disk. ok is
// false when s is not a capacity word at all (it does not start with a
// digit, or has a unit outside that list); err is set when it is one but
// malformed (two cpu groups, three sizes, a zero, a number too large).
// Arch is left empty.
func ParseCapacity(s string) (f corral.Flavor, ok bool, err error) {
	t := strings.ToLower(strings.TrimSpace(s))
	type group struct{ digits, unit string }
	var groups []group
	for i := 0; i < len(t); {
		j := i
		for j < len(t) && t[j] >= '0' && t[j] <= '9' {
			j++
		}
		k := j
		for k < len(t) && t[k] >= 'a' && t[k] <= 'z' {
			k++
		}
		if j == i || k == j {
			return corral.Flavor{}, false, nil
		}
		u := t[j:k]
		if u != "cpu" && sizeUnit(u) == 0 {
			return corral.Flavor{}, false, nil
		}
		groups = append(groups, group{t[i:j], u})
		i = k
	}
	if len(groups) == 0 {
		return corral.Flavor{}, false, nil
	}
	sizes := 0
	for _, g := range groups {
		if g.unit == "cpu" {
			if f.CPU != 0 {
				return corral.Flavor{}, true, fmt.Errorf("capacity %q names cpu twice", s)
			}
			if f.CPU, err = scale(g.digits, 1); err != nil {
				return corral.Flavor{}, true, fmt.Errorf("capacity %q: cpu %w", s, err)
			}
			continue
		}
		mib, err := scale(g.digits, sizeUnit(g.unit))
		if err != nil {
			return corral.Flavor{}, true, fmt.Errorf("capacity %q: %s%s %w", s, g.digits, g.unit, err)
		}
		switch sizes {
		case 0:
			f.MemoryMB = mib
		case 1:
			f.DiskMB = mib
		default:
			return corral.Flavor{}, true, fmt.Errorf("capacity %q has three sizes (want memory, then disk)", s)
		}
		sizes++
	}
	return f, true, nil
}

// FormatMiB writes a size in GiB when it is a whole number of GiB, else in
// MiB.
func FormatMiB(mib int) string {
	if mib != 0 && mib%gib == 0 {
		return strconv.Itoa(mib/gib) + " GiB"
	}
	return strconv.Itoa(mib) + " MiB"
}

// FormatFlavor writes a flavor for people: "4 cpu, 8 GiB memory, 40 GiB
// disk, x64". Unset dimensions are left out.
func FormatFlavor(f corral.Flavor) string {
	var parts []string
	if f.CPU != 0 {
		parts = append(parts, strconv.Itoa(f.CPU)+" cpu")
	}
	if f.MemoryMB != 0 {
		parts = append(parts, FormatMiB(f.MemoryMB)+" memory")
	}
	if f.DiskMB != 0 {
		parts = append(parts, FormatMiB(f.DiskMB)+" disk")
	}
	if f.Arch != "" {
		parts = append(parts, f.Arch)
	}
	if len(parts) == 0 {
		return "default size"
	}
	return strings.Join(parts, ", ")
}
