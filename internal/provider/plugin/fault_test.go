package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider/providertest"
	pp "github.com/corral-ci/corral/pkg/providerplugin"
)

// faultArg makes the test binary play a misbehaving plugin; the next
// argument names the fault. It answers the handshake properly (but for
// "incompatible") and misbehaves on every other command.
const faultArg = "corral-test-fault-plugin"

// faultChildArg is a child a fault plugin leaves behind; its next argument
// is a marker for the test to find it.
const faultChildArg = "corral-test-fault-child"

func runFault(args []string) int {
	mode := args[0]
	cmd := os.Getenv(pp.EnvCommand)
	_, _ = io.ReadAll(os.Stdin)
	if mode == "hang_silent" && cmd != pp.CmdHandshake {
		// Writes nothing: a write to the pipes of a dead corral would
		// end it by SIGPIPE, which is not what TestFault_DiesWithCorral
		// is about.
		time.Sleep(time.Hour)
	}
	fmt.Fprintf(os.Stderr, "fault plugin %s: starting %s\n", mode, cmd)
	if cmd == pp.CmdHandshake {
		proto := pp.ProtocolVersion
		if mode == "incompatible" {
			proto = 99
		}
		fmt.Printf(`{"handshake":{"protocol":%d,"name":"fault-%s"}}`+"\n", proto, mode)
		return 0
	}
	switch mode {
	case "hang":
		// A child in the plugin's own group, then no answer.
		c := exec.Command(os.Args[0], faultChildArg, args[1])
		_ = c.Start()
		fmt.Fprintln(os.Stderr, "fault plugin hang: waiting forever")
		time.Sleep(time.Hour)
	case "crash":
		fmt.Fprintln(os.Stderr, "fault plugin crash: about to die")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	case "exit":
		fmt.Fprintln(os.Stderr, "fault plugin exit: cannot reach the backend")
		return 3
	case "garbage":
		fmt.Println("this is not JSON at all")
	case "trailing":
		fmt.Println(`{"instances":[]} {"instances":[]}`)
	case "unknown_state":
		answer(cmd, `{"provider_id":"p1","instance_id":"inst-1","state":"zombie"}`)
	case "missing_id":
		answer(cmd, `{"instance_id":"inst-1","state":"running"}`)
	case "huge":
		big := strings.Repeat("x", 1<<16)
		for range 64 {
			fmt.Print(big)
		}
	case "error_answer":
		fmt.Println(`{"error":{"kind":"not_found","message":"image corral-missing-image not found"}}`)
		return 1
	case "leak_stdout":
		// A child in a session of its own keeps standard output open
		// after the plugin answered and exited.
		c := exec.Command(os.Args[0], faultChildArg, args[1])
		c.Stdout = os.Stdout
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		_ = c.Start()
		fmt.Println(`{"instances":[]}`)
	case "fds":
		// Lists its open descriptors (but the one reading the list).
		d, err := os.Open("/proc/self/fd")
		if err != nil {
			return 2
		}
		names, _ := d.Readdirnames(-1)
		fds := map[int]string{}
		for _, n := range names {
			if fd, err := strconv.Atoi(n); err == nil && uintptr(fd) != d.Fd() {
				fds[fd], _ = os.Readlink("/proc/self/fd/" + n)
			}
		}
		b, _ := json.Marshal(fds)
		out, _ := json.Marshal(pp.Response{Health: &pp.Health{OK: false, Message: "fds=" + string(b)}})
		fmt.Println(string(out))
	}
	return 0
}

// answer prints one instance as the command's answer.
func answer(cmd, inst string) {
	if cmd == pp.CmdList {
		fmt.Printf(`{"instances":[%s]}`+"\n", inst)
		return
	}
	fmt.Printf(`{"instance":%s}`+"\n", inst)
}

func faultProvider(t *testing.T, mode string, marker string, s Settings) *Provider {
	t.Helper()
	s.Path = testExe(t)
	s.Args = []string{faultArg, mode, marker}
	p, err := New("faulty-"+mode, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFaults: every misbehaviour gives a *PluginError that names the
// plugin and the command and carries the tail of its stderr; corral (this
// test process) goes on, and nothing the plugin started is left.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		mode string
		call string // list or create
		want []string
		is   error
	}{
		{"hang", "list", []string{"no answer within 2s", "killed with its process group", "waiting forever"}, corral.ErrUnavailable},
		{"crash", "list", []string{"crashed: killed by killed", "about to die"}, corral.ErrUnavailable},
		{"exit", "create", []string{"crashed: exit status 3", "cannot reach the backend"}, corral.ErrUnavailable},
		{"garbage", "list", []string{"malformed answer", "this is not JSON"}, corral.ErrUnavailable},
		{"trailing", "list", []string{"malformed answer", "data after the JSON answer"}, corral.ErrUnavailable},
		{"unknown_state", "list", []string{`unknown state "zombie"`}, corral.ErrUnavailable},
		{"unknown_state", "create", []string{`unknown state "zombie"`}, corral.ErrUnavailable},
		{"missing_id", "list", []string{"without provider_id"}, corral.ErrUnavailable},
		{"missing_id", "create", []string{"without provider_id"}, corral.ErrUnavailable},
		{"huge", "list", []string{"larger than max_output_bytes 65536"}, corral.ErrUnavailable},
		{"error_answer", "create", []string{"image corral-missing-image not found"}, corral.ErrNotFound},
		{"incompatible", "list", []string{"speaks protocol 99, this corral speaks 1"}, corral.ErrBadInput},
	}
	for _, c := range cases {
		t.Run(c.mode+"_"+c.call, func(t *testing.T) {
			marker := providertest.Unique("corral-fault-child-")
			timeout := 20 * time.Second
			if c.mode == "hang" {
				timeout = 2 * time.Second
			}
			p := faultProvider(t, c.mode, marker, Settings{Timeouts: Timeouts{List: timeout, Create: timeout}, MaxOutputBytes: 65536})
			var err error
			if c.call == "list" {
				_, err = p.List(ctx, "ctl-1")
			} else {
				spec := corral.InstanceSpec{InstanceID: "inst-1", Name: "corral-inst-1", ControllerID: "ctl-1", PoolID: "pool-a", Image: "img"}
				_, err = p.Create(ctx, spec)
			}
			if err == nil {
				t.Fatalf("%s on plugin %s succeeded", c.call, c.mode)
			}
			var pe *PluginError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %q is not a *PluginError", err, err)
			}
			msg := err.Error()
			for _, w := range append(c.want, "plugin faulty-"+c.mode) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if c.mode != "incompatible" && !strings.Contains(pe.Stderr, "fault plugin "+c.mode+": starting") {
				t.Errorf("error's stderr %q lacks the plugin's first line", pe.Stderr)
			}
			if !errors.Is(err, c.is) {
				t.Errorf("error %q is not %v", msg, c.is)
			}
			// SIGKILL is delivered at once, but a process takes a moment
			// to die: poll, bounded.
			providertest.Eventually(t, "no process of the plugin left", func() bool {
				pids, _ := providertest.HostProcesses(marker)
				return len(envProcesses(t, pp.EnvProviderName+"=faulty-"+c.mode)) == 0 && len(pids) == 0
			})
		})
	}
}

// TestFault_HangIsolated: a plugin that hangs holds up its own call only;
// another plugin provider answers meanwhile.
func TestFault_HangIsolated(t *testing.T) {
	hang := faultProvider(t, "hang", providertest.Unique("corral-fault-child-"), Settings{Timeouts: Timeouts{List: 5 * time.Second}})
	good := newHarness(t, "off").provider(t)
	done := make(chan error, 1)
	go func() {
		_, err := hang.List(context.Background(), "ctl-1")
		done <- err
	}()
	if _, err := good.List(context.Background(), "ctl-1"); err != nil {
		t.Fatalf("good plugin's List: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("hanging plugin answered before the good one was done: %v", err)
	default:
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "no answer within 5s") {
		t.Errorf("hanging plugin: %v", err)
	}
}

// TestFault_LeakedStdout: a plugin whose child keeps its standard output
// open after it answered does not hold corral up past the wait delay.
func TestFault_LeakedStdout(t *testing.T) {
	marker := providertest.Unique("corral-fault-child-")
	p := faultProvider(t, "leak_stdout", marker, Settings{Timeouts: Timeouts{List: time.Minute}})
	t.Cleanup(func() {
		pids, _ := providertest.HostProcesses(marker)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	list, err := p.List(context.Background(), "ctl-1")
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v; want the empty answer", list, err)
	}
	if pids, _ := providertest.HostProcesses(marker); len(pids) == 0 {
		t.Fatalf("the leaking child is not running: the test shows nothing")
	}
}

// TestFault_NoFdLeak: a descriptor corral opened without O_CLOEXEC does
// not reach the plugin, whose standard streams are its only descriptors
// besides those its own runtime opens. The same program started by plain
// os/exec does inherit it, so the test can fail.
func TestFault_NoFdLeak(t *testing.T) {
	path := filepath.Join(t.TempDir(), providertest.Unique("corral-leak-"))
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)

	plain := exec.Command(testExe(t), faultArg, "fds", "")
	plain.Env = []string{pp.EnvCommand + "=" + pp.CmdHealth}
	out, _ := plain.Output()
	if !strings.Contains(string(out), path) {
		t.Fatalf("plain os/exec child does not see fd %d (%s): the test shows nothing; it lists %s", fd, path, out)
	}

	p := faultProvider(t, "fds", "", Settings{})
	err = p.Health(context.Background())
	if err == nil || !strings.Contains(err.Error(), "fds=") {
		t.Fatalf("Health = %v, want the plugin's list of descriptors", err)
	}
	msg := err.Error()
	list, _, _ := strings.Cut(msg[strings.Index(msg, "fds=")+4:], "; stderr")
	var fds map[int]string
	if err := json.Unmarshal([]byte(list), &fds); err != nil {
		t.Fatalf("descriptor list %q: %v", list, err)
	}
	for n, target := range fds {
		switch {
		case n <= 2 && strings.HasPrefix(target, "pipe:"):
		case n > 2 && (strings.HasPrefix(target, "anon_inode:") || strings.HasPrefix(target, "/sys/fs/cgroup/")):
			// the Go runtime's own poller and GOMAXPROCS reads
		default:
			t.Errorf("plugin has fd %d -> %s open", n, target)
		}
	}
	if strings.Contains(list, path) {
		t.Errorf("corral's fd %d (%s) leaked into the plugin: %s", fd, path, list)
	}
}

// corralArg makes the test binary play corral: it calls List on a hanging
// plugin provider named by the next argument and waits.
const corralArg = "corral-test-corral"

func runCorral(name string) int {
	exe, _ := os.Executable()
	p, err := New(name, Settings{Path: exe, Args: []string{faultArg, "hang_silent", ""}, Timeouts: Timeouts{List: time.Minute}}, nil)
	if err != nil {
		return 2
	}
	_, _ = p.List(context.Background(), "ctl-1")
	return 0
}

// TestFault_DiesWithCorral: a plugin still running when corral is killed
// with SIGKILL dies with it instead of hanging on.
func TestFault_DiesWithCorral(t *testing.T) {
	name := providertest.Unique("hang-")
	c := exec.Command(testExe(t), corralArg, name)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	kv := pp.EnvProviderName + "=" + name
	// The handshake answers; the list invocation hangs.
	providertest.Eventually(t, "the hanging list invocation", func() bool {
		for _, pid := range envProcesses(t, kv) {
			if providertest.ProcHasEntry(pid, pp.EnvCommand+"="+pp.CmdList) {
				return true
			}
		}
		return false
	})
	if err := c.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.Wait()
	providertest.Eventually(t, "the plugin to die with corral", func() bool {
		for _, pid := range envProcesses(t, kv) {
			if providertest.ProcHasEntry(pid, pp.EnvCommand+"="+pp.CmdList) {
				return false
			}
		}
		return true
	})
}
