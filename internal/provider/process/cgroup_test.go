package process

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestCgroupMounts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mounts, own map[string]string
	}{
		{"hybrid",
			map[string]string{"cpu": "/sys/fs/cgroup/cpu", "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "": "/sys/fs/cgroup/unified"},
			map[string]string{"cpu": "/", "cpuacct": "/", "memory": "/process_api/3f67", "pids": "/", "name=systemd": "/", "": "/"}},
		{"v2",
			map[string]string{"": "/sys/fs/cgroup"},
			map[string]string{"": "/system.slice/corral.service"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := cgroupMounts("testdata/mountinfo-" + tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(m, tc.mounts) {
				t.Errorf("cgroupMounts = %v, want %v", m, tc.mounts)
			}
			o, err := ownCgroups("testdata/cgroup-" + tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(o, tc.own) {
				t.Errorf("ownCgroups = %v, want %v", o, tc.own)
			}
		})
	}
}

func TestCgroups_dirs(t *testing.T) {
	v1 := cgroups{v1: map[string]string{"memory": "/sys/fs/cgroup/memory/a", "pids": "/sys/fs/cgroup/pids"}}
	if got := strings.Join(v1.dirs("x"), " "); got != "/sys/fs/cgroup/memory/a/corral-x /sys/fs/cgroup/pids/corral-x" {
		t.Errorf("v1 dirs = %s", got)
	}
	if got := v1.enforced(); !slices.Equal(got, []string{"memory", "pids"}) {
		t.Errorf("v1 enforced = %v", got)
	}
	v2 := cgroups{v2: "/sys/fs/cgroup/corral.service"}
	if got := strings.Join(v2.dirs("x"), " "); got != "/sys/fs/cgroup/corral.service/corral-x" {
		t.Errorf("v2 dirs = %s", got)
	}
	if got := (cgroups{}).enforced(); len(got) != 0 {
		t.Errorf("zero cgroups enforce %v", got)
	}
}

func TestProvider_Isolation(t *testing.T) {
	t.Run("namespaces_off_is_reported", func(t *testing.T) {
		p := newHarness(t, NamespacesOff).provider(t)
		summary, degraded := p.Isolation()
		if !strings.Contains(strings.Join(degraded, "\n"), "namespaces are off") {
			t.Errorf("degraded %q does not say that namespaces are off", degraded)
		}
		if strings.Contains(summary, "namespaces with") {
			t.Errorf("summary %q claims namespaces", summary)
		}
	})
	t.Run("root_is_isolated", func(t *testing.T) {
		p := newHarness(t, NamespacesAuto).provider(t)
		summary, degraded := p.Isolation()
		t.Logf("summary: %s; degraded: %q", summary, degraded)
		if !p.iso().root || !p.iso().namespaces {
			t.Skipf("not root, or no namespaces here: %q", degraded)
		}
		for _, want := range []string{"PID", "unprivileged uid", "private /tmp", "tmpfs per instance", "host network shared"} {
			if !strings.Contains(summary, want) {
				t.Errorf("summary %q lacks %q", summary, want)
			}
		}
	})
}
