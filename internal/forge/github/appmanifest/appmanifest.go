// Package appmanifest creates a GitHub App for corral in one step, with
// GitHub's App manifest flow: a local page submits a manifest (name,
// permissions, the workflow_job event, corral's webhook URL) to GitHub for a
// user or an organization, on github.com or Enterprise Server; GitHub sends
// the browser back with a one-time code, which the conversion API turns into
// the App's id, private key and webhook secret.
package appmanifest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Options of one creation.
type Options struct {
	// WebURL is GitHub's web address (https://github.com, or the GHES
	// host); APIURL its API base (https://api.github.com, or
	// https://HOST/api/v3). Empty APIURL: derived from WebURL.
	WebURL, APIURL string
	Org            string // the organization that owns the App; "" = the user
	Name           string // the App's name (unique on GitHub)
	// WebhookBase is where corral receives webhooks from the internet, e.g.
	// https://corral.example.com; the App's webhook URL is
	// WebhookBase/webhooks/app/{slug of Name}.
	WebhookBase string
	Listen      string // the local page; default 127.0.0.1:0
	HTTPClient  *http.Client
}

// Result is the created App. The secrets are for sealing, never printing.
type Result struct {
	ID            int64
	Slug          string
	Name          string
	Owner         string
	HTMLURL       string
	ClientID      string
	HookName      string // the {app} part of corral's webhook URL
	PEM           corral.Secret
	WebhookSecret corral.Secret
	ClientSecret  corral.Secret
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

// HookName is the name corral's webhook URL uses for an App name.
func HookName(name string) string {
	return strings.Trim(slugRE.ReplaceAllString(strings.ToLower(name), "-"), "-")
}

// APIFor derives the API base from GitHub's web address.
func APIFor(web string) string {
	u, err := url.Parse(strings.TrimRight(web, "/"))
	if err != nil {
		return ""
	}
	if u.Host == "github.com" {
		return "https://api.github.com"
	}
	return u.String() + "/api/v3"
}

// Manifest is the App manifest corral asks for: runner administration at
// repository and organization level, read access to Actions (for the
// workflow_job event and the job sweeps), and the workflow_job event.
func Manifest(opt Options, redirect string) map[string]any {
	return map[string]any{
		"name":         opt.Name,
		"url":          opt.WebhookBase,
		"redirect_url": redirect,
		"public":       false,
		"hook_attributes": map[string]any{
			"url":    strings.TrimRight(opt.WebhookBase, "/") + "/webhooks/app/" + HookName(opt.Name),
			"active": true,
		},
		"default_permissions": map[string]string{
			"administration":                   "write", // repository runners and JIT configs
			"organization_self_hosted_runners": "write", // organization runners
			"actions":                          "read",  // workflow runs and jobs
			"metadata":                         "read",
		},
		"default_events": []string{"workflow_job"},
	}
}

var page = template.Must(template.New("p").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Create corral's GitHub App</title></head>
<body><h1>Create the GitHub App "{{.Name}}"</h1>
<p>GitHub asks you to confirm; it then sends you back here and corral stores the App's key, encrypted.</p>
<form id="f" method="post" action="{{.Action}}">
<input type="hidden" name="manifest" value="{{.Manifest}}">
<button type="submit">Create on GitHub</button></form>
<script>document.getElementById("f").submit()</script></body></html>`))

// Run serves the local page, waits for GitHub's redirect and converts the
// code. ready is called with the page's URL, to open in a browser.
func Run(ctx context.Context, opt Options, ready func(pageURL string)) (Result, error) {
	if opt.Name == "" || opt.WebURL == "" || opt.WebhookBase == "" {
		return Result{}, fmt.Errorf("app manifest: name, GitHub URL and webhook base URL are required: %w", corral.ErrBadInput)
	}
	if opt.APIURL == "" {
		opt.APIURL = APIFor(opt.WebURL)
	}
	if opt.Listen == "" {
		opt.Listen = "127.0.0.1:0"
	}
	hc := opt.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	ln, err := net.Listen("tcp", opt.Listen)
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()
	state := randomHex(16)
	action := strings.TrimRight(opt.WebURL, "/") + "/settings/apps/new"
	if opt.Org != "" {
		action = strings.TrimRight(opt.WebURL, "/") + "/organizations/" + url.PathEscape(opt.Org) + "/settings/apps/new"
	}
	action += "?state=" + state
	manifest, _ := json.Marshal(Manifest(opt, base+"/callback"))

	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]string{"Name": opt.Name, "Action": action, "Manifest": string(manifest)})
	})
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("state") != state {
			http.Error(w, "state does not match: start again from the page corral printed", http.StatusBadRequest)
			return
		}
		res, err := convert(r.Context(), hc, opt.APIURL, r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "GitHub did not convert the manifest: "+err.Error(), http.StatusBadGateway)
		} else {
			res.HookName = HookName(opt.Name)
			fmt.Fprintf(w, "GitHub App %s (id %d) created; corral stored its key. Install it: %s/installations/new\n", res.Slug, res.ID, res.HTMLURL)
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush() // the browser has its answer before Run returns
		}
		select {
		case done <- outcome{res, err}:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Let the callback's answer reach the browser before closing.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if ready != nil {
		ready(base + "/")
	}
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case o := <-done:
		return o.res, o.err
	}
}

// convert exchanges the one-time code for the App's credentials:
// POST /app-manifests/{code}/conversions (no authentication).
func convert(ctx context.Context, hc *http.Client, api, code string) (Result, error) {
	if code == "" {
		return Result{}, fmt.Errorf("GitHub sent no code: %w", corral.ErrBadInput)
	}
	u := strings.TrimRight(api, "/") + "/app-manifests/" + url.PathEscape(code) + "/conversions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := hc.Do(req)
	if err != nil {
		return Result{}, &corral.CallError{Op: "app manifest conversion", Method: "POST", URL: strings.TrimRight(api, "/") + "/app-manifests/{code}/conversions", Err: fmt.Errorf("%w: %v", corral.ErrUnavailable, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		kind := corral.ErrUnavailable
		if resp.StatusCode < 500 {
			kind = corral.ErrBadInput
		}
		return Result{}, &corral.CallError{Op: "app manifest conversion", Method: "POST", URL: strings.TrimRight(api, "/") + "/app-manifests/{code}/conversions",
			Status: resp.StatusCode, RequestID: resp.Header.Get("X-GitHub-Request-Id"), Err: kind}
	}
	var out struct {
		ID            int64  `json:"id"`
		Slug          string `json:"slug"`
		Name          string `json:"name"`
		HTMLURL       string `json:"html_url"`
		ClientID      string `json:"client_id"`
		ClientSecret  string `json:"client_secret"`
		WebhookSecret string `json:"webhook_secret"`
		PEM           string `json:"pem"`
		Owner         struct {
			Login string `json:"login"`
		} `json:"owner"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.ID == 0 || out.PEM == "" {
		return Result{}, fmt.Errorf("app manifest conversion: malformed answer: %w", errors.Join(corral.ErrUnavailable, err))
	}
	return Result{ID: out.ID, Slug: out.Slug, Name: out.Name, Owner: out.Owner.Login, HTMLURL: out.HTMLURL, ClientID: out.ClientID,
		PEM: corral.Secret(out.PEM), WebhookSecret: corral.Secret(out.WebhookSecret), ClientSecret: corral.Secret(out.ClientSecret)}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
