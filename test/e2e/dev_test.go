package e2e

import (
	"bytes"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
)

// TestDev runs `corral dev` with no configuration (the GitHub adapter
// against its in-process stand-in GitHub), lets jobs flow, stops it with
// Ctrl-C (SIGINT) and checks that it printed each job's path and left no
// process behind.
func TestDev(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "dev")
	var out syncBuffer
	// A relative data directory, as a newcomer would give it.
	cmd := exec.Command(corralBin, "dev", "-data", "dev", "-listen", "127.0.0.1:0", "-every", "200ms", "-seed", "7")
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// A job a warm runner took before its queued webhook came shows no
	// "routed" stamp: wait for one that went the whole way too.
	waitFor(t, 90*time.Second, "jobs routed and done, and a job refused", func() bool {
		s := out.String()
		return strings.Contains(s, "success") && strings.Contains(s, "refused:") && strings.Contains(s, "routed")
	})
	// The printed admin token opens the API; without it the API says 401.
	m := regexp.MustCompile(`HTTP on http://(\S+) .*\nAPI admin token \(shown once\): (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("corral dev printed no API token:\n%s", out.String())
	}
	for tok, want := range map[string]int{m[2]: 200, "": 401} {
		req, _ := http.NewRequest("GET", "http://"+m[1]+"/api/v1/jobs", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /api/v1/jobs with token %q: %s, want %d", tok, resp.Status, want)
		}
	}
	if n := len(runnerProcesses(data)); n == 0 {
		t.Log("no runner process alive at the moment of the stop (all idle between jobs)")
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("corral dev exited with %v:\n%s", err, out.String())
		}
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("corral dev did not stop within 40s of Ctrl-C:\n%s", out.String())
	}
	text := out.String()
	for _, want := range []string{"stand-in GitHub on http://127.0.0.1:", "queued", "routed", "running", "done", "success", "refused:", "stopped cleanly"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if left := runnerProcesses(data); len(left) > 0 {
		t.Fatalf("processes left after Ctrl-C: %v", left)
	}
}

// TestServeAdopts stops `corral serve` (SIGTERM) while runners are busy:
// they keep running, and the next start adopts them and finishes the jobs.
func TestServeAdopts(t *testing.T) {
	r := newRig(t, standin.Options{Seed: 11}, setup{PoolMax: 4})
	p := r.start(t)
	for i := 0; i < 3; i++ {
		r.queue(i, simJob(i), 15*time.Second) // long enough to be busy through the stop
	}
	waitFor(t, 60*time.Second, "three runners busy", func() bool { return r.Count(standin.StatusInProgress) == 3 })
	p.Stop(t)
	if n := len(runnerProcesses(r.dataDir)); n < 3 {
		t.Fatalf("stopping serve left %d runner processes, want the 3 busy ones kept", n)
	}
	p = r.start(t)
	waitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == 3 })
	r.checkClean(t, 3)
	p.Stop(t)
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
