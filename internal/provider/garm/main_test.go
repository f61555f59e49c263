package garm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case providertest.RunnerArg:
			syscall.Exit(providertest.RunTestRunner())
		case providertest.GrandchildArg:
			syscall.Exit(providertest.RunGrandchild())
		}
	}
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// testProvider builds the garm-protocol test provider (garmtestprovider)
// with go build, once per test binary.
func testProvider(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "corral-garm-build-")
		if buildErr != nil {
			return
		}
		_ = os.Chmod(buildDir, 0o755)
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "garmtestprovider"),
			"github.com/corral-ci/corral/internal/provider/garm/garmtestprovider")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "garmtestprovider")
}

// testStore opens a real SQLite store in a temporary directory.
func testStore(t testing.TB) corral.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func testExe(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// serveMetadata serves m's paths on 127.0.0.1 and returns the server.
func serveMetadata(t testing.TB, build func(base string) *Metadata) (*Metadata, *httptest.Server) {
	t.Helper()
	var m *Metadata
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+MetadataPath, func(w http.ResponseWriter, r *http.Request) { m.ServeMetadata(w, r) })
	mux.HandleFunc("POST "+CallbackPath, func(w http.ResponseWriter, r *http.Request) { m.ServeCallback(w, r) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	m = build(srv.URL)
	return m, srv
}

// harness runs the providertest suite through corral's garm provider
// against the garm-protocol test provider, its instances fetching their
// bootstrap from a real Metadata endpoint.
type harness struct {
	bin, cfg, dir, data, exe string
	meta                     *Metadata
	env                      map[string]string
	logs                     *syncBuffer
}

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

func newHarness(t testing.TB) *harness {
	root := t.TempDir()
	h := &harness{bin: testProvider(t), dir: filepath.Join(root, "instances"), cfg: filepath.Join(root, "garmtest.json"),
		data: filepath.Join(root, "data"), exe: testExe(t), logs: &syncBuffer{}}
	b, _ := json.Marshal(map[string]any{"dir": h.dir, "namespaces": "off"})
	if err := os.WriteFile(h.cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.meta, _ = serveMetadata(t, func(base string) *Metadata {
		m, err := NewMetadata(MetadataConfig{BaseURL: base, Store: testStore(t), Logger: slog.New(slog.NewTextHandler(h.logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
	return h
}

func (h *harness) settings() Settings {
	return Settings{Executable: h.bin, ConfigFile: h.cfg, Env: h.env}
}

func (h *harness) provider(t testing.TB) *Provider {
	t.Helper()
	p, err := New("garmtest", h.settings(), provider.Env{DataDir: h.data, Metadata: h.meta,
		Logger: slog.New(slog.NewTextHandler(h.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) New(t *testing.T) corral.Provider { return h.provider(t) }
func (h *harness) Image(*testing.T) string          { return h.exe }
func (h *harness) Command() []string                { return []string{providertest.RunnerArg} }

func (h *harness) Output(t *testing.T, inst corral.ProviderInstance) string {
	b, err := os.ReadFile(filepath.Join(h.dir, inst.ProviderID, "runner.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read runner log: %v", err)
	}
	return string(b)
}

func (h *harness) Leftovers(t *testing.T, inst corral.ProviderInstance) []string {
	var left []string
	entries, _ := os.ReadDir(h.dir)
	for _, e := range entries {
		if e.IsDir() && (e.Name() == inst.ProviderID || strings.HasSuffix(e.Name(), inst.InstanceID)) {
			left = append(left, "directory "+e.Name())
		}
	}
	if pid := providertest.FindProc(func(pid int) bool {
		return providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+inst.InstanceID)
	}); pid > 0 {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	return left
}

func (h *harness) Processes(t *testing.T, marker string) int {
	pids, err := providertest.HostProcesses(marker)
	if err != nil {
		t.Fatal(err)
	}
	return len(pids)
}

// TestGarm_Suite: providertest passes through garm's protocol: the garm
// provider runs the test provider, whose instances fetch their bootstrap
// from the metadata endpoint with their token.
func TestGarm_Suite(t *testing.T) {
	h := newHarness(t)
	providertest.Run(t, h)
	if t.Failed() {
		t.Logf("logs:\n%s", h.logs.String())
	}
	for _, secret := range []string{"env-secret-value", "file-secret-value"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("a log line shows the bootstrap secret %q", secret)
		}
	}
}
