package github

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func TestClient_Errors(t *testing.T) {
	e := newEnv(t)
	for status, path := range map[int]string{401: "/repos/o/r/actions/jobs/401", 403: "/repos/o/r/actions/jobs/403",
		409: "/repos/o/r/actions/jobs/409", 422: "/repos/o/r/actions/jobs/422", 500: "/repos/o/r/actions/jobs/500"} {
		e.f.on("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-GitHub-Request-Id", "ABCD:1234")
			// An answer that echoes the credential must not carry it on.
			writeJSON(w, status, map[string]any{"message": "nope for " + testPAT})
		})
	}
	var logs bytes.Buffer
	opt := e.options()
	opt.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c, err := NewClient(e.target(corral.ScopeRepo, "o/r"), opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   int64
		want error
	}{{401, corral.ErrUnauthorized}, {403, corral.ErrUnauthorized}, {409, corral.ErrConflict}, {422, corral.ErrBadInput},
		{500, corral.ErrUnavailable}, {404, corral.ErrNotFound}} {
		_, err := c.Job(ctxT(t), tc.id, "o/r")
		var ce *corral.CallError
		if !errors.Is(err, tc.want) || !errors.As(err, &ce) {
			t.Fatalf("job %d: %v, want %v", tc.id, err, tc.want)
		}
		if ce.Op != "get-job" || ce.Target != c.t.ID || ce.Method != "GET" || ce.Status != int(tc.id) ||
			!strings.HasSuffix(ce.URL, fmt.Sprintf("/repos/o/r/actions/jobs/%d", tc.id)) {
			t.Fatalf("job %d: call error %+v", tc.id, ce)
		}
		if ce.RequestID == "" {
			t.Fatalf("job %d: no request id", tc.id)
		}
		mustNotContain(t, err.Error(), testPAT)
	}
	mustNotContain(t, logs.String(), testPAT)

	t.Run("network error is unavailable", func(t *testing.T) {
		tg := e.target(corral.ScopeRepo, "o/r")
		srv := httptest.NewServer(http.NotFoundHandler())
		tg.URL = srv.URL
		srv.Close()
		_, err := e.client(t, tg).Job(ctxT(t), 1, "")
		if !errors.Is(err, corral.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
		mustNotContain(t, err.Error(), testPAT)
	})
}

func TestRunnerDeprecated(t *testing.T) {
	line := "2026-11-25 10:00:00Z: Runner version v2.311.0 is deprecated and cannot receive messages."
	err := RunnerDeprecated(line)
	var d *DeprecatedRunnerError
	if !errors.Is(err, ErrRunnerDeprecated) || !errors.As(err, &d) || d.Version != "v2.311.0" {
		t.Fatalf("err = %v", err)
	}
	if RunnerDeprecated("Listening for Jobs") != nil {
		t.Fatal("false positive")
	}
	// Also in an API answer: kept beside the status kind.
	e := newEnv(t)
	e.f.on("POST /repos/o/r/actions/runners/generate-jitconfig", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 422, map[string]any{"message": "Runner version v2.300.0 is deprecated and cannot receive messages"})
	})
	_, err = e.client(t, e.target(corral.ScopeRepo, "o/r")).MintRunner(ctxT(t), spec1)
	if !errors.Is(err, ErrRunnerDeprecated) || !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("mint: %v", err)
	}
}

func TestClient_Probe(t *testing.T) {
	t.Run("GHES version from the header", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("GET /meta", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-GitHub-Enterprise-Version", "3.17.2")
			writeJSON(w, 200, map[string]any{})
		})
		res, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).Probe(ctxT(t))
		if err != nil || !res.Server || res.Version != "3.17.2" || !res.JIT {
			t.Fatalf("probe = %+v %v", res, err)
		}
	})
	t.Run("github.com", func(t *testing.T) {
		e := newEnv(t)
		res, err := e.client(t, e.target(corral.ScopeOrg, "o")).Probe(ctxT(t))
		if err != nil || res.Server || !res.JIT {
			t.Fatalf("probe = %+v %v", res, err)
		}
	})
	t.Run("refused credential stops minting with a hint", func(t *testing.T) {
		e := newEnv(t)
		e.f.on("GET /orgs/o/actions/runners", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 403, map[string]any{"message": "Resource not accessible by personal access token"})
		})
		_, err := e.client(t, e.target(corral.ScopeOrg, "o")).MintRunner(ctxT(t), spec1)
		if !errors.Is(err, corral.ErrUnauthorized) || !strings.Contains(err.Error(), "admin:org") {
			t.Fatalf("err = %v", err)
		}
		if e.f.count("POST /orgs/o/actions/runners/generate-jitconfig") != 0 {
			t.Fatal("minted with a refused credential")
		}
	})
	t.Run("versions", func(t *testing.T) {
		for v, want := range map[string]bool{"3.9.4": false, "3.10.0": true, "3.10": true, "3.17.2": true, "2.22": false, "4.0": true, "x": true} {
			if versionAtLeast(v, MinJITServerVersion) != want {
				t.Errorf("%s >= 3.10: want %v", v, want)
			}
		}
	})
}

func TestClient_RunnerDownloads(t *testing.T) {
	e := newEnv(t)
	e.f.on("GET /repos/o/r/actions/runners/downloads", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, []any{map[string]any{"os": "linux", "architecture": "x64", "filename": "actions-runner-linux-x64-2.329.0.tar.gz",
			"download_url": "https://example/x.tar.gz", "sha256_checksum": "abc"}})
	})
	ds, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).RunnerDownloads(ctxT(t))
	if err != nil || len(ds) != 1 || ds[0].Version != "2.329.0" || ds[0].Arch != "x64" {
		t.Fatalf("downloads = %+v %v", ds, err)
	}
}

func TestNewClient(t *testing.T) {
	e := newEnv(t)
	bad := []func(*corral.Target){
		func(t *corral.Target) { t.Scope = "user" },
		func(t *corral.Target) { t.Path = "just-owner" },
		func(t *corral.Target) { t.Scope, t.Path = corral.ScopeOrg, "o/r" },
		func(t *corral.Target) { t.URL = "ftp://x" },
		func(t *corral.Target) { t.URL = "https://user:pw@host/api/v3" },
		func(t *corral.Target) { t.Token = "" },
		func(t *corral.Target) { t.Settings[SettingRunnerGroupID] = "zero" },
		func(t *corral.Target) { t.Kind = corral.KindGitea },
	}
	for i, mod := range bad {
		tg := e.target(corral.ScopeRepo, "o/r")
		mod(&tg)
		if _, err := NewClient(tg, Options{}); !errors.Is(err, corral.ErrBadInput) {
			t.Errorf("case %d: err = %v", i, err)
		}
	}
	tg := e.target(corral.ScopeRepo, "o/r")
	tg.URL = ""
	c, err := NewClient(tg, Options{})
	if err != nil || c.base.String() != "https://api.github.com/" {
		t.Fatalf("default URL: %v %v", c, err)
	}
	if e.f.total() != 0 {
		t.Fatal("NewClient did I/O")
	}
}

func TestClient_webURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		scope corral.Scope
		path  string
		want  string
	}{
		{"", corral.ScopeRepo, "o/r", "https://github.com/o/r"},
		{"https://ghes.example/api/v3", corral.ScopeOrg, "o", "https://ghes.example/o"},
		{"https://api.acme.ghe.com", corral.ScopeEnterprise, "e", "https://acme.ghe.com/enterprises/e"},
	} {
		c, err := NewClient(corral.Target{ID: "x", Kind: corral.KindGitHub, Scope: tc.scope, Path: tc.path, URL: tc.url, Token: "t"}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.webURL(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.url, got, tc.want)
		}
	}
}

func TestClient_CAFile(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"id": 1, "status": "queued", "run_id": 2})
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	cert := srv.TLS.Certificates[0]
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := corral.Target{ID: "ghes", Kind: corral.KindGitHub, Scope: corral.ScopeRepo, Path: "o/r", URL: srv.URL + "/api/v3", Token: "t",
		Settings: map[string]string{}}
	plain, _ := NewClient(tg, Options{MaxAttempts: 1})
	if _, err := plain.Job(ctxT(t), 1, ""); !errors.Is(err, corral.ErrUnavailable) {
		t.Fatalf("untrusted server: %v", err)
	}
	tg.Settings[SettingCAFile] = ca
	c, err := NewClient(tg, Options{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := c.Job(ctxT(t), 1, ""); err != nil || ev.ForgeJobID != 1 {
		t.Fatalf("with ca_file: %+v %v", ev, err)
	}
	tg.Settings[SettingCAFile] = filepath.Join(t.TempDir(), "missing.pem")
	c, _ = NewClient(tg, Options{})
	if _, err := c.Job(ctxT(t), 1, ""); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("missing ca_file: %v", err)
	}
}
