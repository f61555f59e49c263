package qemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
)

// vmWait bounds every wait for a guest: boots are CPU-bound under TCG
// and take 2-3 s on an idle machine, 15-25 s on this shared one.
const vmWait = 2 * time.Minute

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(vmWait)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", vmWait, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shellSpec is a spec whose runner is a directory holding the test runner,
// and whose command is a busybox shell script.
func shellSpec(t *testing.T, h *harness, ctl, script string, opt Options, env map[string]corral.Secret) corral.InstanceSpec {
	t.Helper()
	spec := providertest.Spec(t, h, ctl, env)
	dir := t.TempDir()
	if err := os.Link(h.cfg.Runner, filepath.Join(dir, "corral-test-runner")); err != nil {
		b, rerr := os.ReadFile(h.cfg.Runner)
		if rerr != nil || os.WriteFile(filepath.Join(dir, "corral-test-runner"), b, 0o755) != nil {
			t.Fatal(err)
		}
	}
	opt.Runner = dir
	raw, err := json.Marshal(opt)
	if err != nil {
		t.Fatal(err)
	}
	spec.Options = raw
	spec.Flavor.DiskMB = 256
	spec.Bootstrap.Command = []string{"sh", "-c", script}
	return spec
}

func consoleOf(h *harness, inst corral.ProviderInstance) string {
	b, _ := os.ReadFile(filepath.Join(h.cfg.Dir, inst.ProviderID, consoleFile))
	return string(b)
}

// grepTree returns the files under root whose bytes contain needle.
func grepTree(t *testing.T, root string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestWorkspace_MarkerNotOnHost: a job writes a marker into its workspace
// and syncs. With workspace none it lands in the overlay (the search
// works); with tmpfs and encrypted nothing on the host holds it, before
// the delete (overlay, scratch disk, the whole instance directory) or
// after (the provider's whole directory). The bootstrap never stays on
// the host and is never on QEMU's command line.
func TestWorkspace_MarkerNotOnHost(t *testing.T) {
	h := newHarness(t)
	p := h.provider(t)
	for _, ws := range []string{WorkspaceNone, WorkspaceTmpfs, WorkspaceEncrypted} {
		t.Run(ws, func(t *testing.T) {
			ctl := providertest.Unique("ctl-")
			marker := providertest.Unique("corral-marker-")
			secret := providertest.Unique("bootstrap-secret-")
			// The marker travels in the environment, written 4096 times.
			script := `i=0; while [ $i -lt 4096 ]; do echo "$MARK"; i=$((i+1)); done >/work/marker.txt; sync; ` +
				`mount | grep ' /work '; echo "job: wrote marker"; sleep 600`
			spec := shellSpec(t, h, ctl, script, Options{Workspace: ws},
				map[string]corral.Secret{"MARK": corral.Secret(marker), "SECRET": corral.Secret(secret)})
			inst, err := p.Create(t.Context(), spec)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			t.Cleanup(func() { _ = p.Delete(t.Context(), inst) })
			dir := p.InstanceDir(inst.ProviderID)
			if _, err := os.Stat(filepath.Join(dir, bootstrapFile)); !os.IsNotExist(err) {
				t.Errorf("bootstrap.tar still on the host after Create (%v)", err)
			}
			st, err := readState(dir)
			if err != nil {
				t.Fatal(err)
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.Pid))
			if len(cmdline) == 0 || bytes.Contains(cmdline, []byte(secret)) || bytes.Contains(cmdline, []byte(marker)) {
				t.Errorf("QEMU's command line (%d bytes) holds the bootstrap, or is unreadable", len(cmdline))
			}
			waitFor(t, "the job to write its marker", func() bool { return strings.Contains(consoleOf(h, inst), "job: wrote marker") })
			t.Logf("console:\n%s", consoleOf(h, inst))
			// Let the host see every write: stop the VM first (QEMU
			// flushes its disks), then search.
			if err := p.stop(t.Context(), st); err != nil {
				t.Fatal(err)
			}
			hits := grepTree(t, dir, []byte(marker))
			if ws == WorkspaceNone {
				if len(hits) == 0 {
					t.Fatalf("workspace none: the marker is not in %s: the search cannot find what it looks for", dir)
				}
				t.Logf("workspace none: the marker is in %v (as it should)", hits)
			} else if len(hits) > 0 {
				t.Errorf("workspace %s: the marker is on the host in %v", ws, hits)
			}
			if ws == WorkspaceEncrypted {
				if _, err := os.Stat(filepath.Join(dir, scratchFile)); err != nil {
					t.Errorf("no scratch disk: %v", err)
				}
			}
			if hits := grepTree(t, dir, []byte(secret)); len(hits) > 0 {
				t.Errorf("the bootstrap secret is on the host in %v", hits)
			}
			if err := p.Delete(t.Context(), inst); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Errorf("instance directory survived Delete: %v", err)
			}
			if hits := grepTree(t, h.cfg.Dir, []byte(marker)); len(hits) > 0 {
				t.Errorf("after Delete the marker is in %v", hits)
			}
			if alive(st) {
				t.Errorf("QEMU %d survived Delete", st.Pid)
			}
		})
	}
}

// TestNetwork_OnlyForwardsReachable: two HTTP services on the host's
// loopback; the guest reaches the forwarded one (through the guest's own
// loopback relay and the forward's address) and not the other, neither
// through the host alias 10.0.2.2 nor anything else.
func TestNetwork_OnlyForwardsReachable(t *testing.T) {
	serve := func(body string, hits *atomic.Int64) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			fmt.Fprint(w, body)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { _ = srv.Close() })
		return l.Addr().String()
	}
	var fwdHits, hiddenHits atomic.Int64
	fwd := serve("forwarded-ok", &fwdHits)
	hidden := serve("hidden-reached", &hiddenHits)
	_, hiddenPort, _ := net.SplitHostPort(hidden)
	_, fwdPort, _ := net.SplitHostPort(fwd)

	h := newHarness(t)
	h.cfg.Forwards = []Forward{{Host: fwd, Guest: fwd}}
	p := h.provider(t)
	// busybox's static wget cannot resolve anything (static glibc); nc
	// speaks HTTP/1.0 well enough.
	script := fmt.Sprintf(`get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 "$1" "$2" 2>&1 | tail -n 1; }
sleep 1
echo "loopback-fwd: $(get 127.0.0.1 %[1]s)"
echo "direct-fwd: $(get 10.0.2.100 %[1]s)"
echo "hidden-host-alias: $(get 10.0.2.2 %[2]s)"
echo "hidden-loopback: $(get 127.0.0.1 %[2]s)"
echo "hidden-fwd-ip: $(get 10.0.2.100 %[2]s)"
echo "net: done"; sleep 600`, fwdPort, hiddenPort)
	inst, err := p.Create(t.Context(), shellSpec(t, h, providertest.Unique("ctl-"), script, Options{}, nil))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(t.Context(), inst) })
	waitFor(t, "the network probes", func() bool { return strings.Contains(consoleOf(h, inst), "net: done") })
	out := consoleOf(h, inst)
	t.Logf("console:\n%s", out)
	for _, want := range []string{"loopback-fwd: forwarded-ok", "direct-fwd: forwarded-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("the forwarded service was not reached: want %q", want)
		}
	}
	if strings.Contains(out, "hidden-reached") || hiddenHits.Load() != 0 {
		t.Errorf("the guest reached the service that was not forwarded (%d requests)", hiddenHits.Load())
	}
	if fwdHits.Load() < 2 {
		t.Errorf("forwarded service saw %d requests, want 2", fwdHits.Load())
	}
}

// TestArm64_GuestRunsRunner boots an arm64 guest (qemu-system-aarch64,
// cortex-a57, emulated) for a pool with arch arm64 and runs an arm64
// build of the test runner in it.
func TestArm64_GuestRunsRunner(t *testing.T) {
	h := newHarness(t)
	if _, err := os.Stat("/usr/bin/qemu-system-aarch64"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-system-aarch64 is missing (apt-get install qemu-system-arm)")
		}
		t.Skip("qemu-system-aarch64 is missing")
	}
	guest := buildGuest(t, "arm64")
	runner, err := staticBuild(t.TempDir(), "corral-test-runner",
		"github.com/corral-ci/corral/internal/provider/docker/internal/testrunner", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Runner = runner
	p := h.provider(t)
	ctl := providertest.Unique("ctl-")
	spec := providertest.Spec(t, h, ctl, map[string]corral.Secret{providertest.EnvEcho: "arm64-hello", providertest.EnvRunFor: "1s"})
	spec.Image = guest
	spec.Flavor.Arch = "arm64"

	x64 := spec
	x64.Flavor.Arch = "x64"
	if _, err := p.Create(t.Context(), x64); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("an x64 pool on the arm64 guest: err %v, want a clear refusal", err)
	}
	inst, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(t.Context(), inst) })
	waitFor(t, "the arm64 runner to finish", func() bool {
		return strings.Contains(consoleOf(h, inst), "corral-test-runner: done")
	})
	out := consoleOf(h, inst)
	t.Logf("console:\n%s", out)
	if !strings.Contains(out, "echo=arm64-hello") {
		t.Errorf("the runner did not print its bootstrap")
	}
	st, _ := readState(p.InstanceDir(inst.ProviderID))
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.Pid))
	if st.Arch != "arm64" || (len(cmdline) > 0 && !bytes.Contains(cmdline, []byte("qemu-system-aarch64"))) {
		t.Errorf("state arch %q, QEMU %q: want arm64 under qemu-system-aarch64", st.Arch, cmdline)
	}
}

// TestDeadline_HostKillsOverdueVM: a VM whose guest did not power off at
// its deadline (its timer was killed, say) is killed by the host side:
// List kills a QEMU alive past deadline plus grace and lists it stopped.
// Accelerator and machine are stated for /readyz.
func TestDeadline_HostKillsOverdueVM(t *testing.T) {
	h := newHarness(t)
	p := h.provider(t)
	if d := p.Describe(); !strings.Contains(d, "accel tcg") && !strings.Contains(d, "accel kvm") {
		t.Errorf("Describe() = %q: want the accelerator named", d)
	}
	ctl := providertest.Unique("ctl-")
	inst, err := p.Create(t.Context(), providertest.Spec(t, h, ctl, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Delete(t.Context(), inst) })
	dir := p.InstanceDir(inst.ProviderID)
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := providertest.Find(t, p, ctl, inst.InstanceID); !ok || !got.Running {
		t.Fatalf("before the deadline: %+v (found %v), want running", got, ok)
	}
	st.Deadline = time.Now().Add(-deadlineGrace - time.Second) // overdue, as the guest would not see
	if err := writeState(dir, st); err != nil {
		t.Fatal(err)
	}
	got, ok := providertest.Find(t, h.provider(t), ctl, inst.InstanceID)
	if !ok || got.Running {
		t.Errorf("overdue VM listed %+v (found %v), want stopped", got, ok)
	}
	waitFor(t, "QEMU to die", func() bool { return !alive(st) })
	if !strings.Contains(h.logs.String(), "VM outlived its deadline") {
		t.Errorf("no log line for the kill")
	}
}
