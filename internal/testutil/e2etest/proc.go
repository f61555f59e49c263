package e2etest

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the harness.
const (
	StartTimeout = 20 * time.Second // corral answers /healthz
	StopTimeout  = 20 * time.Second // corral exits after SIGTERM
	logTail      = 80               // lines of a log shown on failure
)

// EnvKeepLogs names a directory that receives a copy of every corral log.
const EnvKeepLogs = "CORRAL_E2E_KEEP_LOGS"

// Serve describes one `corral serve` process.
type Serve struct {
	Bin    string   // the corral binary (Build)
	Config string   // config file (WriteConfig)
	Listen string   // its listen address, for the health check
	Env    []string // added to the test's environment
	Args   []string // after `serve -config FILE`
}

// Proc is one running `corral serve`.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	Log  string // path of its combined output
}

// Start mints an admin API token for s (AdminToken), starts s and waits
// until it answers /healthz. The process is killed
// (SIGKILL) at the end of the test, and its log shown if the test failed.
func Start(t testing.TB, s Serve) *Proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "corral-*.log")
	if err != nil {
		t.Fatal(err)
	}
	// Every corral the harness starts gets an admin API token, which
	// APIGet and Authorize send (the API answers nobody without one).
	tokens.Store(s.Listen, MintToken(t, s, "-admin", "-name", "e2e "+s.Listen))
	cmd := exec.Command(s.Bin, append([]string{"serve", "-config", s.Config}, s.Args...)...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{}), Log: logf.Name()}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		keepLog(p.Log)
		if t.Failed() {
			DumpLog(t, p.Log)
		}
	})
	p.waitHealthy(t, "http://"+s.Listen+"/healthz")
	return p
}

// Kill sends SIGKILL (to this process, by pid) and waits for it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits for the exit; past StopTimeout it fails the
// test and kills.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		t.Errorf("corral did not stop within %s of SIGTERM", StopTimeout)
		p.Kill()
	}
}

// Signal sends sig (SIGHUP, ...) to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output returns the process's log so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

func (p *Proc) waitHealthy(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			DumpLog(t, p.Log)
			t.Fatal("corral exited during start-up")
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("corral did not answer %s within %s", url, StartTimeout)
}

// DumpLog logs the last lines of the file at path.
func DumpLog(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	t.Logf("last lines of %s:\n%s", path, LastLines(string(b), logTail))
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func keepLog(path string) {
	dir := os.Getenv(EnvKeepLogs)
	if dir == "" {
		return
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	}
}

// FreePort returns a free 127.0.0.1 address.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitFor polls cond every 100 ms until it holds, or fails the test after
// within.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Processes lists live processes whose command line contains any of
// needles (a data or image directory): shims, scripts and runners.
// Zombies are dead and left out.
func Processes(needles ...string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || !containsAny(cmdline, needles) || ProcState(pid) == "Z" {
			continue
		}
		out = append(out, pid+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

func containsAny(b []byte, needles []string) bool {
	for _, n := range needles {
		if n != "" && bytes.Contains(b, []byte(n)) {
			return true
		}
	}
	return false
}

// ProcState is the state letter of a process in /proc (R, S, Z, ...), "" if gone.
func ProcState(pid string) string {
	f, err := os.Open("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	i := strings.LastIndexByte(line, ')')
	if i < 0 || i+2 >= len(line) {
		return ""
	}
	return line[i+2 : i+3]
}
