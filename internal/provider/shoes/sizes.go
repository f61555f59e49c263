package shoes

import (
	"fmt"
	"slices"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/shoes/shoespb"
)

// ResourceType is one of myshoes' machine sizes with the flavor it stands
// for in corral: a flavor that fits maps to it.
type ResourceType struct {
	Name     string `yaml:"name" json:"name"` // nano, micro, small, medium, large, xlarge, 2xlarge, 3xlarge, 4xlarge
	CPU      int    `yaml:"cpu" json:"cpu"`
	MemoryMB int    `yaml:"memory_mb" json:"memory_mb"`
}

// sizes are myshoes' resource type names, in the order of their numbers
// on the wire (nano is 1; 0 is "unknown": the plugin's default).
var sizes = []string{"nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "3xlarge", "4xlarge"}

func sizeByName(name string) (shoespb.Size, bool) {
	i := slices.Index(sizes, name)
	if i < 0 {
		return shoespb.Size_SIZE_UNKNOWN, false
	}
	return shoespb.Size(i + 1), true
}

func sizeName(s shoespb.Size) string {
	if s >= 1 && int(s) <= len(sizes) {
		return sizes[s-1]
	}
	return "unknown"
}

func sizeNames() []string { return slices.Clone(sizes) }

// DefaultResourceTypes is the mapping used when the settings give none
// (the shapes of common cloud families; plugins map the names to their
// own machine types).
var DefaultResourceTypes = []ResourceType{
	{"nano", 1, 512}, {"micro", 1, 1024}, {"small", 1, 2048}, {"medium", 2, 4096},
	{"large", 2, 8192}, {"xlarge", 4, 16384}, {"2xlarge", 8, 32768}, {"3xlarge", 12, 49152},
	{"4xlarge", 16, 65536},
}

func validateResourceTypes(rts []ResourceType) provider.FieldErrors {
	var es provider.FieldErrors
	seen := map[string]bool{}
	for i, rt := range rts {
		f := fmt.Sprintf("resource_types[%d]", i)
		if _, ok := sizeByName(rt.Name); !ok {
			es = append(es, provider.FieldError{Field: f + ".name", Msg: fmt.Sprintf("want one of %v, got %q", sizes, rt.Name)})
		} else if seen[rt.Name] {
			es = append(es, provider.FieldError{Field: f + ".name", Msg: fmt.Sprintf("%s listed twice", rt.Name)})
		}
		seen[rt.Name] = true
		if rt.CPU <= 0 {
			es = append(es, provider.FieldError{Field: f + ".cpu", Msg: fmt.Sprintf("want a positive count, got %d", rt.CPU)})
		}
		if rt.MemoryMB <= 0 {
			es = append(es, provider.FieldError{Field: f + ".memory_mb", Msg: fmt.Sprintf("want a positive size in MiB, got %d", rt.MemoryMB)})
		}
	}
	return es
}

// pickSize maps a flavor to a resource type: the pool's explicit choice,
// else the smallest configured type with enough cpu and memory (ties by
// memory, then by the type's order). A flavor that asks for nothing gets
// "unknown" (the plugin's default); one that no type fits is refused.
func pickSize(rts []ResourceType, f corral.Flavor, explicit string) (shoespb.Size, error) {
	if explicit != "" {
		s, ok := sizeByName(explicit)
		if !ok {
			return 0, fmt.Errorf("%w: pool resource_type %q is not one of %v", corral.ErrBadInput, explicit, sizes)
		}
		return s, nil
	}
	if f.CPU == 0 && f.MemoryMB == 0 {
		return shoespb.Size_SIZE_UNKNOWN, nil
	}
	if len(rts) == 0 {
		rts = DefaultResourceTypes
	}
	best := -1
	for i, rt := range rts {
		if rt.CPU < f.CPU || rt.MemoryMB < f.MemoryMB {
			continue
		}
		if best < 0 || rt.CPU < rts[best].CPU || (rt.CPU == rts[best].CPU && rt.MemoryMB < rts[best].MemoryMB) {
			best = i
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no resource type fits %d cpu and %d MiB (the largest configured is %s)", corral.ErrBadInput, f.CPU, f.MemoryMB, rts[len(rts)-1].Name)
	}
	s, _ := sizeByName(rts[best].Name)
	return s, nil
}
