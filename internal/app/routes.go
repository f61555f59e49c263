package app

import (
	_ "embed"
	"net/http"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/dashboard"
	"github.com/corral-ci/corral/internal/httperr"
	"github.com/corral-ci/corral/internal/reqid"
)

// Listener names the listeners a route is served on. With one listener
// (api_listen empty) every route is served on it.
type Listener int

// The listeners.
const (
	// OnWebhooks is the public listener (listen): webhooks, runner
	// downloads, health.
	OnWebhooks Listener = 1 << iota
	// OnAPI is the private listener (api_listen): the API and metrics.
	OnAPI
	// OnBoth: health and readiness answer on both.
	OnBoth = OnWebhooks | OnAPI
)

// Route is one HTTP route: its method and path (a net/http pattern), who
// may call it, on which listener, and its handler. Every route of corral
// is declared once, in Routes; the muxes, the access matrix test and the
// OpenAPI test all read that one table.
type Route struct {
	Method  string
	Path    string
	Access  auth.Access
	On      Listener
	Handler http.Handler
}

// Pattern is the route's net/http pattern.
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// Routes is corral's route table: one line per route.
func (a *App) Routes() []Route {
	rs := []Route{
		{"GET", "/healthz", auth.Public, OnBoth, http.HandlerFunc(a.healthz)},
		{"GET", "/readyz", auth.Public, OnBoth, a.Components.ReadyHandler()},
		{"POST", "/webhooks/{target}", auth.WebhookSignature, OnWebhooks, a.Webhooks},
		{"POST", "/webhooks/app/{app}", auth.WebhookSignature, OnWebhooks, http.HandlerFunc(a.Webhooks.ServeApp)},
		{"GET", "/metrics", auth.Metrics, OnAPI, a.Metrics.Handler()},
		{"GET", "/api/v1/jobs", auth.TenantRead, OnAPI, http.HandlerFunc(a.listJobs)},
		{"GET", "/api/v1/jobs/{id}", auth.TenantRead, OnAPI, http.HandlerFunc(a.getJob)},
		{"POST", "/api/v1/jobs/{id}/retry", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.retryJob)},
		{"GET", "/api/v1/pools", auth.TenantRead, OnAPI, http.HandlerFunc(a.listPools)},
		{"PATCH", "/api/v1/pools/{pool}", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.patchPool)},
		{"POST", "/api/v1/pools/{pool}/drain", auth.TenantAdmin, OnAPI, a.poolOp(corral.PoolDraining)},
		{"POST", "/api/v1/pools/{pool}/pause", auth.TenantAdmin, OnAPI, a.poolOp(corral.PoolPaused)},
		{"POST", "/api/v1/pools/{pool}/resume", auth.TenantAdmin, OnAPI, a.poolOp(corral.PoolActive)},
		{"GET", "/api/v1/instances", auth.TenantRead, OnAPI, http.HandlerFunc(a.listInstances)},
		{"POST", "/api/v1/instances/{id}/stop", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.stopInstance)},
		{"GET", "/api/v1/targets", auth.TenantRead, OnAPI, http.HandlerFunc(a.listTargets)},
		{"POST", "/api/v1/targets", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.createTarget)},
		{"PATCH", "/api/v1/targets/{target}", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.patchTarget)},
		{"DELETE", "/api/v1/targets/{target}", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.deleteTarget)},
		{"POST", "/api/v1/targets/{target}/pause", auth.TenantAdmin, OnAPI, a.targetOp(true)},
		{"POST", "/api/v1/targets/{target}/resume", auth.TenantAdmin, OnAPI, a.targetOp(false)},
		{"GET", "/api/v1/tenants", auth.TenantRead, OnAPI, http.HandlerFunc(a.listTenants)},
		{"POST", "/api/v1/tenants", auth.Admin, OnAPI, http.HandlerFunc(a.createTenant)},
		{"PATCH", "/api/v1/tenants/{tenant}", auth.Admin, OnAPI, http.HandlerFunc(a.patchTenant)},
		{"DELETE", "/api/v1/tenants/{tenant}", auth.Admin, OnAPI, http.HandlerFunc(a.deleteTenant)},
		{"GET", "/api/v1/usage", auth.TenantRead, OnAPI, http.HandlerFunc(a.usage)},
		{"GET", "/api/v1/overview", auth.TenantRead, OnAPI, http.HandlerFunc(a.overview)},
		{"GET", "/api/v1/usage/hourly", auth.TenantRead, OnAPI, http.HandlerFunc(a.usageHourly)},
		{"GET", "/api/v1/rightsizing", auth.TenantRead, OnAPI, http.HandlerFunc(a.rightsizing)},
		{"GET", "/api/v1/analytics", auth.TenantRead, OnAPI, http.HandlerFunc(a.analyticsReport)},
		{"GET", "/api/v1/deliveries", auth.TenantRead, OnAPI, http.HandlerFunc(a.listDeliveries)},
		{"GET", "/api/v1/tokens", auth.Admin, OnAPI, http.HandlerFunc(a.listTokens)},
		{"POST", "/api/v1/tokens", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.createToken)},
		{"DELETE", "/api/v1/tokens/{id}", auth.TenantAdmin, OnAPI, http.HandlerFunc(a.revokeToken)},
		{"GET", "/api/v1/leader", auth.Admin, OnAPI, http.HandlerFunc(a.getLeader)},
		{"GET", "/api/v1/openapi.json", auth.Public, OnAPI, http.HandlerFunc(serveOpenAPI)},
		// The dashboard's files hold no data; its script calls the API
		// above with the operator's token, so it is served where the API is.
		{"GET", "/ui/", auth.Public, OnAPI, http.StripPrefix("/ui", dashboard.Handler())},
		{"GET", "/ui", auth.Public, OnAPI, http.RedirectHandler("/ui/", http.StatusMovedPermanently)},
	}
	if a.opt.Runners != nil { // per-instance grants guard the downloads
		rs = append(rs, Route{"GET", "/runners/", auth.Public, OnWebhooks, http.StripPrefix("/runners", a.opt.Runners.Handler())})
	}
	if m := a.opt.Metadata; m != nil { // per-instance tokens, never API tokens
		rs = append(rs,
			Route{"GET", "/api/v1/metadata/", auth.InstanceToken, OnWebhooks, http.HandlerFunc(m.ServeMetadata)},
			Route{"POST", "/api/v1/callbacks/", auth.InstanceToken, OnWebhooks, http.HandlerFunc(m.ServeCallback)})
	}
	return rs
}

// Handler serves every route on one listener (api_listen empty).
func (a *App) Handler() http.Handler { return a.HandlerFor(OnBoth) }

// HandlerFor serves the routes of the listener on, each behind its access
// rule; other paths answer 404. Every answer carries an X-Request-Id
// (internal/reqid).
func (a *App) HandlerFor(on Listener) http.Handler {
	g := &auth.Guard{Store: a.opt.Store, Clock: a.opt.Clock, Logger: a.log}
	mux := http.NewServeMux()
	for _, r := range a.Routes() {
		if r.On&on != 0 {
			mux.Handle(r.Pattern(), g.Wrap(r.Access, r.Handler))
		}
	}
	return reqid.Handler(a.log, mux)
}

func (a *App) healthz(w http.ResponseWriter, r *http.Request) {
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok", "leading": a.Leading()})
}

// OpenAPI is the OpenAPI 3 document of the routes (openapi.json); a test
// keeps it true against Routes.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}
