package e2e

import (
	"bytes"
	"encoding/json"
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

// TestSecretsNeverShown plants known secrets (the webhook secret and the
// PAT in the config, through the environment; API tokens minted by the
// CLI), runs a small workload with debug logging, then searches every log
// line, every API answer (each GET route of the served OpenAPI document,
// and each job), the metrics page and the database files for them: none
// may appear.
func TestSecretsNeverShown(t *testing.T) {
	r := newRig(t, standin.Options{Seed: 23}, setup{PoolMax: 2})
	r.cfg.LogLevel = "debug"
	p := r.start(t)
	admin := e2etest.AdminToken(r.listen)
	scraper := e2etest.MintToken(t, e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, r.cfg), Env: r.Env()}, "-scope", "metrics")
	secrets := map[string]string{"webhook secret": r.Secret.Reveal(), "PAT": r.Token, "admin token": admin, "metrics token": scraper}
	const jobs = 3
	for i := 0; i < jobs; i++ {
		r.queue(i, simJob(i), 200*time.Millisecond)
	}
	waitFor(t, 90*time.Second, "every job completed", func() bool { return r.Count(standin.StatusCompleted) == jobs })
	// A refused call carries a wrong token (never to be echoed either).
	secrets["refused token"] = "corral_refused-token-0123456789"
	base := "http://" + r.listen
	answers := map[string]string{}
	call := func(path, token string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers[fmt.Sprintf("GET %s (%d)", path, resp.StatusCode)] = string(b)
	}
	call("/api/v1/openapi.json", "")
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(answers["GET /api/v1/openapi.json (200)"]), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	for path, ops := range doc.Paths {
		if _, ok := ops["get"]; ok && !strings.Contains(path, "{") {
			call(path, admin)
		}
	}
	call("/metrics", scraper)
	call("/api/v1/jobs", secrets["refused token"])
	var list struct {
		Jobs []struct{ ID int64 } `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(answers["GET /api/v1/jobs (200)"]), &list); err != nil || len(list.Jobs) != jobs {
		t.Fatalf("jobs: %v %s", err, answers["GET /api/v1/jobs (200)"])
	}
	for _, j := range list.Jobs {
		call(fmt.Sprint("/api/v1/jobs/", j.ID), admin)
	}
	r.checkClean(t, jobs)
	p.Stop(t)
	// What is searched holds what it should: the search can find things.
	logText := p.Output()
	db := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(r.dataDir, "corral.db*"))
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
		"the database holds the jobs": bytes.Contains(all, []byte("e2e/app")),
		"the metrics page is there":   strings.Contains(answers["GET /metrics (200)"], "# TYPE"),
		"a refused call answered 401": answers["GET /api/v1/jobs (401)"] != "",
		"every GET route answered":    len(answers) >= 8,
	} {
		if !ok {
			t.Fatalf("search precondition failed: %s", what)
		}
	}
	for name, s := range secrets {
		if strings.Contains(logText, s) {
			for _, line := range strings.Split(logText, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("the log shows the %s: %s", name, line)
					break
				}
			}
		}
		for what, body := range answers {
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
		strings.Count(logText, "\n"), len(answers), len(db), len(all), len(secrets))
}
