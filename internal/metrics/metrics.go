// Package metrics exposes corral on a Prometheus registry of its own (never
// the global default): it implements the recorder hooks of the ledger,
// scheduler, reconciler, webhook endpoint and component manager, and reads
// gauges (jobs by state, instances by state, pool and provider, the leader)
// from the store and the app when scraped. Label values are bounded: pool,
// provider and component names come from the configuration, states and
// results from fixed lists; no job id, repository or runner name is ever a
// label.
package metrics

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Buckets for waits from milliseconds (a warm runner) to an hour (a queue).
var waitBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// Metrics is corral's registry and its recorders.
type Metrics struct {
	Registry *prometheus.Registry

	jobTransitions *prometheus.CounterVec
	jobsCompleted  *prometheus.CounterVec
	queueWait      *prometheus.HistogramVec
	phase          *prometheus.HistogramVec
	reserved       *prometheus.CounterVec
	created        *prometheus.CounterVec
	limitHits      *prometheus.CounterVec
	backoffs       *prometheus.CounterVec
	reconcile      prometheus.Histogram
	reconcileErrs  prometheus.Counter
	webhooks       *prometheus.CounterVec
	compFailures   *prometheus.CounterVec
	polls          *prometheus.CounterVec
	ssPolls        *prometheus.CounterVec
	forgeCalls     *prometheus.CounterVec
	providerErrs   *prometheus.CounterVec
	reconcileActs  *prometheus.CounterVec
}

// New makes the registry and its metrics; WatchState adds the gauges read
// at scrape time.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{Registry: reg}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m.jobTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_job_transitions_total",
		Help: "Jobs entering a state, by pool (empty until routed) and state."}, []string{"pool", "state"})
	m.jobsCompleted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_jobs_completed_total",
		Help: "Jobs completed, by pool and the forge's conclusion."}, []string{"pool", "conclusion"})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_job_queue_wait_seconds",
		Help: "Time from a job queued to a runner taking it, by pool.", Buckets: waitBuckets}, []string{"pool"})
	m.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_provisioning_phase_seconds",
		Help:    "A job's path split in phases: requested (queued to instance requested), created (to the provider's answer), online (to the runner online), started (to the job started).",
		Buckets: waitBuckets}, []string{"pool", "phase"})
	m.reserved = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_instances_reserved_total",
		Help: "Instances reserved within the limits, by pool."}, []string{"pool"})
	m.created = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_instances_created_total",
		Help: "Instances a provider made, by pool."}, []string{"pool"})
	m.limitHits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_limit_hits_total",
		Help: "Reservations that found no room (global, tenant or pool maximum), by the job's first pool."}, []string{"pool"})
	m.backoffs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_pool_backoffs_total",
		Help: "Pool backoffs after failures, by pool and kind (provider: create errors; refused: the forge refused the runner)."},
		[]string{"pool", "kind"})
	m.reconcile = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_reconcile_duration_seconds",
		Help: "Duration of reconcile passes.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)})
	m.reconcileErrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_reconcile_errors_total",
		Help: "Reconcile passes that ended with errors."})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_webhooks_total",
		Help: "Webhook deliveries by result: accepted, duplicate, bad_signature, malformed, oversize, unknown_target, overloaded, error."},
		[]string{"result"})
	m.compFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_component_failures_total",
		Help: "Failures of corral's components (each is restarted, or stops corral if it must)."}, []string{"component"})
	m.polls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_polls_total",
		Help: "Polls of a target's open jobs in poll mode, by result: ok, unchanged (304) or error."}, []string{"target", "result"})
	m.ssPolls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_scaleset_polls_total",
		Help: "Long polls of a scale set's message queue in scale-set mode, by result: ok (a message), empty, error, gone (scale set or session deleted at GitHub), conflict (a live session waited out)."}, []string{"target", "result"})
	m.forgeCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_forge_calls_total",
		Help: "Forge API requests sent (retries included), by target, endpoint class (jit, registration, runners, jobs, token, hooks, repos, meta, other) and result (ok, not_modified, client_error, rate_limited, server_error, network_error)."},
		[]string{"target", "endpoint", "result"})
	m.providerErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_provider_errors_total",
		Help: "Failed provider calls, by provider and kind (create, delete, list, log)."}, []string{"provider", "kind"})
	m.reconcileActs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_reconcile_actions_total",
		Help: "What the reconciler repaired, by kind: rescued, finished, ghost_removed, orphan_removed, vanished, boot_timeout, job_timeout, lifetime, pool_removed."},
		[]string{"kind"})
	for _, c := range []prometheus.Collector{m.forgeCalls, m.providerErrs, m.reconcileActs, m.jobTransitions, m.jobsCompleted, m.queueWait, m.phase, m.reserved, m.created,
		m.limitHits, m.backoffs, m.reconcile, m.reconcileErrs, m.webhooks, m.compFailures, m.polls, m.ssPolls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// WatchState adds the gauges that r gives at each scrape.
func (m *Metrics) WatchState(r StateReader) { m.Registry.MustRegister(&stateCollector{r: r}) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// JobStateChanged implements ledger.Recorder.
func (m *Metrics) JobStateChanged(pool string, _, to corral.JobState) {
	m.jobTransitions.WithLabelValues(pool, string(to)).Inc()
}

// JobStarted implements ledger.Recorder.
func (m *Metrics) JobStarted(pool string, p ledger.Phases) {
	if p.QueueWait >= 0 {
		m.queueWait.WithLabelValues(pool).Observe(p.QueueWait.Seconds())
	}
	for name, d := range map[string]time.Duration{"requested": p.Requested, "created": p.Created, "online": p.Online, "started": p.Started} {
		if d >= 0 {
			m.phase.WithLabelValues(pool, name).Observe(d.Seconds())
		}
	}
}

// JobCompleted implements ledger.Recorder.
func (m *Metrics) JobCompleted(pool, conclusion string) {
	switch conclusion {
	case "success", "failure", "cancelled", "skipped", "timed_out", "action_required", "neutral", "stale", "startup_failure":
	default:
		conclusion = "other"
	}
	m.jobsCompleted.WithLabelValues(pool, conclusion).Inc()
}

// InstanceReserved implements scheduler.Recorder.
func (m *Metrics) InstanceReserved(pool string) { m.reserved.WithLabelValues(pool).Inc() }

// LimitHit implements scheduler.Recorder.
func (m *Metrics) LimitHit(pool string) { m.limitHits.WithLabelValues(pool).Inc() }

// InstanceCreated implements scheduler.Recorder.
func (m *Metrics) InstanceCreated(pool string) { m.created.WithLabelValues(pool).Inc() }

// PoolBackoff implements scheduler.Recorder.
func (m *Metrics) PoolBackoff(pool, kind string, _ int) { m.backoffs.WithLabelValues(pool, kind).Inc() }

// PassDone implements reconciler.Recorder.
func (m *Metrics) PassDone(took time.Duration, err error) {
	m.reconcile.Observe(took.Seconds())
	if err != nil {
		m.reconcileErrs.Inc()
	}
}

// Delivery implements webhook.Recorder: the target is not a label (an
// attacker could make unknown ones up).
func (m *Metrics) Delivery(_ string, result string) {
	m.webhooks.WithLabelValues(result).Inc()
}

// ForgeCall implements corral.CallRecorder. Endpoint and result come from
// fixed lists; anything else is counted as "other".
func (m *Metrics) ForgeCall(target, endpoint, result string) {
	if !slices.Contains(corral.CallEndpoints, endpoint) {
		endpoint = corral.CallOther
	}
	if !slices.Contains(corral.CallResults, result) {
		result = "other"
	}
	m.forgeCalls.WithLabelValues(target, endpoint, result).Inc()
}

// ProviderError implements scheduler.Recorder and reconciler.Recorder.
func (m *Metrics) ProviderError(provider, kind string) {
	if !slices.Contains(corral.ProviderCalls, kind) {
		kind = "other"
	}
	m.providerErrs.WithLabelValues(provider, kind).Inc()
}

// Action implements reconciler.Recorder.
func (m *Metrics) Action(kind string) { m.reconcileActs.WithLabelValues(kind).Inc() }

// ComponentFailed implements component.Recorder.
func (m *Metrics) ComponentFailed(name string) { m.compFailures.WithLabelValues(name).Inc() }

// Polled implements poller.Recorder: targets come from the configuration,
// so they may be labels.
func (m *Metrics) Polled(target, result string) { m.polls.WithLabelValues(target, result).Inc() }

// ScaleSetPolled implements listener.Recorder (targets come from the
// configuration, results from a fixed list: the series stay bounded).
func (m *Metrics) ScaleSetPolled(target, result string) {
	m.ssPolls.WithLabelValues(target, result).Inc()
}

// StateReader gives the gauges read at scrape time.
type StateReader interface {
	// Counts returns open jobs by state and live instances by state, pool
	// and provider name.
	Counts(ctx context.Context) (jobs map[corral.JobState]int, instances []InstanceCount, err error)
	// Leader: whether this replica leads, and its term.
	Leader() (leading bool, term int64)
	// Budgets: the forge API budget left per target, for the targets
	// whose forge reports one (GitHub; Gitea has no rate-limit headers).
	Budgets() []Budget
}

// Budget is a target's forge API budget as of its last answer.
type Budget struct {
	Target    string
	Remaining int
	Reset     time.Time // zero when unknown
}

// InstanceCount is the number of instances in one state of one pool.
type InstanceCount struct {
	State    corral.InstanceState
	Pool     string
	Provider string
	N        int
}

var (
	descJobs      = prometheus.NewDesc("corral_jobs", "Open jobs by state (completed ones: corral_jobs_completed_total).", []string{"state"}, nil)
	descInstances = prometheus.NewDesc("corral_instances", "Live instances by state, pool and provider.", []string{"state", "pool", "provider"}, nil)
	descLeader    = prometheus.NewDesc("corral_leader", "1 if this replica leads the scheduler and reconciler.", nil, nil)
	descTerm      = prometheus.NewDesc("corral_leader_term", "The fencing token of this replica's leader term (0 when it does not lead).", nil, nil)
	descBudget    = prometheus.NewDesc("corral_forge_rate_limit_remaining", "Forge API calls left in the rate-limit window of the target's credential, as of its last answer (GitHub only: Gitea reports none).", []string{"target"}, nil)
	descReset     = prometheus.NewDesc("corral_forge_rate_limit_reset_timestamp_seconds", "When the target's rate-limit window resets (Unix time).", []string{"target"}, nil)
	descScrapeErr = prometheus.NewDesc("corral_state_scrape_error", "1 if the store could not be read for the gauges.", nil, nil)
)

type stateCollector struct{ r StateReader }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBudget, descReset, descJobs, descInstances, descLeader, descTerm, descScrapeErr} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	jobs, ins, err := c.r.Counts(ctx)
	bad := 0.0
	if err != nil {
		bad = 1
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, bad)
	for _, s := range corral.JobStates {
		if s.Open() {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(jobs[s]), string(s))
		}
	}
	for _, x := range ins {
		ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(x.N), string(x.State), x.Pool, x.Provider)
	}
	leading, term := c.r.Leader()
	l := 0.0
	if leading {
		l = 1
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, l)
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(term))
	for _, b := range c.r.Budgets() {
		ch <- prometheus.MustNewConstMetric(descBudget, prometheus.GaugeValue, float64(b.Remaining), b.Target)
		if !b.Reset.IsZero() {
			ch <- prometheus.MustNewConstMetric(descReset, prometheus.GaugeValue, float64(b.Reset.Unix()), b.Target)
		}
	}
}
