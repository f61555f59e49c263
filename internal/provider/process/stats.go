package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// Stats reads the instance's CPU time and memory use from its cgroups:
// cgroup v2 cpu.stat usage_usec, memory.peak (kernels from 5.19) and
// memory.current; cgroup v1 cpuacct.usage, memory.max_usage_in_bytes and
// memory.usage_in_bytes. It fails with corral.ErrUnavailable when the host
// gives instances no cgroups, and with corral.ErrNotFound when the
// instance's cgroup is gone.
func (p *Provider) Stats(ctx context.Context, inst corral.ProviderInstance) (corral.Usage, error) {
	if err := checkID(inst.ProviderID); err != nil {
		return corral.Usage{}, err
	}
	if err := ctx.Err(); err != nil {
		return corral.Usage{}, err
	}
	iso := p.iso()
	if len(iso.cg.enforced()) == 0 {
		return corral.Usage{}, fmt.Errorf("%w: no cgroups on this host, so no statistics for instance %s", corral.ErrUnavailable, inst.ProviderID)
	}
	u, err := iso.cg.stats(inst.ProviderID)
	if errors.Is(err, fs.ErrNotExist) {
		return corral.Usage{}, fmt.Errorf("%w: instance %s has no cgroup: %w", corral.ErrNotFound, inst.ProviderID, err)
	}
	return u, err
}

// stats reads instance id's usage from its cgroup files.
func (c cgroups) stats(id string) (corral.Usage, error) {
	var u corral.Usage
	name := cgroupPrefix + id
	if c.v2 != "" {
		d := filepath.Join(c.v2, name)
		usec, err := statField(filepath.Join(d, "cpu.stat"), "usage_usec")
		if err != nil {
			return u, err
		}
		u.CPUSeconds = float64(usec) / 1e6
		if u.MemoryBytes, err = readInt(filepath.Join(d, "memory.current")); err != nil {
			return u, err
		}
		// memory.peak is new (Linux 5.19); without it the sampler keeps
		// the highest memory.current it saw.
		if pk, err := readInt(filepath.Join(d, "memory.peak")); err == nil {
			u.MemoryPeakBytes = pk
		}
		return u, nil
	}
	acct := c.acct["cpuacct"]
	if acct == "" {
		acct = c.v1["cpu"] // cpu and cpuacct mounted together
	}
	if acct != "" {
		ns, err := readInt(filepath.Join(acct, name, "cpuacct.usage"))
		if err != nil {
			return u, err
		}
		u.CPUSeconds = float64(ns) / 1e9
	}
	if m := c.v1["memory"]; m != "" {
		var err error
		if u.MemoryBytes, err = readInt(filepath.Join(m, name, "memory.usage_in_bytes")); err != nil {
			return u, err
		}
		if u.MemoryPeakBytes, err = readInt(filepath.Join(m, name, "memory.max_usage_in_bytes")); err != nil {
			return u, err
		}
	}
	return u, nil
}

func readInt(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return n, nil
}

// statField reads one "key value" line of a flat-keyed cgroup file.
func statField(file, key string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", file, key, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s line", file, key)
}
