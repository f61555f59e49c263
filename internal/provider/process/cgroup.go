package process

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// The cgroup controllers that enforce a flavor.
var cgroupControllers = []string{"cpu", "memory", "pids"}

// cgroupAccounting are v1 controllers that only measure: cpuacct gives the
// CPU time of an instance (cgroup v2's cpu.stat always holds it). They are
// used where their hierarchy is mounted apart from the enforcing ones.
var cgroupAccounting = []string{"cpuacct"}

// cgroupPrefix starts the name of every instance's cgroup.
const cgroupPrefix = "corral-"

// cpuPeriod is the CFS period, in microseconds, of the CPU quota.
const cpuPeriod = 100000

// cgroups places instances in cgroups of their own, under the cgroups of
// corral's own process: cgroup v2 (one directory) or v1 (one directory per
// controller). The zero value enforces nothing.
type cgroups struct {
	v2 string            // the v2 cgroup under which instances go; "" when v1 or none
	v1 map[string]string // controller -> v1 cgroup under which instances go
	// acct: accounting-only v1 controller -> v1 cgroup under which
	// instances go, when mounted apart from cpu (cpuacct).
	acct map[string]string
}

// enforced names the controllers that apply, e.g. "cgroup v1: cpu, memory, pids".
func (c cgroups) enforced() []string {
	if c.v2 != "" {
		return slices.Clone(cgroupControllers)
	}
	var out []string
	for _, k := range cgroupControllers {
		if c.v1[k] != "" {
			out = append(out, k)
		}
	}
	return out
}

func (c cgroups) version() string {
	if c.v2 != "" {
		return "v2"
	}
	return "v1"
}

// detectCgroups finds where instances' cgroups can go. It creates and
// removes a probe cgroup to be sure that it may. The reasons why a
// controller cannot be used are returned for the log and the health report.
func detectCgroups() (cgroups, []string) {
	mounts, err := cgroupMounts(procRoot + "/self/mountinfo")
	if err != nil {
		return cgroups{}, []string{"cgroups: " + err.Error()}
	}
	own, err := ownCgroups(procRoot + "/self/cgroup")
	if err != nil {
		return cgroups{}, []string{"cgroups: " + err.Error()}
	}
	probe := cgroupPrefix + "probe-" + strconv.Itoa(os.Getpid())
	var why []string
	// cgroup v2, when it holds the controllers (a unified hierarchy, or a
	// hybrid one whose v2 part was given them).
	if m, ok := mounts[""]; ok {
		base := filepath.Join(m, own[""])
		if err := enableV2(base); err == nil {
			if err := tryMkdir(filepath.Join(base, probe)); err == nil {
				return cgroups{v2: base}, nil
			} else {
				why = append(why, "cgroup v2: "+err.Error())
			}
		} else {
			why = append(why, "cgroup v2: "+err.Error())
		}
	}
	c := cgroups{v1: map[string]string{}}
	var v1why []string
	for _, k := range cgroupControllers {
		m, ok := mounts[k]
		if !ok {
			v1why = append(v1why, "cgroup v1: no "+k+" hierarchy")
			continue
		}
		base := filepath.Join(m, own[k])
		if err := tryMkdir(filepath.Join(base, probe)); err != nil {
			v1why = append(v1why, "cgroup v1: "+k+": "+err.Error())
			continue
		}
		c.v1[k] = base
	}
	if len(c.v1) == 0 {
		return cgroups{}, append(why, v1why...)
	}
	for _, k := range cgroupAccounting {
		m, ok := mounts[k]
		if !ok || m == mounts["cpu"] {
			continue // absent, or co-mounted with cpu (one directory)
		}
		base := filepath.Join(m, own[k])
		if err := tryMkdir(filepath.Join(base, probe)); err != nil {
			v1why = append(v1why, "cgroup v1: "+k+" (CPU time for right-sizing): "+err.Error())
			continue
		}
		if c.acct == nil {
			c.acct = map[string]string{}
		}
		c.acct[k] = base
	}
	return c, v1why
}

func tryMkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return os.Remove(dir)
}

// enableV2 makes the cpu, memory and pids controllers available to the
// children of base. The kernel refuses it when base holds processes and is
// not the root (delegate corral an empty cgroup then).
func enableV2(base string) error {
	b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return err
	}
	have := strings.Fields(string(b))
	for _, k := range cgroupControllers {
		if !slices.Contains(have, k) {
			return fmt.Errorf("controller %s not available in %s", k, base)
		}
	}
	b, _ = os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
	on := strings.Fields(string(b))
	var add []string
	for _, k := range cgroupControllers {
		if !slices.Contains(on, k) {
			add = append(add, "+"+k)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("enable %s in %s: %w", strings.Join(add, " "), base, err)
	}
	return nil
}

// cgroupMounts maps each v1 controller to its mount point, and "" to the
// cgroup2 mount point.
func cgroupMounts(mountinfo string) (map[string]string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		switch sf[0] {
		case "cgroup2":
			if _, seen := out[""]; !seen {
				out[""] = pf[4]
			}
		case "cgroup":
			for o := range strings.SplitSeq(sf[2], ",") {
				if slices.Contains(cgroupControllers, o) || slices.Contains(cgroupAccounting, o) {
					if _, seen := out[o]; !seen {
						out[o] = pf[4]
					}
				}
			}
		}
	}
	return out, sc.Err()
}

// ownCgroups maps each v1 controller, and "" for v2, to the cgroup path of
// the calling process.
func ownCgroups(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for k := range strings.SplitSeq(parts[1], ",") {
			out[k] = parts[2]
		}
	}
	return out, nil
}

// dirs returns the cgroup directories of instance id.
func (c cgroups) dirs(id string) []string {
	if c.v2 != "" {
		return []string{filepath.Join(c.v2, cgroupPrefix+id)}
	}
	var out []string
	for _, k := range cgroupControllers {
		if base := c.v1[k]; base != "" {
			out = append(out, filepath.Join(base, cgroupPrefix+id))
		}
	}
	for _, k := range cgroupAccounting {
		if base := c.acct[k]; base != "" {
			out = append(out, filepath.Join(base, cgroupPrefix+id))
		}
	}
	return out
}

// create makes the instance's cgroups with the flavor's limits and returns
// their directories, which the shim joins before it starts the runner.
func (c cgroups) create(id string, f corral.Flavor, pidsMax int) ([]string, error) {
	dirs := c.dirs(id)
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			c.remove(id)
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
	}
	var limits [][2]string // file, value
	mem := int64(f.MemoryMB) << 20
	if c.v2 != "" {
		d := dirs[0]
		if f.CPU > 0 {
			limits = append(limits, [2]string{filepath.Join(d, "cpu.max"), fmt.Sprintf("%d %d", f.CPU*cpuPeriod, cpuPeriod)})
		}
		if mem > 0 {
			limits = append(limits, [2]string{filepath.Join(d, "memory.max"), strconv.FormatInt(mem, 10)},
				[2]string{filepath.Join(d, "memory.swap.max"), "0"})
		}
		limits = append(limits, [2]string{filepath.Join(d, "pids.max"), strconv.Itoa(pidsMax)})
	} else {
		dir := func(k string) string { return filepath.Join(c.v1[k], cgroupPrefix+id) }
		if c.v1["cpu"] != "" && f.CPU > 0 {
			limits = append(limits, [2]string{filepath.Join(dir("cpu"), "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)},
				[2]string{filepath.Join(dir("cpu"), "cpu.cfs_quota_us"), strconv.Itoa(f.CPU * cpuPeriod)})
		}
		if c.v1["memory"] != "" && mem > 0 {
			limits = append(limits, [2]string{filepath.Join(dir("memory"), "memory.limit_in_bytes"), strconv.FormatInt(mem, 10)},
				[2]string{filepath.Join(dir("memory"), "memory.memsw.limit_in_bytes"), strconv.FormatInt(mem, 10)})
		}
		if c.v1["pids"] != "" {
			limits = append(limits, [2]string{filepath.Join(dir("pids"), "pids.max"), strconv.Itoa(pidsMax)})
		}
	}
	for _, l := range limits {
		err := os.WriteFile(l[0], []byte(l[1]), 0)
		if err != nil && (errors.Is(err, fs.ErrNotExist) || strings.Contains(l[0], "swap") || strings.Contains(l[0], "memsw")) {
			continue // no swap accounting on this host
		}
		if err != nil {
			c.remove(id)
			return nil, fmt.Errorf("cgroup limit %s=%s: %w", l[0], l[1], err)
		}
	}
	return dirs, nil
}

// remove deletes the instance's cgroups; their processes are gone by then,
// though the kernel may take a moment to notice.
func (c cgroups) remove(id string) error { return c.removeTries(id, 100) }

// removeTries is remove with at most tries attempts per cgroup.
func (c cgroups) removeTries(id string, tries int) error {
	var errs []error
	for _, d := range c.dirs(id) {
		var err error
		for i := range tries {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			err = os.Remove(d)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				err = nil
				break
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}
