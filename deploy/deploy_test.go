package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/corral-ci/corral/internal/metrics"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const (
	rulesFile     = "prometheus/corral-alerts.yaml"
	dashboardFile = "grafana/corral.json"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// fakeState gives the scrape-time gauges one value each.
type fakeState struct{}

func (fakeState) Counts(context.Context) (map[corral.JobState]int, []metrics.InstanceCount, error) {
	return map[corral.JobState]int{corral.JobRouted: 1},
		[]metrics.InstanceCount{{State: corral.InstIdle, Pool: "small", Provider: "docker", N: 1}}, nil
}
func (fakeState) Leader() (bool, int64) { return true, 7 }
func (fakeState) Budgets() []metrics.Budget {
	return []metrics.Budget{{Target: "t", Remaining: 4000, Reset: time.Unix(1_800_000_000, 0)}}
}

// exported returns the names of the series corral's registry exports once
// every labelled metric has one observation: a histogram gives its _bucket,
// _sum and _count series, never its bare name.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New()
	m.WatchState(fakeState{})
	m.JobStateChanged("small", corral.JobQueued, corral.JobRouted)
	m.JobStarted("small", ledger.Phases{QueueWait: time.Second, Requested: time.Second, Created: time.Second, Online: time.Second, Started: time.Second})
	m.JobCompleted("small", "success")
	m.InstanceReserved("small")
	m.InstanceCreated("small")
	m.LimitHit("small")
	m.PoolBackoff("small", "provider", 1)
	m.PassDone(time.Millisecond, errors.New("boom"))
	m.Delivery("t", "accepted")
	m.ComponentFailed("scheduler")
	m.ForgeCall("t", corral.CallJIT, corral.CallOK)
	m.ProviderError("docker", corral.ProviderCallCreate)
	m.Action("orphan_removed")
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[n], names[n+"_sum"], names[n+"_count"] = true, true, true
		default:
			names[n] = true
		}
	}
	return names
}

// metricNames returns the metric names an expression selects.
func metricNames(expr parser.Expr) []string {
	var out []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, lm := range vs.LabelMatchers {
			if lm.Name == labels.MetricName && lm.Type == labels.MatchEqual {
				name = lm.Value
			}
		}
		if name != "" {
			out = append(out, name)
		}
		return nil
	})
	return out
}

// missing returns the names expr uses that corral does not export.
func missing(t *testing.T, have map[string]bool, expr string) []string {
	t.Helper()
	e, err := newParser().ParseExpr(expr)
	if err != nil {
		t.Fatalf("parse %q: %v", expr, err)
	}
	var out []string
	for _, n := range metricNames(e) {
		if !have[n] {
			out = append(out, n)
		}
	}
	return out
}

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	rgs, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, newParser(), quiet)
	if len(errs) > 0 {
		t.Fatalf("rulefmt.ParseFile(%s): %v", rulesFile, errors.Join(errs...))
	}
	return rgs
}

func TestAlertRules_Parse(t *testing.T) {
	rgs := loadRules(t)
	var alerts []string
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without an alert name (recording rules are not expected here)", g.Name)
				continue
			}
			alerts = append(alerts, r.Alert)
			if r.For <= 0 {
				t.Errorf("%s: no for:", r.Alert)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
		}
	}
	// The alerts the issue asks for.
	for _, want := range []string{"CorralQueueWaitHigh", "CorralJobsRoutedTooLong", "CorralUnroutableJobs",
		"CorralProviderErrorRateHigh", "CorralPoolBackingOff", "CorralReconcileErrors", "CorralComponentFailures",
		"CorralNoLeader", "CorralSplitLeader", "CorralWebhookBadSignatures", "CorralWebhookErrors",
		"CorralWebhookOverloaded", "CorralStateScrapeError"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s missing", want)
		}
	}
}

// The parser is the real one: a broken expression, a bad duration or a
// broken annotation template is refused.
func TestAlertRules_Refused(t *testing.T) {
	rule := func(expr, forDur, summary string) []byte {
		return []byte("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: '" + expr + "'\n    for: " + forDur +
			"\n    labels: {severity: warning}\n    annotations: {summary: '" + summary + "'}\n")
	}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"valid", rule("sum(corral_leader) == 0", "5m", "x {{ $value }}"), true},
		{"bad expr", rule("sum(corral_leader == 0", "5m", "x"), false},
		{"unknown function", rule("summ(corral_leader)", "5m", "x"), false},
		{"bad duration", rule("corral_leader", "5 minutes", "x"), false},
		{"bad template", rule("corral_leader", "5m", "x {{ $value "), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := rulefmt.Parse(tc.in, false, model.UTF8Validation, newParser(), quiet)
			if got := len(errs) == 0; got != tc.ok {
				t.Fatalf("parsed ok = %v, want %v (errors: %v)", got, tc.ok, errs)
			}
		})
	}
}

func TestAlertRules_MetricsExist(t *testing.T) {
	have := exported(t)
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			e, err := newParser().ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			names := metricNames(e)
			if len(names) == 0 {
				t.Errorf("%s: uses no metric", r.Alert)
			}
			for _, n := range names {
				if !have[n] {
					t.Errorf("%s: metric %s is not exported by corral", r.Alert, n)
				}
			}
		}
	}
}

// The name check fails on a metric corral does not export: the table holds
// deliberately wrong names next to right ones.
func TestMetricNames_Unknown(t *testing.T) {
	have := exported(t)
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum(corral_leader) == 0`, nil},
		{`histogram_quantile(0.95, sum by (pool, le) (rate(corral_job_queue_wait_seconds_bucket[5m])))`, nil},
		{`corral_jobs{state="routed"} > 0 and on() corral_state_scrape_error == 0`, nil},
		{`{__name__="corral_webhooks_total", result="error"}`, nil},
		{`rate(corral_provider_errors_total[5m])`, nil},
		{`corral_forge_rate_limit_remaining < 100`, nil},
		{`rate(corral_provider_error_total[5m])`, []string{"corral_provider_error_total"}}, // does not exist
		{`corral_forge_budget_remaining < 100`, []string{"corral_forge_budget_remaining"}},
		{`rate(corral_job_queue_wait_seconds[5m])`, []string{"corral_job_queue_wait_seconds"}},        // a histogram's bare name
		{`rate(corral_webhooks[5m]) + corral_leaders`, []string{"corral_webhooks", "corral_leaders"}}, // typos
	} {
		t.Run(tc.expr, func(t *testing.T) {
			if got := missing(t, have, tc.expr); !slices.Equal(got, tc.want) {
				t.Fatalf("missing = %v, want %v", got, tc.want)
			}
		})
	}
}

type dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// grafanaVars replaces Grafana's variables with values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "${pool}", ".*", "$pool", ".*")

var labelValues = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)

func TestDashboard_Valid(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d", d.SchemaVersion)
	}
	have := exported(t)
	dsVar := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = true
		}
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil && !have[m[1]] {
			t.Errorf("variable %s: metric %s is not exported by corral", v.Name, m[1])
		}
	}
	if !dsVar {
		t.Error("no Prometheus datasource variable named datasource")
	}
	var titles []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			titles = append(titles, p.Title)
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource is not ${datasource}", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no targets", p.Title)
			}
			for _, tg := range p.Targets {
				e, err := newParser().ParseExpr(grafanaVars.Replace(tg.Expr))
				if err != nil {
					t.Errorf("panel %q: %q: %v", p.Title, tg.Expr, err)
					continue
				}
				names := metricNames(e)
				if len(names) == 0 {
					t.Errorf("panel %q: %q uses no metric", p.Title, tg.Expr)
				}
				for _, n := range names {
					if !have[n] {
						t.Errorf("panel %q: metric %s is not exported by corral", p.Title, n)
					}
				}
			}
		}
	}
	walk(d.Panels)
	sort.Strings(titles)
	for _, want := range []string{"Open jobs by state", "Queue wait p50 / p95 per pool", "Provisioning phases p95",
		"Instances by state", "Instances by pool", "Instances by provider", "Reservations, creates and limit hits",
		"Pool backoffs", "Webhooks by result", "Reconcile duration", "Component failures", "Leaders",
		"Forge API calls by endpoint and result", "Forge rate-limit budget left", "Provider errors by kind", "Reconcile actions"} {
		if !slices.Contains(titles, want) {
			t.Errorf("panel %q missing (have %v)", want, titles)
		}
	}
}
