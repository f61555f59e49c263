package qemu

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/provider/providertest"
)

// BenchmarkBoot measures, per VM, the time from Create (qcow2 overlay,
// QEMU start) to the runner's first line on the guest console ("runner
// online"), and QEMU's resident memory once the runner idles. It reports
// the median and p95 over b.N boots, one VM at a time:
//
//	go test -run '^$' -bench BenchmarkBoot -benchtime 10x ./internal/provider/qemu/
//
// The accelerator is KVM when /dev/kvm is usable, TCG otherwise
// (QEMU_BENCH_ACCEL=tcg forces TCG; the log says which).
func BenchmarkBoot(b *testing.B) {
	h := newHarness(b)
	if a := os.Getenv("QEMU_BENCH_ACCEL"); a != "" {
		h.cfg.Accel = a
	}
	if m := os.Getenv("QEMU_BENCH_MACHINE"); m != "" {
		h.cfg.Machine = m
	}
	p := h.provider(b)
	accel, why := p.Accel()
	b.Logf("accel %s (%s), machine %s", accel, why, p.cfg.Machine)
	var boots []time.Duration
	var rss, guestUp []float64
	for i := 0; i < b.N; i++ {
		spec := providertest.Spec(&testing.T{}, h, providertest.Unique("ctl-"), nil)
		t0 := time.Now()
		inst, err := p.Create(b.Context(), spec)
		if err != nil {
			b.Fatal(err)
		}
		con := p.InstanceDir(inst.ProviderID) + "/" + consoleFile
		for {
			out, _ := os.ReadFile(con)
			if bytes.Contains(out, []byte("corral-test-runner: pid=")) {
				break
			}
			if time.Since(t0) > vmWait {
				b.Fatalf("no runner after %v:\n%s", vmWait, out)
			}
			time.Sleep(5 * time.Millisecond)
		}
		boots = append(boots, time.Since(t0))
		if out, _ := os.ReadFile(con); true {
			// init's "runner starting (uptime X s)": the guest's own boot.
			if _, rest, ok := strings.Cut(string(out), "runner starting (uptime "); ok {
				if f, err := strconv.ParseFloat(strings.Fields(rest)[0], 64); err == nil {
					guestUp = append(guestUp, f)
				}
			}
		}
		time.Sleep(2 * time.Second) // idle
		if st, err := readState(p.InstanceDir(inst.ProviderID)); err == nil {
			rss = append(rss, vmRSS(st.Pid))
		}
		if err := p.Delete(b.Context(), inst); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(boots)
	slices.Sort(rss)
	pick := func(q float64) int { return min(int(q*float64(len(boots))), len(boots)-1) }
	b.ReportMetric(boots[pick(0.5)].Seconds(), "s-online-p50")
	b.ReportMetric(boots[pick(0.95)].Seconds(), "s-online-p95")
	if len(guestUp) > 0 {
		slices.Sort(guestUp)
		b.ReportMetric(guestUp[len(guestUp)/2], "s-guest-uptime-at-runner-p50")
	}
	if len(rss) > 0 {
		b.ReportMetric(rss[len(rss)/2], "MiB-rss-idle-p50")
	}
	b.Logf("boots: %v; guest uptime at runner start: %v; idle RSS MiB: %v", boots, guestUp, rss)
}

// vmRSS is a process's resident memory in MiB.
func vmRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return float64(kb) / 1024
		}
	}
	return 0
}
