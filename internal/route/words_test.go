package route

import (
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func TestParseCapacity(t *testing.T) {
	tests := []struct {
		in     string
		want   corral.Flavor
		ok     bool
		errHas string
	}{
		{in: "4cpu8gb50gb", want: corral.Flavor{CPU: 4, MemoryMB: 8 * g, DiskMB: 50 * g}, ok: true},
		{in: "2cpu4gb", want: corral.Flavor{CPU: 2, MemoryMB: 4 * g}, ok: true},
		{in: "8gb", want: corral.Flavor{MemoryMB: 8 * g}, ok: true},
		{in: "2cpu", want: corral.Flavor{CPU: 2}, ok: true},
		{in: "16GiB4CPU", want: corral.Flavor{CPU: 4, MemoryMB: 16 * g}, ok: true},
		{in: "8gb2cpu100gb", want: corral.Flavor{CPU: 2, MemoryMB: 8 * g, DiskMB: 100 * g}, ok: true},
		{in: "512mib1tb", want: corral.Flavor{MemoryMB: 512, DiskMB: g * g}, ok: true},
		{in: " 4cpu ", want: corral.Flavor{CPU: 4}, ok: true},
		{in: "", ok: false},
		{in: "corral", ok: false},
		{in: "cpu4", ok: false},
		{in: "4", ok: false},
		{in: "4cpu8", ok: false},
		{in: "4cpu8xb", ok: false},
		{in: "1password", ok: false},
		{in: "4cpu-8gb", ok: false},
		{in: "4cpu4cpu", ok: true, errHas: "names cpu twice"},
		{in: "1gb2gb3gb", ok: true, errHas: "three sizes"},
		{in: "0cpu", ok: true, errHas: "cpu must be positive"},
		{in: "4cpu0gb", ok: true, errHas: "0gb must be positive"},
		{in: "99999999999999999999cpu", ok: true, errHas: "too large"},
		{in: "3000000tb", ok: true, errHas: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, ok, err := ParseCapacity(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want %q", err, tt.errHas)
				}
				return
			}
			if err != nil || f != tt.want {
				t.Fatalf("got %+v, %v; want %+v", f, err, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{in: "8", want: 8 * g},
		{in: "8gb", want: 8 * g},
		{in: "8GiB", want: 8 * g},
		{in: "8 GiB", want: 8 * g},
		{in: "512mb", want: 512},
		{in: "512MiB", want: 512},
		{in: "2tb", want: 2 * g * g},
		{in: "", err: true},
		{in: "gb", err: true},
		{in: "0", err: true},
		{in: "-1", err: true},
		{in: "1.5gb", err: true},
		{in: "8xb", err: true},
		{in: "99999999999", err: true},
		{in: "2097152gb", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestNormalizeArch(t *testing.T) {
	for in, want := range map[string]string{"x64": "x64", "X64": "x64", "amd64": "x64", "x86_64": "x64", "x86-64": "x64",
		"arm64": "arm64", "ARM64": "arm64", "aarch64": "arm64", "riscv64": "", "": ""} {
		if got, ok := NormalizeArch(in); got != want || ok != (want != "") {
			t.Errorf("NormalizeArch(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestFormatFlavor(t *testing.T) {
	if got := FormatFlavor(corral.Flavor{CPU: 4, MemoryMB: 1536, DiskMB: 40 * g, Arch: "x64"}); got != "4 cpu, 1536 MiB memory, 40 GiB disk, x64" {
		t.Errorf("got %q", got)
	}
	if got := FormatFlavor(corral.Flavor{}); got != "default size" {
		t.Errorf("got %q", got)
	}
}
