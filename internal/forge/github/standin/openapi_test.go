package standin

// The stand-in's answers checked against GitHub's OpenAPI description:
// testdata/openapi/openapi-actions-runners.json is a verbatim copy of
// /work/shared/fixtures/github/openapi-actions-runners.json (a subset of
// @octokit/openapi@23.0.2, MIT; see LICENSE-NOTE.md and
// openapi-actions-runners.md there). The checker below knows the parts of
// JSON Schema that document uses for answers: $ref, allOf/anyOf/oneOf,
// type, nullable, required, properties, items, enum, date-time.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

type openAPI struct{ doc map[string]any }

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	b, err := os.ReadFile("testdata/openapi/openapi-actions-runners.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return openAPI{doc}
}

// deref follows a local $ref ("#/components/schemas/x").
func (o openAPI) deref(v map[string]any) map[string]any {
	for {
		ref, ok := v["$ref"].(string)
		if !ok {
			return v
		}
		var cur any = o.doc
		for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[p]
		}
		v = cur.(map[string]any)
	}
}

// responseSchema is the JSON schema of method path's answer with status.
func (o openAPI) responseSchema(t *testing.T, method, path string, status int) map[string]any {
	t.Helper()
	op, _ := o.doc["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if op == nil {
		t.Fatalf("no operation %s %s in the OpenAPI document", method, path)
	}
	resp, _ := op["responses"].(map[string]any)[fmt.Sprint(status)].(map[string]any)
	if resp == nil {
		t.Fatalf("%s %s: status %d not documented", method, path, status)
	}
	resp = o.deref(resp)
	s, _ := resp["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	return s
}

// check returns what in v breaks schema s, each with its JSON path.
func (o openAPI) check(s map[string]any, v any, at string) []string {
	s = o.deref(s)
	var errs []string
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			errs = append(errs, o.check(sub.(map[string]any), v, at)...)
		}
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts, ok := s[k].([]any); ok {
			var first []string
			for i, sub := range alts {
				e := o.check(sub.(map[string]any), v, at)
				if len(e) == 0 {
					first = nil
					break
				}
				if i == 0 {
					first = e
				}
			}
			errs = append(errs, first...)
		}
	}
	if v == nil {
		if s["nullable"] == true || s["type"] == nil {
			return errs
		}
		return append(errs, at+": null, not nullable")
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want object", at, v))
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required %q missing", at, r))
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, sub := range props {
			if x, ok := m[k]; ok {
				errs = append(errs, o.check(sub.(map[string]any), x, at+"."+k)...)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want array", at, v))
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range a {
				errs = append(errs, o.check(items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want string", at, v))
		}
		if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, any(str)) {
			errs = append(errs, fmt.Sprintf("%s: %q not in %v", at, str, enum))
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is no date-time", at, str))
			}
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want %s", at, v, s["type"]))
		}
		if _, err := n.Int64(); err != nil && s["type"] == "integer" {
			errs = append(errs, fmt.Sprintf("%s: %s is no integer", at, n))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return append(errs, fmt.Sprintf("%s: %T, want boolean", at, v))
		}
	}
	return errs
}

func TestServer_AnswersMatchOpenAPI(t *testing.T) {
	o := loadOpenAPI(t)
	ka, _ := testKeys(t)
	s, base := newStandin(t, Options{})
	rc := newReceiver(t)
	hookID := s.AddHook("acme/app", rc.url, testSecret)
	const appID, instID = 9100, 9101
	s.AddApp(appID, &ka.PublicKey, "", "")
	s.Install(appID, instID, "acme")
	jobID := s.QueueJob("acme/app", JobSpec{Name: "build", Labels: []string{"self-hosted", "linux"}})
	runID := jobByID(s, jobID).RunID
	waitFor(t, 5*time.Second, "the queued webhook", func() bool { return len(rc.jobEvents(jobID)) == 1 })

	a := do(t, "POST", base+"/repos/acme/app/actions/runners/generate-jitconfig", token(adminPAT), jitBody("oa-1", "self-hosted", "linux"))
	want(t, a, http.StatusCreated)
	var jit struct {
		Runner struct {
			ID int64 `json:"id"`
		} `json:"runner"`
	}
	a.json(t, &jit)
	now := time.Now()
	jwt := "Bearer " + signJWT(t, ka, appID, now.Add(-time.Minute), now.Add(5*time.Minute))
	cases := []struct {
		method, tmpl, url, auth string
		status                  int
	}{
		{"POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", "", "", 201}, // a above
		{"POST", "/repos/{owner}/{repo}/actions/runners/registration-token", "/repos/acme/app/actions/runners/registration-token", token(adminPAT), 201},
		{"POST", "/orgs/{org}/actions/runners/remove-token", "/orgs/acme/actions/runners/remove-token", token(adminPAT), 201},
		{"GET", "/repos/{owner}/{repo}/actions/runners", "/repos/acme/app/actions/runners", token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}", fmt.Sprintf("/repos/acme/app/actions/runners/%d", jit.Runner.ID), token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}/labels", fmt.Sprintf("/repos/acme/app/actions/runners/%d/labels", jit.Runner.ID), token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/runners/downloads", "/repos/acme/app/actions/runners/downloads", token(adminPAT), 200},
		{"GET", "/orgs/{org}/actions/runner-groups", "/orgs/acme/actions/runner-groups", token(adminPAT), 200},
		{"GET", "/enterprises/{enterprise}/actions/runners", "/enterprises/big/actions/runners", token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/runs", "/repos/acme/app/actions/runs?status=queued", token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", fmt.Sprintf("/repos/acme/app/actions/runs/%d", runID), token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", fmt.Sprintf("/repos/acme/app/actions/runs/%d/jobs?filter=all", runID), token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", fmt.Sprintf("/repos/acme/app/actions/jobs/%d", jobID), token(adminPAT), 200},
		{"GET", "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries", fmt.Sprintf("/repos/acme/app/hooks/%d/deliveries", hookID), token(adminPAT), 200},
		{"GET", "/rate_limit", "/rate_limit", token(adminPAT), 200},
		{"GET", "/app", "/app", jwt, 200},
		{"GET", "/app/installations", "/app/installations", jwt, 200},
		{"GET", "/repos/{owner}/{repo}/installation", "/repos/acme/app/installation", jwt, 200},
		{"POST", "/app/installations/{installation_id}/access_tokens", fmt.Sprintf("/app/installations/%d/access_tokens", instID), jwt, 201},
	}
	// The repository listings are not in the document's paths; their
	// items are its "repository" schema (GitHub documents
	// minimal-repository for /orgs/{org}/repos, whose required fields are
	// a subset).
	t.Run("repository listings", func(t *testing.T) {
		s.SetRepoState("acme/app", true, false)
		a := do(t, "GET", base+"/orgs/acme/repos", token(adminPAT), nil)
		want(t, a, http.StatusOK)
		d := json.NewDecoder(bytes.NewReader(a.body))
		d.UseNumber()
		var v []any
		if err := d.Decode(&v); err != nil || len(v) != 1 {
			t.Fatalf("%s: %v", a.body, err)
		}
		if v[0].(map[string]any)["archived"] != true {
			t.Fatalf("archived repository listed as %v", v[0].(map[string]any)["archived"])
		}
		for _, e := range o.check(map[string]any{"type": "array", "items": map[string]any{"$ref": "#/components/schemas/repository"}}, any(v), "$") {
			t.Error(e)
		}
	})
	t.Run("webhooks", func(t *testing.T) {
		for _, r := range rc.all() {
			event, action := r.header.Get("X-GitHub-Event"), ""
			d := json.NewDecoder(bytes.NewReader(r.body))
			d.UseNumber()
			var v map[string]any
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			action, _ = v["action"].(string)
			name := "webhook-" + strings.ReplaceAll(event, "_", "-") + "-" + strings.ReplaceAll(action, "_", "-")
			for _, e := range o.check(map[string]any{"$ref": "#/components/schemas/" + name}, v, name) {
				t.Error(e)
			}
		}
	})
	for _, c := range cases {
		t.Run(c.method+" "+c.tmpl, func(t *testing.T) {
			got := a
			if c.url != "" {
				got = do(t, c.method, base+c.url, c.auth, nil)
			}
			want(t, got, c.status)
			d := json.NewDecoder(bytes.NewReader(got.body))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			for _, e := range o.check(o.responseSchema(t, c.method, c.tmpl, c.status), v, "$") {
				if !knownDocBug(e) {
					t.Error(e)
				}
			}
		})
	}
}

// knownDocBug: the list of installations describes account as allOf
// [simple-user, enterprise] (the single installation, rightly, as anyOf),
// which no account satisfies: a user or organization has no slug.
func knownDocBug(e string) bool {
	for _, f := range []string{"name", "slug", "created_at", "updated_at"} {
		if strings.HasSuffix(e, `].account: required "`+f+`" missing`) {
			return true
		}
	}
	return false
}
