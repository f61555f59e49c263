package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// leakSearch gathers what corral showed (API answers) and searches it,
// the log and the database files for planted secrets.
type leakSearch struct {
	base    string
	answers map[string]string // "GET /path (200)" -> body
}

func newLeakSearch(listen string) *leakSearch {
	return &leakSearch{base: "http://" + listen, answers: map[string]string{}}
}

// call sends method path with token (none if empty) and body, and keeps
// the answer; it returns the status.
func (l *leakSearch) call(t *testing.T, method, path, token, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, l.base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	l.answers[fmt.Sprintf("%s %s (%d)", method, path, resp.StatusCode)] = string(b)
	return resp.StatusCode
}

// readAll calls every GET route of the served OpenAPI document that has
// no path parameter, /metrics with the scraper's token, and each job.
func (l *leakSearch) readAll(t *testing.T, admin, scraper string, jobs int) {
	t.Helper()
	l.call(t, "GET", "/api/v1/openapi.json", "", "")
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(l.answers["GET /api/v1/openapi.json (200)"]), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	for path, ops := range doc.Paths {
		if _, ok := ops["get"]; ok && !strings.Contains(path, "{") {
			l.call(t, "GET", path, admin, "")
		}
	}
	l.call(t, "GET", "/metrics", scraper, "")
	var list struct {
		Jobs []struct{ ID int64 } `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(l.answers["GET /api/v1/jobs (200)"]), &list); err != nil || len(list.Jobs) != jobs {
		t.Fatalf("jobs: %v %s", err, l.answers["GET /api/v1/jobs (200)"])
	}
	for _, j := range list.Jobs {
		l.call(t, "GET", fmt.Sprint("/api/v1/jobs/", j.ID), admin, "")
	}
}

// check searches the log, every answer and the database files under
// dataDir for each secret. repo is a string the database must hold (a
// repository of the workload), to prove the search can find things.
func (l *leakSearch) check(t *testing.T, secrets map[string]string, logText, dataDir, repo string) {
	t.Helper()
	db := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(dataDir, "corral.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		db[filepath.Base(f)] = b
	}
	var all []byte
	for _, b := range db {
		all = append(all, b...)
	}
	for what, ok := range map[string]bool{
		"the log shows the jobs":      strings.Contains(logText, "corral serving") && strings.Contains(logText, "instance started"),
		"the log shows the refusal":   strings.Contains(logText, "api request refused"),
		"the database holds the jobs": bytes.Contains(all, []byte(repo)),
		"the metrics page is there":   strings.Contains(l.answers["GET /metrics (200)"], "# TYPE"),
		"a refused call answered 401": l.answers["GET /api/v1/jobs (401)"] != "",
		"every GET route answered":    len(l.answers) >= 8,
	} {
		if !ok {
			t.Fatalf("search precondition failed: %s", what)
		}
	}
	for name, s := range secrets {
		if s == "" {
			t.Fatalf("secret %s is empty", name)
		}
		if strings.Contains(logText, s) {
			for _, line := range strings.Split(logText, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("the log shows the %s: %s", name, line)
					break
				}
			}
		}
		for what, body := range l.answers {
			if strings.Contains(body, s) {
				t.Errorf("%s shows the %s", what, name)
			}
		}
		for f, b := range db {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("database file %s holds the %s", f, name)
			}
		}
	}
	t.Logf("searched %d log lines, %d API answers, %d database files (%d bytes) for %d secrets",
		strings.Count(logText, "\n"), len(l.answers), len(db), len(all), len(secrets))
}

// TestSecretsNeverShown plants known secrets (the webhook secret and the
// PAT in the config, through the environment; API tokens minted by the
// CLI; the token of API writes), runs a small workload with debug logging,
// then searches every log line, every API answer (each GET route of the
// served OpenAPI document, each job, the writes), the metrics page and
// the database files for them: none may appear.
func TestSecretsNeverShown(t *testing.T) {
	r := newRig(t, standin.Options{Seed: 23}, setup{PoolMax: 2})
	r.cfg.LogLevel = "debug"
	p := r.start(t)
	admin := e2etest.AdminToken(r.listen)
	scraper := e2etest.MintToken(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Env: r.Env()}, "-scope", "metrics")
	secrets := map[string]string{"webhook secret": r.Secret.Reveal(), "PAT": r.Token, "admin token": admin, "metrics token": scraper,
		"refused token": "corral_refused-token-0123456789"}
	const jobs = 3
	for i := 0; i < jobs; i++ {
		r.queue(i, simJob(i), 200*time.Millisecond)
	}
	waitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	l := newLeakSearch(r.listen)
	// API writes: a pool change, a refused one (its body names a secret
	// as an unknown key's value), and one with a wrong token.
	if c := l.call(t, "PATCH", "/api/v1/pools/linux", admin, `{"max_instances": 3}`); c != 200 {
		t.Fatalf("PATCH: %d", c)
	}
	l.call(t, "PATCH", "/api/v1/pools/linux", admin, `{"token": "`+r.Token+`"}`)
	l.call(t, "PATCH", "/api/v1/pools/linux", secrets["refused token"], `{"max_instances": 4}`)
	l.call(t, "GET", "/api/v1/jobs", secrets["refused token"], "")
	l.readAll(t, admin, scraper, jobs)
	r.checkClean(t, jobs)
	p.Stop(t)
	l.check(t, secrets, p.Output(), r.dataDir, "e2e/app")
}

// TestSecretsNeverShown_GitHub does the same search on the GitHub path: a
// PAT target and a GitHub App target (the App's private key in a file
// the config names, its webhook secret), plus every credential the
// stand-in GitHub handed out while serving the jobs (installation tokens,
// registration tokens, each runner's one-time JIT credential).
func TestSecretsNeverShown_GitHub(t *testing.T) {
	r := newGHRig(t, 29, 4)
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	debug := strings.Replace(string(cfg), "log: {level: info", "log: {level: debug", 1)
	if debug == string(cfg) {
		t.Fatal("config has no log level line to raise")
	}
	if err := os.WriteFile(r.cfg, []byte(debug), 0o600); err != nil {
		t.Fatal(err)
	}
	// The key that seals credentials written through the API.
	r.env = append(r.env, "CORRAL_SECRET_KEY="+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	p := r.start(t)
	admin := e2etest.AdminToken(r.listen)
	scraper := e2etest.MintToken(t, e2etest.Serve{Bin: corralBin, Config: r.cfg, Env: r.env}, "-scope", "metrics")
	// Credentials planted through the API writes, before the workload: a
	// PAT target (then its PAT changed), an App target with its own key
	// and webhook secret, and a refused write that carries a secret.
	apiKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	apiPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(apiKey)}))
	planted := map[string]string{"API webhook secret": "api-planted-webhook-secret-77", "API PAT": "ghp_apiPlantedPAT0123456789abcdefAB",
		"API PAT (changed)": "ghp_apiChangedPAT9876543210fedcbaCD", "API App webhook secret": "api-planted-app-hook-secret-88",
		"API App key (PEM)": apiPEM}
	l := newLeakSearch(r.listen)
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	if c := l.call(t, "POST", "/api/v1/targets", admin, js(map[string]any{"id": "api-pat", "kind": "github", "scope": "org", "path": "gamma",
		"url": r.url, "webhook_secret": planted["API webhook secret"], "token": planted["API PAT"]})); c != 201 {
		t.Fatalf("POST target api-pat: %d %v", c, l.answers)
	}
	if c := l.call(t, "PATCH", "/api/v1/targets/api-pat", admin, js(map[string]any{"token": planted["API PAT (changed)"]})); c != 200 {
		t.Fatalf("PATCH target api-pat: %d", c)
	}
	if c := l.call(t, "POST", "/api/v1/targets", admin, js(map[string]any{"id": "api-app", "kind": "github", "scope": "org", "path": "delta",
		"url": r.url, "settings": map[string]string{"app_id": "8", "installation_id": "9"}, "webhook_secret": planted["API App webhook secret"],
		"token": apiPEM})); c != 201 {
		t.Fatalf("POST target api-app: %d", c)
	}
	if c := l.call(t, "POST", "/api/v1/targets", admin, js(map[string]any{"id": "api-bad", "kind": "gitlab", "scope": "org", "path": "x",
		"webhook_secret": planted["API webhook secret"], "token": planted["API PAT"]})); c != 400 {
		t.Fatalf("POST of a bad target: %d", c)
	}
	const jobs = 4
	r.queue(jobs, func(int) time.Duration { return 200 * time.Millisecond })
	waitFor(t, 90*time.Second, "every job completed", func() bool { return len(r.gh.Stats().Completions) == jobs })
	l.call(t, "PATCH", "/api/v1/pools/linux", admin, `{"max_instances": 5}`)
	l.call(t, "GET", "/api/v1/jobs", "corral_refused-token-0123456789", "")
	l.readAll(t, admin, scraper, jobs)
	r.checkClean(t, jobs)
	p.Stop(t)
	// The key's body, line by line (a log that printed any 64-character
	// line of it would be found), and the whole PEM.
	secrets := map[string]string{"App key (PEM)": string(r.appKey), "PAT": ghPAT, "admin token": admin, "metrics token": scraper}
	for i, line := range strings.Split(string(r.appKey), "\n") {
		if len(line) == 64 {
			secrets[fmt.Sprint("App key line ", i)] = line
		}
	}
	for _, e := range r.env {
		if k, v, _ := strings.Cut(e, "="); strings.HasSuffix(k, "_SECRET") {
			secrets[k] = v
		}
	}
	for k, v := range planted {
		secrets[k] = v
	}
	for i, line := range strings.Split(apiPEM, "\n") {
		if len(line) == 64 {
			secrets[fmt.Sprint("API App key line ", i)] = line
		}
	}
	if !strings.Contains(l.answers["GET /api/v1/targets (200)"], `"token_set":true`) {
		t.Fatalf("GET /targets does not say the API-written token is set: %s", l.answers["GET /api/v1/targets (200)"])
	}
	issued := r.gh.IssuedSecrets()
	if len(issued) < jobs { // at least one runner credential per job
		t.Fatalf("the stand-in issued %d credentials for %d jobs", len(issued), jobs)
	}
	for i, s := range issued {
		secrets[fmt.Sprint("issued credential ", i)] = s
	}
	l.check(t, secrets, p.Output(), r.dataDir, "alpha/app")
}
