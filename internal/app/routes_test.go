package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

// probe is how the access matrix calls one route: a request, the status
// a caller that is let in gets, and the status of a tenant token of the
// other tenant (an object of tenant "default" is 404 to it; a list is 200
// and filtered, see TestApp_API_TenantFiltering).
type probe struct {
	req         func(f *fixture) *http.Request
	ok          int
	otherTenant int
}

func post(p string) func(*fixture) *http.Request {
	return func(*fixture) *http.Request { return httptest.NewRequest("POST", p, nil) }
}

func path(p string) func(*fixture) *http.Request {
	return func(*fixture) *http.Request { return httptest.NewRequest("GET", p, nil) }
}

// probes has one line per route of app.Routes(). A route without a line
// fails TestApp_AccessMatrix: a new route cannot be left out.
var probes = map[string]probe{
	"GET /healthz": {req: path("/healthz"), ok: 200},
	"GET /readyz":  {req: path("/readyz"), ok: 503}, // the App is not running
	"POST /webhooks/{target}": {req: func(f *fixture) *http.Request {
		body := jobPayload(1000+f.delivery.Add(1), "queued", "")
		r := httptest.NewRequest("POST", "/webhooks/acme", bytes.NewReader(body))
		r.Header = fake.Header("workflow_job", fmt.Sprint("m-", f.delivery.Add(1)), github.Sign(secret, body))
		return r
	}, ok: 202},
	"POST /webhooks/app/{app}": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("POST", "/webhooks/app/12345", bytes.NewReader([]byte("{}")))
	}, ok: 404}, // no target uses that App: the signature check answers, never the token guard
	"GET /runners/": {req: path("/runners/g1/actions-runner.tar.gz"), ok: 401}, // its own grants refuse
	// Instance tokens only: no API token of any scope passes.
	"GET /api/v1/metadata/":   {req: path("/api/v1/metadata/runner-registration-token/"), ok: 401},
	"POST /api/v1/callbacks/": {req: post("/api/v1/callbacks/status"), ok: 401},
	"GET /metrics":            {req: path("/metrics"), ok: 200},
	"GET /api/v1/jobs":        {req: path("/api/v1/jobs"), ok: 200, otherTenant: 200},
	"GET /api/v1/jobs/{id}":   {req: func(f *fixture) *http.Request { return path("/api/v1/jobs/" + itoa(f.jobA))(f) }, ok: 200, otherTenant: 404},
	"GET /api/v1/instances":   {req: path("/api/v1/instances"), ok: 200, otherTenant: 200},
	"POST /api/v1/instances/{id}/stop": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("POST", "/api/v1/instances/"+f.idleInstance()+"/stop", nil)
	}, ok: 200, otherTenant: 404}, // a new idle instance of tenant default each time
	"GET /api/v1/pools": {req: path("/api/v1/pools"), ok: 200, otherTenant: 200},
	"PATCH /api/v1/pools/{pool}": {req: func(*fixture) *http.Request {
		return httptest.NewRequest("PATCH", "/api/v1/pools/linux", strings.NewReader(`{"concurrency": 4}`))
	}, ok: 200, otherTenant: 404},
	"POST /api/v1/pools/{pool}/drain":  {req: post("/api/v1/pools/linux/drain"), ok: 200, otherTenant: 404},
	"POST /api/v1/pools/{pool}/pause":  {req: post("/api/v1/pools/linux/pause"), ok: 200, otherTenant: 404},
	"POST /api/v1/pools/{pool}/resume": {req: post("/api/v1/pools/linux/resume"), ok: 200, otherTenant: 404},
	"POST /api/v1/jobs/{id}/retry": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("POST", "/api/v1/jobs/"+itoa(f.jobA)+"/retry", nil)
	}, ok: 409, otherTenant: 404}, // job A is routed, not unroutable
	"GET /api/v1/targets": {req: path("/api/v1/targets"), ok: 200, otherTenant: 200},
	"POST /api/v1/targets": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("POST", "/api/v1/targets", strings.NewReader(fmt.Sprintf(
			`{"id":"made-%d","tenant":"default","kind":"github","scope":"org","path":"acme","webhook_secret":"w","token":"pat"}`, f.delivery.Add(1))))
	}, ok: 201, otherTenant: 403}, // another tenant's admin cannot write into tenant default
	"PATCH /api/v1/targets/{target}": {req: func(*fixture) *http.Request {
		return httptest.NewRequest("PATCH", "/api/v1/targets/acme", strings.NewReader(`{"scope":"org","path":"acme","token":"pat-2"}`))
	}, ok: 200, otherTenant: 404},
	"DELETE /api/v1/targets/{target}": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("DELETE", "/api/v1/targets/"+f.spareTarget(), nil)
	}, ok: 204, otherTenant: 404}, // a new target of tenant default each time
	"POST /api/v1/targets/{target}/pause":  {req: post("/api/v1/targets/acme/pause"), ok: 200, otherTenant: 404},
	"POST /api/v1/targets/{target}/resume": {req: post("/api/v1/targets/acme/resume"), ok: 200, otherTenant: 404},
	"GET /api/v1/usage":                    {req: path("/api/v1/usage?group_by=pool"), ok: 200, otherTenant: 200},
	"GET /api/v1/overview":                 {req: path("/api/v1/overview"), ok: 200, otherTenant: 200},
	"GET /api/v1/usage/hourly":             {req: path("/api/v1/usage/hourly"), ok: 200, otherTenant: 200},
	"GET /api/v1/rightsizing":              {req: path("/api/v1/rightsizing"), ok: 200, otherTenant: 200},
	"GET /api/v1/analytics":                {req: path("/api/v1/analytics"), ok: 200, otherTenant: 200},
	"GET /api/v1/deliveries":               {req: path("/api/v1/deliveries"), ok: 200, otherTenant: 200},
	"GET /api/v1/tenants":                  {req: path("/api/v1/tenants"), ok: 200, otherTenant: 200},
	"POST /api/v1/tenants": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("POST", "/api/v1/tenants", strings.NewReader(fmt.Sprintf(`{"id":"made-%d","max_instances":3}`, f.delivery.Add(1))))
	}, ok: 201},
	"PATCH /api/v1/tenants/{tenant}": {req: func(*fixture) *http.Request {
		return httptest.NewRequest("PATCH", "/api/v1/tenants/default", strings.NewReader(`{"max_instances":0}`))
	}, ok: 200},
	"DELETE /api/v1/tenants/{tenant}": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("DELETE", "/api/v1/tenants/"+f.spareTenant(), nil)
	}, ok: 204}, // a new empty tenant each time
	"GET /api/v1/tokens": {req: path("/api/v1/tokens"), ok: 200},
	"POST /api/v1/tokens": {req: func(*fixture) *http.Request {
		return httptest.NewRequest("POST", "/api/v1/tokens", strings.NewReader(`{"name":"ci","scope":"tenant-read","tenant":"default"}`))
	}, ok: 201, otherTenant: 403}, // another tenant's admin cannot mint for tenant default
	"DELETE /api/v1/tokens/{id}": {req: func(f *fixture) *http.Request {
		return httptest.NewRequest("DELETE", "/api/v1/tokens/"+f.spareToken(), nil)
	}, ok: 200, otherTenant: 404}, // a new token of tenant default each time
	"GET /api/v1/leader":       {req: path("/api/v1/leader"), ok: 200},
	"GET /api/v1/openapi.json": {req: path("/api/v1/openapi.json"), ok: 200},
	"GET /ui/":                 {req: path("/ui/app.js"), ok: 200}, // files without data: no token
	"GET /ui":                  {req: path("/ui"), ok: 301},
}

// TestApp_AccessMatrix walks the route table and calls every route with
// no token, a garbage, expired and revoked token, a token of each scope,
// and tenant tokens of another tenant, asserting the exact status.
func TestApp_AccessMatrix(t *testing.T) {
	f := newFixture(t)
	routes := f.a.Routes()
	seen := map[string]bool{}
	callers := []string{"", "garbage", "expired", "revoked", "admin", "metrics", "tenant-admin", "tenant-read",
		"other-tenant-admin", "other-tenant-read"}
	scopes := map[string]string{"admin": "admin", "metrics": "metrics", "tenant-admin": "tenant-admin",
		"tenant-read": "tenant-read", "other-tenant-admin": "tenant-admin", "other-tenant-read": "tenant-read"}
	for _, rt := range routes {
		p, ok := probes[rt.Pattern()]
		if !ok {
			t.Errorf("route %s (%s) has no line in probes: add its expected statuses", rt.Pattern(), rt.Access)
			continue
		}
		seen[rt.Pattern()] = true
		for _, who := range callers {
			want := p.ok
			switch scope, known := scopes[who]; {
			case !rt.Access.NeedsToken():
			case !known: // none, garbage, expired, revoked
				want = 401
			case !rt.Access.Allows(corralScope(scope)):
				want = 403
			case who == "other-tenant-admin" || who == "other-tenant-read":
				want = p.otherTenant
			}
			req := p.req(f)
			if who != "" {
				req.Header.Set("Authorization", "Bearer "+f.tok[who])
			}
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != want {
				t.Errorf("%s (%s) as %q: %d %s, want %d", rt.Pattern(), rt.Access, who, rec.Code, rec.Body, want)
			}
		}
	}
	for pat := range probes {
		if !seen[pat] {
			t.Errorf("probes has %s, which is no route", pat)
		}
	}
	if t.Failed() {
		return
	}
	// The matrix did exercise every kind of rule.
	kinds := map[auth.Access]bool{}
	for _, rt := range routes {
		kinds[rt.Access] = true
	}
	for _, a := range []auth.Access{auth.Public, auth.WebhookSignature, auth.Metrics, auth.TenantRead, auth.TenantAdmin, auth.Admin, auth.InstanceToken} {
		if !kinds[a] {
			t.Errorf("no route has access %s", a)
		}
	}
}

func corralScope(s string) corral.TokenScope { return corral.TokenScope(s) }

// TestApp_OpenAPI keeps openapi.json true to the route table: every route
// is documented with its access rule and security, nothing documented is
// unrouted, and the served document is the embedded one.
func TestApp_OpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Access    string           `json:"x-corral-access"`
			Security  []map[string]any `json:"security"`
			Responses map[string]any   `json:"responses"`
		} `json:"paths"`
		Components struct {
			SecuritySchemes map[string]any `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(app.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Components.SecuritySchemes["bearer"] == nil {
		t.Fatalf("openapi %q, security schemes %v", doc.OpenAPI, doc.Components.SecuritySchemes)
	}
	f := newFixture(t)
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	routed := map[string]bool{}
	for _, rt := range f.a.Routes() {
		p := rt.Path
		if strings.HasSuffix(p, "/") { // a subtree: documented as one {path} parameter
			p += "{path}"
		}
		key := rt.Method + " " + p
		routed[key] = true
		op, ok := doc.Paths[p][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("route %s is not in openapi.json", key)
			continue
		}
		if op.Access != rt.Access.String() {
			t.Errorf("%s: openapi says access %q, the route table %q", key, op.Access, rt.Access)
		}
		if needs := len(op.Security) > 0; needs != rt.Access.NeedsToken() {
			t.Errorf("%s: openapi security %v, but the route needs a token: %v", key, op.Security, rt.Access.NeedsToken())
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s: no responses documented", key)
		}
	}
	for key := range documented {
		if !routed[key] {
			t.Errorf("openapi.json documents %s, which is no route", key)
		}
	}
	code, body := get(t, f.h, "/api/v1/openapi.json")
	if code != 200 || body != string(app.OpenAPI) {
		t.Fatalf("GET /api/v1/openapi.json: %d, %d bytes", code, len(body))
	}
}

// TestApp_InstanceToken: through corral's own handler, an instance's token
// opens its metadata (once for the credential) and nothing of the API.
func TestApp_InstanceToken(t *testing.T) {
	f := newFixture(t)
	g, err := f.meta.Grant(corral.InstanceSpec{InstanceID: "i-garm", Name: "corral-garm-1",
		Bootstrap: corral.Bootstrap{Env: map[string]corral.Secret{"CORRAL_RUNNER_TOKEN": "reg-tok"}}})
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, p string) (int, string) {
		r := httptest.NewRequest(method, p, strings.NewReader(`{"status":"installing","message":"booting"}`))
		r.Header.Set("Authorization", "Bearer "+g.Token)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, r)
		return rec.Code, rec.Body.String()
	}
	if code, body := call("GET", "/api/v1/metadata/runner-registration-token/"); code != 200 || body != "reg-tok" {
		t.Errorf("metadata with the instance token: %d %q", code, body)
	}
	if code, _ := call("GET", "/api/v1/metadata/runner-registration-token/"); code != 401 {
		t.Errorf("the credential a second time: %d, want 401", code)
	}
	if code, _ := call("POST", "/api/v1/callbacks/status"); code != 200 {
		t.Errorf("status callback: %d", code)
	}
	for _, p := range []string{"/api/v1/jobs", "/api/v1/tokens", "/metrics"} {
		if code, _ := call("GET", p); code != 401 {
			t.Errorf("GET %s with an instance token: %d, want 401", p, code)
		}
	}
}
