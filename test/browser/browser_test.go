// Package browser drives corral's dashboard (/ui/) in a real headless
// Chromium (Debian's chromium, through chromedp) against a real `corral
// serve` fed by the stand-in GitHub, with real runner processes: pages
// load with real data, a job's timeline shows its stamps, a live update
// arrives without a reload, a phone-width screen has no horizontal
// scroll, a refused token goes back to the sign-in form, and a tenant's
// token sees that tenant's jobs only. Screenshots land in
// test/browser/artifacts/ (gitignored).
//
// Without chromium the tests skip, except under CI=true, where they fail.
package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

var corralBin string

func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(&corralBin, e2etest.BuildOptions{}, m.Run))
}

// chromium finds Debian's chromium: a skip locally, a failure in CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium); CI must run the browser tests")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// rig is a corral serving two tenants of the stand-in GitHub: team-a owns
// the organization "e2e" (target e2e, process pool "linux": labels corral,
// up to 8 cpu), team-b the organization "beta" (target beta, pool
// "beta-linux").
type rig struct {
	gh    *e2etest.GitHub
	serve e2etest.Serve
	base  string // http://127.0.0.1:port
	admin string // an admin API token
}

const betaRepo = "beta/web"

func newRig(t *testing.T) *rig {
	t.Helper()
	gh := e2etest.NewGitHub(t, standin.Options{})
	listen := e2etest.FreePort(t)
	gh.Hook(listen, "e2e")
	gh.AddRepo("beta", "web")
	gh.AddHook("beta", "http://"+listen+"/webhooks/beta", gh.Secret)
	a := gh.Target("e2e", "corral-a")
	a.Tenant = "team-a"
	b := gh.Target("beta", "corral-b")
	b.Tenant, b.Path = "team-b", "beta"
	image := e2etest.RunnerImage(t, corralBin, "")
	cfg := e2etest.Config{Listen: listen, DataDir: filepath.Join(t.TempDir(), "data"), Tenants: []string{"team-a", "team-b"},
		Targets: []e2etest.Target{a, b},
		Pools: []e2etest.Pool{
			{ID: "linux", Tenant: "team-a", Labels: []string{"corral"}, Image: image, Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: 4},
			{ID: "beta-linux", Tenant: "team-b", Labels: []string{"corral"}, Image: image, Flavor: "2cpu4gb10gb", MaxFlavor: "8cpu16gb50gb", MaxInstances: 2},
		}}
	s := e2etest.Serve{Bin: corralBin, Config: e2etest.WriteConfig(t, cfg), Listen: listen, Env: gh.Env()}
	e2etest.Start(t, s)
	return &rig{gh: gh, serve: s, base: "http://" + listen, admin: e2etest.AdminToken(listen)}
}

// apiGet reads the API as the dashboard does, with token.
func (r *rig) apiGet(t *testing.T, token, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", r.base+"/api/v1/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

type job struct {
	ID       int64  `json:"id"`
	Target   string `json:"target"`
	State    string `json:"state"`
	Reason   string `json:"reason"`
	Timeline []struct {
		Kind string `json:"kind"`
	} `json:"timeline"`
}

func (r *rig) jobs(t *testing.T, token, query string) []job {
	t.Helper()
	var l struct{ Jobs []job }
	if code := r.apiGet(t, token, "jobs"+query, &l); code != 200 {
		t.Fatalf("GET jobs%s = %d", query, code)
	}
	return l.Jobs
}

// browser starts a headless Chromium with one tab; actions run in it
// with run, each bounded in time.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("proxy-server", "direct://"), // 127.0.0.1 only, never a proxy
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("%s: %v\npage text:\n%s", what, err, pageText(ctx))
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v\npage text:\n%s", expr, err, pageText(ctx))
	}
	return v
}

func pageText(ctx context.Context) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
	return s
}

// waitJS polls a JavaScript condition in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, within time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s (last error: %v)\npage text:\n%s", within, what, err, pageText(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func artifacts(t *testing.T) string {
	t.Helper()
	dir := "artifacts"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(artifacts(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(png))
}

func signIn(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)),
	)
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if eval[string](t, ctx, `sessionStorage.getItem("corral.token") || ""`) != "" {
		t.Fatal("signed out, the token is still in sessionStorage")
	}
}

// show switches the page to a route (hash) without a reload and waits
// until that view has drawn.
func show(route string) chromedp.Action[chromedp.Void] {
	view, _, _ := strings.Cut(route, "/")
	view, _, _ = strings.Cut(view, "?")
	return chromedp.Steps(
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](fmt.Sprintf(`location.hash = "#/%s"`, route))(ctx, tg)
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#view[data-view="%s"]`, view))),
	)
}

func ids(js []job) []string {
	var out []string
	for _, j := range js {
		out = append(out, strconv.FormatInt(j.ID, 10))
	}
	slices.Sort(out)
	return out
}

func TestDashboard(t *testing.T) {
	ctx := browser(t)
	r := newRig(t)
	token := r.admin

	// Real data: three jobs of team-a and one of team-b that run to
	// completion on real runner processes, and one of team-a no pool can
	// take (64 cpu in a pool capped at 8).
	for i := range 3 {
		r.gh.Queue(fmt.Sprint("build-", i), []string{"corral", fmt.Sprint("run-", i)}, 300*time.Millisecond)
	}
	r.gh.QueueJob(betaRepo, standin.JobSpec{Name: "beta-build", Labels: []string{"corral", "run-b"}, Duration: 300 * time.Millisecond})
	r.gh.Queue("too-big", []string{"corral", "64cpu"}, time.Second)
	e2etest.WaitFor(t, 60*time.Second, "4 jobs completed and 1 unroutable in the API", func() bool {
		return len(r.jobs(t, token, "?state=completed")) == 4 && len(r.jobs(t, token, "?state=unroutable")) == 1
	})

	run(t, ctx, "open the dashboard", chromedp.Navigate(r.base+"/ui/"))
	signIn(t, ctx, token)

	t.Run("overview shows the API's counts", func(t *testing.T) {
		run(t, ctx, "overview", chromedp.WaitVisible(chromedp.CSS(`[data-count="unroutable"]`)))
		var o struct {
			Jobs map[string]int `json:"jobs"`
		}
		r.apiGet(t, token, "overview", &o)
		got := eval[string](t, ctx, `document.querySelector('[data-count="unroutable"]').textContent`)
		if got != strconv.Itoa(o.Jobs["unroutable"]) || got != "1" {
			t.Errorf("overview shows %q unroutable, API says %d (want 1)", got, o.Jobs["unroutable"])
		}
		waitJS(t, ctx, 5*time.Second, "the pool row shows linux and the provider process",
			`!!document.querySelector('[data-pool="linux"]') && document.body.innerText.includes("process")`)
		waitJS(t, ctx, 5*time.Second, "an 'updated N s ago' stamp", `/updated \d+ s ago/.test(document.getElementById("updated").textContent)`)
		screenshot(t, ctx, "overview-desktop.png")
	})

	t.Run("jobs list matches the API", func(t *testing.T) {
		run(t, ctx, "jobs page", show("jobs"))
		want := ids(r.jobs(t, token, ""))
		got := eval[[]string](t, ctx, `[...document.querySelectorAll("tr[data-job-id]")].map(e => e.dataset.jobId).sort()`)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("page rows %v, API jobs %v", got, want)
		}
		// The state filter narrows to what the API gives for that state.
		eval[bool](t, ctx, `(() => { const s = document.getElementById("state-filter"); s.value = "completed";
			return s.dispatchEvent(new Event("change")) })()`)
		waitJS(t, ctx, 5*time.Second, "only completed rows", fmt.Sprintf(`(() => { const r = [...document.querySelectorAll("tr[data-job-id]")];
			return r.length === %d && r.every(e => e.dataset.state === "completed") })()`, len(r.jobs(t, token, "?state=completed"))))
	})

	t.Run("unroutable job shows its reason", func(t *testing.T) {
		u := r.jobs(t, token, "?state=unroutable")
		run(t, ctx, "unroutable page", show("unroutable"),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-job-id="%d"] [data-reason]`, u[0].ID))))
		reason := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-job-id="%d"] [data-reason]').textContent`, u[0].ID))
		if reason == "" || reason != u[0].Reason {
			t.Errorf("page shows reason %q, API says %q", reason, u[0].Reason)
		}
	})

	t.Run("job timeline shows its stamps", func(t *testing.T) {
		done := r.jobs(t, token, "?state=completed")[0]
		var j job
		r.apiGet(t, token, fmt.Sprint("jobs/", done.ID), &j)
		var want []string
		for _, e := range j.Timeline {
			want = append(want, e.Kind)
		}
		for _, k := range []string{"queued", "routed", "instance_requested", "instance_created", "job_started", "job_completed"} {
			if !slices.Contains(want, k) {
				t.Fatalf("API timeline %v lacks %s: the test's premise fails", want, k)
			}
		}
		run(t, ctx, "job page", show(fmt.Sprint("job/", done.ID)),
			chromedp.WaitVisible(chromedp.CSS(`li[data-stamp="job_completed"]`)))
		got := eval[[]string](t, ctx, `[...document.querySelectorAll("li[data-stamp]")].map(e => e.dataset.stamp)`)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("waterfall stamps %v, API timeline %v", got, want)
		}
		bars := eval[int](t, ctx, `document.querySelectorAll("li[data-stamp] svg rect.b1").length`)
		if bars != len(want) {
			t.Errorf("%d waterfall bars for %d stamps", bars, len(want))
		}
		screenshot(t, ctx, "job-timeline-desktop.png")
	})

	t.Run("live update without reload", func(t *testing.T) {
		run(t, ctx, "jobs page", show("jobs"))
		before := eval[int](t, ctx, `window.__notReloaded = true; document.querySelectorAll("tr[data-job-id]").length`)
		r.gh.Queue("late", []string{"corral", "run-late"}, 300*time.Millisecond)
		waitJS(t, ctx, 20*time.Second, "a new job row", fmt.Sprintf(`document.querySelectorAll("tr[data-job-id]").length === %d`, before+1))
		if !eval[bool](t, ctx, `window.__notReloaded === true`) {
			t.Error("the page reloaded to show the new job")
		}
		// And a count on the overview changes while it is open.
		run(t, ctx, "overview", show("overview"))
		eval[bool](t, ctx, `window.__notReloaded = true`)
		r.gh.Queue("too-big-2", []string{"corral", "32cpu"}, time.Second)
		waitJS(t, ctx, 20*time.Second, "the unroutable count goes to 2 without a reload",
			`document.querySelector('[data-count="unroutable"]').textContent === "2" && window.__notReloaded === true`)
	})

	t.Run("usage chart and deliveries", func(t *testing.T) {
		run(t, ctx, "usage page", show("usage"))
		waitJS(t, ctx, 20*time.Second, "the bars add up to the jobs finished", fmt.Sprintf(
			`[...document.querySelectorAll("svg.chart rect.b1")].reduce((n, e) => n + Number(e.dataset.value), 0) === %d`,
			len(r.jobs(t, token, "?state=completed"))))
		run(t, ctx, "deliveries page", show("deliveries"),
			chromedp.WaitVisible(chromedp.CSS(`[data-result="accepted"]`)))
	})

	t.Run("pools page has the right-sizing table", func(t *testing.T) {
		run(t, ctx, "pools page", show("pools"))
		waitJS(t, ctx, 20*time.Second, "the right-sizing table under the pools", `[...document.querySelectorAll("caption")].some(c => c.textContent.startsWith("Right-sizing"))`)
	})

	t.Run("analytics page matches the API", func(t *testing.T) {
		// Every job that can run has completed (the late one too).
		e2etest.WaitFor(t, 60*time.Second, "5 jobs completed", func() bool { return len(r.jobs(t, token, "?state=completed")) == 5 })
		var rep struct {
			Runs int `json:"runs"`
			Jobs []struct {
				Repository  string  `json:"repository"`
				Workflow    string  `json:"workflow"`
				Job         string  `json:"job"`
				Count       int     `json:"count"`
				SuccessRate float64 `json:"success_rate"`
			} `json:"jobs"`
		}
		if code := r.apiGet(t, token, "analytics", &rep); code != 200 || rep.Runs != 5 || len(rep.Jobs) != 5 {
			t.Fatalf("GET analytics = %d: %d runs in %d groups, want 5 in 5 (one per job name): the test's premise fails", code, rep.Runs, len(rep.Jobs))
		}
		var want []string
		for _, g := range rep.Jobs {
			if g.Workflow != "CI" { // the stand-in's workflow name, from its completed webhooks
				t.Errorf("group %+v: workflow %q, want CI", g, g.Workflow)
			}
			want = append(want, fmt.Sprintf("%s %s %s=%d/%g", g.Repository, g.Workflow, g.Job, g.Count, g.SuccessRate))
		}
		slices.Sort(want)
		run(t, ctx, "analytics page", show("analytics"))
		expr := `[...document.querySelectorAll("tr[data-analytics]")].map(e => e.dataset.analytics + "=" +
			e.querySelector("[data-count]").textContent + "/" + Number(e.querySelector("[data-rate]").dataset.rate)).sort().join("|")`
		waitJS(t, ctx, 20*time.Second, "the page's rows are the API's groups", fmt.Sprintf(`%s === %q`, expr, strings.Join(want, "|")))
		if got := eval[string](t, ctx, `document.querySelector("[data-runs]").dataset.runs`); got != "5" {
			t.Errorf("page says %s runs, API 5", got)
		}
		bars := eval[int](t, ctx, `[...document.querySelectorAll("svg.chart rect.b1")].reduce((n, e) => n + Number(e.dataset.value), 0)`)
		if bars != 5 {
			t.Errorf("the per-day bars add up to %d, want 5", bars)
		}
		screenshot(t, ctx, "analytics-desktop.png")
	})

	t.Run("phone width has no horizontal scroll", func(t *testing.T) {
		run(t, ctx, "phone viewport", chromedp.EmulateViewport(375, 812, chromedp.EmulateScale(2)))
		done := r.jobs(t, token, "?state=completed")[0]
		for _, page := range []string{"overview", "jobs", fmt.Sprint("job/", done.ID), "unroutable", "pools", "instances", "usage", "analytics", "deliveries"} {
			run(t, ctx, page, show(page))
			w := eval[struct{ Scroll, Inner int }](t, ctx, `({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})`)
			if strings.HasPrefix(page, "job/") {
				screenshot(t, ctx, "job-timeline-phone.png")
			}
			if w.Inner != 375 || w.Scroll > w.Inner {
				t.Errorf("%s at 375 px: scrollWidth %d, innerWidth %d", page, w.Scroll, w.Inner)
			}
			switch page {
			case "jobs":
				screenshot(t, ctx, "jobs-phone.png")
			case "overview":
				screenshot(t, ctx, "overview-phone.png")
			case "analytics":
				screenshot(t, ctx, "analytics-phone.png")
			}
		}
	})

	t.Run("a wrong token goes back to sign-in", func(t *testing.T) {
		run(t, ctx, "desktop viewport", chromedp.EmulateViewport(1280, 900))
		signOut(t, ctx)
		signIn(t, ctx, "corral_not-a-token-corral-knows")
		waitJS(t, ctx, 10*time.Second, "the sign-in form again, saying why", `!document.getElementById("signin").hidden &&
			document.getElementById("status").textContent.includes("401") && !sessionStorage.getItem("corral.token") &&
			document.getElementById("nav").hidden`)
	})

	t.Run("a tenant token sees only its tenant", func(t *testing.T) {
		tenant := e2etest.MintToken(t, r.serve, "-scope", "tenant-read", "-tenant", "team-b", "-name", "browser team-b")
		var beta []string
		for _, j := range r.jobs(t, token, "") {
			if j.Target == "beta" {
				beta = append(beta, strconv.FormatInt(j.ID, 10))
			}
		}
		slices.Sort(beta)
		if len(beta) != 1 || strings.Join(ids(r.jobs(t, tenant, "")), ",") != strings.Join(beta, ",") {
			t.Fatalf("the API shows team-b %v, the admin sees team-b's jobs %v: the test's premise fails", ids(r.jobs(t, tenant, "")), beta)
		}
		signIn(t, ctx, tenant)
		run(t, ctx, "jobs page", show("jobs"))
		got := eval[[]string](t, ctx, `[...document.querySelectorAll("tr[data-job-id]")].map(e => e.dataset.jobId).sort()`)
		if strings.Join(got, ",") != strings.Join(beta, ",") {
			t.Errorf("team-b's token shows job rows %v, want team-b's jobs %v only", got, beta)
		}
		screenshot(t, ctx, "tenant-jobs-desktop.png")
		run(t, ctx, "overview", show("overview"))
		pools := eval[[]string](t, ctx, `[...document.querySelectorAll("tr[data-pool]")].map(e => e.dataset.pool)`)
		if strings.Join(pools, ",") != "beta-linux" {
			t.Errorf("team-b's overview shows pools %v, want beta-linux only", pools)
		}
		run(t, ctx, "analytics", show("analytics"))
		waitJS(t, ctx, 20*time.Second, "team-b's analytics: its one job only",
			`(() => { const r = [...document.querySelectorAll("tr[data-analytics]")].map(e => e.dataset.analytics);
				return r.length === 1 && r[0].startsWith("beta/web ") })()`)
		run(t, ctx, "deliveries", show("deliveries"))
		targets := eval[[]string](t, ctx, `[...document.querySelectorAll("tr[data-delivery] td:nth-child(2)")].map(e => e.textContent)`)
		if len(targets) == 0 || slices.ContainsFunc(targets, func(s string) bool { return s != "beta" }) {
			t.Errorf("team-b's deliveries page shows targets %v, want beta only", targets)
		}
	})
}
