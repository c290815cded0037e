//! Prometheus metrics (OpenMetrics text, served at the admin API's `/metrics`).
//!
//! Two kinds:
//! - counters and histograms fed by the core's events, owned by the driver's telemetry
//!   ([`Metrics::event`]) and read by the scrape through a shared [`MetricsRegistry`];
//! - gauges (workers by state, queue depth, pool sizes) computed at scrape time from the core's
//!   own views ([`Snapshot::take`]), so they can never drift from the truth.
//!
//! Label values are bounded: apps and functions come only from deployed apps (the core emits
//! [`Event::Settled`] only for calls it accepted, which name a real function), languages and
//! pools from the configuration, reasons and outcomes from the core's fixed label sets. A
//! removed app's series are dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use switchboard_core::{Event, OutcomeKind, Runtime as Core, WorkerId, WorkerState};

/// The content type of [`MetricsRegistry::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
const PREFIX: &str = "switchboard";

/// Invocation durations: 1 ms to 5 minutes.
const INVOCATION_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Specialization (phase) durations: 1 ms to 1 minute.
const SPECIALIZATION_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    app: String,
    function: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    app: String,
    function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpecializationLabels {
    app: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLanguageLabels {
    app: String,
    language: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    language: String,
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictionLabels {
    language: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabels {
    language: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    listener: &'static str,
    reason: &'static str,
}

/// Counts connections a listener closed before serving them (fed by the accept loops, which
/// run outside the driver).
#[derive(Debug, Clone, Default)]
pub struct ConnRefusals(Family<ConnectionLabels, Counter>);

impl ConnRefusals {
    /// One connection of `listener` closed for `reason` (a fixed label).
    pub fn count(&self, listener: &'static str, reason: &'static str) {
        self.0.get_or_create(&ConnectionLabels { listener, reason }).inc();
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn invocation_histogram() -> Histogram {
    Histogram::new(INVOCATION_BUCKETS)
}

fn specialization_histogram() -> Histogram {
    Histogram::new(SPECIALIZATION_BUCKETS)
}

/// The event-fed metrics, owned by the driver's telemetry.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    invocations: Family<InvocationLabels, Counter>,
    invocation_seconds: HistogramFamily<FunctionLabels>,
    specializations: Family<SpecializationLabels, Counter>,
    specialization_seconds: HistogramFamily<AppLanguageLabels>,
    phase_seconds: HistogramFamily<PhaseLabels>,
    evictions: Family<EvictionLabels, Counter>,
    reconnects: Family<LanguageLabels, Counter>,
    provisions: Family<PoolLabels, Counter>,
    provision_failures: Family<PoolLabels, Counter>,
    connections_refused: ConnRefusals,
    /// The language of each live worker (its pool's), for labels the events do not carry.
    languages: HashMap<WorkerId, String>,
    /// Series created per app, dropped when the app is removed.
    series: HashMap<String, AppSeries>,
}

#[derive(Debug, Default)]
struct AppSeries {
    functions: HashMap<String, FunctionSeries>,
    languages: BTreeSet<String>,
}

/// The handles of one function's series (they share their values with the families).
#[derive(Debug)]
struct FunctionSeries {
    seconds: Histogram,
    /// By position in [`OUTCOMES`]; created when first seen, as the family would.
    outcomes: [Option<Counter>; OUTCOMES.len()],
}

/// Read access to the event-fed metrics, for the scrape.
#[derive(Debug, Clone)]
pub struct MetricsRegistry(Arc<Registry>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations settled, by app, function and outcome (success, failure, timeout, cancelled, unavailable)",
            invocations.clone(),
        );
        let invocation_seconds: HistogramFamily<FunctionLabels> =
            Family::new_with_constructor(invocation_histogram);
        registry.register_with_unit(
            "invocation_duration",
            "Time from accepting an invocation to its outcome, by app and function",
            Unit::Seconds,
            invocation_seconds.clone(),
        );
        let specializations = Family::<SpecializationLabels, Counter>::default();
        registry.register(
            "specializations",
            "Specializations of a placeholder for an app, by result (success or failure)",
            specializations.clone(),
        );
        let specialization_seconds: HistogramFamily<AppLanguageLabels> =
            Family::new_with_constructor(specialization_histogram);
        registry.register_with_unit(
            "specialization_duration",
            "Time from picking a placeholder to the worker being ready for the app",
            Unit::Seconds,
            specialization_seconds.clone(),
        );
        let phase_seconds: HistogramFamily<PhaseLabels> =
            Family::new_with_constructor(specialization_histogram);
        registry.register_with_unit(
            "worker_phase_duration",
            "Duration of each phase of bringing a worker up (init, env_reload, metadata, load)",
            Unit::Seconds,
            phase_seconds.clone(),
        );
        let evictions = Family::<EvictionLabels, Counter>::default();
        registry.register(
            "worker_evictions",
            "Workers removed against their will, by language and reason",
            evictions.clone(),
        );
        let reconnects = Family::<LanguageLabels, Counter>::default();
        registry.register(
            "worker_reconnects",
            "Connection-mode workers that reconnected within the grace period and resumed",
            reconnects.clone(),
        );
        let provisions = Family::<PoolLabels, Counter>::default();
        registry.register(
            "provisions",
            "Workers the runtime asked a provisioner for, by pool",
            provisions.clone(),
        );
        let provision_failures = Family::<PoolLabels, Counter>::default();
        registry.register(
            "provision_failures",
            "Provisioned workers that could not be started or never connected, by pool",
            provision_failures.clone(),
        );
        let connections_refused = ConnRefusals::default();
        registry.register(
            "connections_refused",
            "Connections closed before being served, by listener and reason (too_many_from_address, \
             tls_handshake_failed, no_request_in_time)",
            connections_refused.0.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            invocations,
            invocation_seconds,
            specializations,
            specialization_seconds,
            phase_seconds,
            evictions,
            reconnects,
            provisions,
            provision_failures,
            connections_refused,
            languages: HashMap::new(),
            series: HashMap::new(),
        }
    }

    /// The counter of connections the listeners close before serving them.
    pub fn connection_refusals(&self) -> ConnRefusals {
        self.connections_refused.clone()
    }

    /// Read access for the scrape.
    pub fn registry(&self) -> MetricsRegistry {
        MetricsRegistry(Arc::clone(&self.registry))
    }

    /// Counts what an event says.
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Settled { app, function, outcome, took, .. } => {
                // Once per invocation: the series' handles are kept, so a known (app, function,
                // outcome) costs two lookups by `&str` and no allocation.
                let series = match self.series.get_mut(app.as_str()) {
                    Some(series) => series,
                    None => self.series.entry(app.clone()).or_default(),
                };
                let handles = match series.functions.get_mut(function.as_str()) {
                    Some(handles) => handles,
                    None => {
                        let labels = FunctionLabels { app: app.clone(), function: function.clone() };
                        let seconds = self.invocation_seconds.get_or_create(&labels).clone();
                        series
                            .functions
                            .entry(function.clone())
                            .or_insert(FunctionSeries { seconds, outcomes: Default::default() })
                    }
                };
                let slot = OUTCOMES.iter().position(|o| o == outcome).expect("every outcome kind is listed");
                let invocations = &self.invocations;
                handles.outcomes[slot]
                    .get_or_insert_with(|| {
                        let labels = InvocationLabels {
                            app: app.clone(),
                            function: function.clone(),
                            outcome: outcome.label(),
                        };
                        invocations.get_or_create(&labels).clone()
                    })
                    .inc();
                handles.seconds.observe(took.as_secs_f64());
            }
            Event::ProvisionRequested { worker, pool } => {
                self.languages.insert(worker.clone(), pool.language.clone());
                self.provisions.get_or_create(&PoolLabels { pool: pool.to_string() }).inc();
            }
            Event::ProvisionFailed { worker, pool, .. } => {
                self.languages.remove(worker);
                self.provision_failures.get_or_create(&PoolLabels { pool: pool.to_string() }).inc();
            }
            Event::WorkerAdmitted { worker, pool, .. } => {
                self.languages.insert(worker.clone(), pool.language.clone());
            }
            Event::WorkerResumed { worker, .. } => {
                let language = self.language(worker);
                self.reconnects.get_or_create(&LanguageLabels { language }).inc();
            }
            Event::WorkerEvicted { worker, pool, reason, .. } => {
                self.languages.remove(worker);
                let labels = EvictionLabels { language: pool.language.clone(), reason: reason.label() };
                self.evictions.get_or_create(&labels).inc();
            }
            Event::WorkerReleased { worker, .. } => {
                self.languages.remove(worker);
            }
            Event::WorkerState { worker, to: WorkerState::Gone, .. } => {
                self.languages.remove(worker);
            }
            Event::Phase { worker, phase, took, .. } => {
                let labels = PhaseLabels { language: self.language(worker), phase: phase.label() };
                self.phase_seconds.get_or_create(&labels).observe(took.as_secs_f64());
            }
            Event::Specialized { worker, app, timings } => {
                let language = self.language(worker);
                let labels = SpecializationLabels { app: app.clone(), result: "success" };
                self.specializations.get_or_create(&labels).inc();
                let labels = AppLanguageLabels { app: app.clone(), language: language.clone() };
                self.specialization_seconds.get_or_create(&labels).observe(timings.total.as_secs_f64());
                self.series.entry(app.clone()).or_default().languages.insert(language);
            }
            Event::SpecializationFailed { app, .. } => {
                let labels = SpecializationLabels { app: app.clone(), result: "failure" };
                self.specializations.get_or_create(&labels).inc();
                self.series.entry(app.clone()).or_default();
            }
            Event::AppRemoved { app } => self.forget_app(app),
            _ => {}
        }
    }

    fn language(&self, worker: &WorkerId) -> String {
        self.languages.get(worker).cloned().unwrap_or_default()
    }

    /// Drops every series labelled with a removed app.
    fn forget_app(&mut self, app: &str) {
        let Some(series) = self.series.remove(app) else { return };
        for function in series.functions.into_keys() {
            for outcome in OUTCOMES {
                let labels = InvocationLabels {
                    app: app.to_owned(),
                    function: function.clone(),
                    outcome: outcome.label(),
                };
                self.invocations.remove(&labels);
            }
            self.invocation_seconds.remove(&FunctionLabels { app: app.to_owned(), function });
        }
        for result in ["success", "failure"] {
            self.specializations.remove(&SpecializationLabels { app: app.to_owned(), result });
        }
        for language in series.languages {
            self.specialization_seconds.remove(&AppLanguageLabels { app: app.to_owned(), language });
        }
    }
}

const OUTCOMES: [OutcomeKind; 6] = [
    OutcomeKind::Success,
    OutcomeKind::Failure,
    OutcomeKind::Timeout,
    OutcomeKind::Cancelled,
    OutcomeKind::Unavailable,
    OutcomeKind::NotFound,
];

/// Worker states shown by the `switchboard_workers` gauge (every one but `gone`).
const STATES: [WorkerState; 6] = [
    WorkerState::Initializing,
    WorkerState::Placeholder,
    WorkerState::Specializing,
    WorkerState::Ready,
    WorkerState::Draining,
    WorkerState::Disconnected,
];

/// What the scrape reads from the core: small aggregates, taken on the driver.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Workers by (language, state).
    workers: BTreeMap<(String, WorkerState), u64>,
    /// Per app.
    apps: BTreeMap<String, AppGauges>,
    /// Per pool.
    pools: BTreeMap<String, PoolGauges>,
    /// Calls accepted and not yet settled.
    open_calls: u64,
    /// The core's running totals.
    counters: switchboard_core::Counters,
}

#[derive(Debug, Clone, Copy, Default)]
struct AppGauges {
    queued: u64,
    in_flight: u64,
    ready: u64,
    failing: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct PoolGauges {
    idle: u64,
    min_idle: u64,
    max: u64,
    members: u64,
    provisioning: u64,
}

type GaugeFamily = Family<Vec<(&'static str, String)>, Gauge>;

/// A scrape-time gauge: name, help, and how to read it from an aggregate.
type GaugeSpec<T> = (&'static str, &'static str, fn(&T) -> u64);

impl Snapshot {
    /// Reads the core (run this on the driver, through `Handle::with_core`).
    pub fn take(core: &Core, now: Instant) -> Snapshot {
        let mut snap = Snapshot::default();
        for pool in core.pools() {
            for state in STATES {
                snap.workers.insert((pool.key.language.clone(), state), 0);
            }
            let gauges = PoolGauges {
                idle: pool.idle as u64,
                min_idle: u64::from(pool.min_idle),
                max: u64::from(pool.max),
                members: u64::from(pool.members),
                provisioning: u64::from(pool.provisioning),
            };
            snap.pools.insert(pool.key.to_string(), gauges);
        }
        for worker in core.workers(now) {
            if worker.state != WorkerState::Gone {
                *snap.workers.entry((worker.pool.language, worker.state)).or_default() += 1;
            }
        }
        for app in core.apps() {
            let gauges = AppGauges {
                queued: app.queued as u64,
                in_flight: u64::from(app.in_flight),
                ready: app.ready as u64,
                failing: app.failing,
            };
            snap.apps.insert(app.name, gauges);
        }
        snap.open_calls = core.open_calls() as u64;
        snap.counters = core.counters().clone();
        snap
    }

    /// The scrape-time metrics as a registry.
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix(PREFIX);
        let workers = GaugeFamily::default();
        for ((language, state), n) in &self.workers {
            workers
                .get_or_create(&vec![("language", language.clone()), ("state", state.label().to_owned())])
                .set(*n as i64);
        }
        r.register("workers", "Workers by language and state", workers);

        let apps: [GaugeSpec<AppGauges>; 4] = [
            ("app_queue_depth", "Invocations waiting for a worker, by app", |g| g.queued),
            ("app_in_flight", "Invocations running on workers, by app", |g| g.in_flight),
            ("app_ready_workers", "Workers ready for the app", |g| g.ready),
            ("app_failing", "1 while the app fails fast after repeated specialization failures", |g| {
                u64::from(g.failing)
            }),
        ];
        for (name, help, value) in apps {
            let family = GaugeFamily::default();
            for (app, gauges) in &self.apps {
                family.get_or_create(&vec![("app", app.clone())]).set(value(gauges) as i64);
            }
            r.register(name, help, family);
        }

        let pools: [GaugeSpec<PoolGauges>; 5] = [
            ("pool_idle", "Idle placeholders in the pool", |g| g.idle),
            ("pool_min_idle", "Target of idle placeholders (min_idle)", |g| g.min_idle),
            ("pool_max", "Most workers the pool may have (max)", |g| g.max),
            ("pool_members", "Workers of the pool in any state", |g| g.members),
            ("pool_provisioning", "Provisions of the pool in flight", |g| g.provisioning),
        ];
        for (name, help, value) in pools {
            let family = GaugeFamily::default();
            for (pool, gauges) in &self.pools {
                family.get_or_create(&vec![("pool", pool.clone())]).set(value(gauges) as i64);
            }
            r.register(name, help, family);
        }

        let open = Gauge::<i64>::default();
        open.set(self.open_calls as i64);
        r.register("open_calls", "Invocations accepted and not yet settled", open);

        let c = &self.counters;
        let counters: [(&str, &str, u64); 8] = [
            ("calls_accepted", "Invocations accepted (queued or sent)", c.accepted),
            (
                "calls_refused",
                "Invocations answered without being accepted (not found, shutting down, failing app)",
                c.refused,
            ),
            ("invocation_retries", "Invocations sent again after their worker was lost", c.retries),
            ("late_responses", "Responses for invocations already settled (dropped)", c.late_responses),
            (
                "unknown_responses",
                "Responses for invocations the worker was never given (dropped)",
                c.unknown_responses,
            ),
            ("messages_ignored", "Worker messages the runtime does not handle", c.ignored),
            ("worker_rejections", "Worker streams refused at admission", c.rejected),
            (
                "admission_rate_limited",
                "Worker streams refused at once because their address failed admission too often",
                c.rate_limited,
            ),
        ];
        for (name, help, value) in counters {
            r.register(name, help, ConstCounter::new(value));
        }
        r
    }
}

impl MetricsRegistry {
    /// The whole exposition: event-fed metrics, then the snapshot's, then `# EOF`.
    pub fn render(&self, snapshot: &Snapshot) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 << 10);
        encode_registry(&mut out, &self.0)?;
        encode_registry(&mut out, &snapshot.registry())?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_core::{EvictReason, PoolKey, SpecializationTimings};

    use super::*;

    fn settled(app: &str, function: &str, outcome: OutcomeKind) -> Event {
        Event::Settled {
            app: app.into(),
            function: function.into(),
            outcome,
            took: Duration::from_millis(3),
            attempts: 1,
        }
    }

    fn render(m: &Metrics) -> String {
        m.registry().render(&Snapshot::default()).unwrap()
    }

    #[test]
    fn invocations_are_counted_by_app_function_and_outcome() {
        let mut m = Metrics::new();
        m.event(&settled("hello", "hello", OutcomeKind::Success));
        m.event(&settled("hello", "hello", OutcomeKind::Success));
        m.event(&settled("hello", "fail", OutcomeKind::Failure));
        let text = render(&m);
        assert!(
            text.contains(
                r#"switchboard_invocations_total{app="hello",function="hello",outcome="success"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchboard_invocations_total{app="hello",function="fail",outcome="failure"} 1"#
            )
        );
        assert!(
            text.contains(r#"switchboard_invocation_duration_seconds_count{app="hello",function="hello"} 2"#)
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn worker_labels_come_from_their_pool_and_removed_apps_lose_their_series() {
        let mut m = Metrics::new();
        let w = WorkerId("w1".into());
        let pool = PoolKey::new("python", "");
        m.event(&Event::ProvisionRequested { worker: w.clone(), pool: pool.clone() });
        m.event(&Event::Specialized {
            worker: w.clone(),
            app: "shop".into(),
            timings: SpecializationTimings { total: Duration::from_millis(40), ..Default::default() },
        });
        m.event(&settled("shop", "order", OutcomeKind::Success));
        m.event(&Event::WorkerEvicted {
            worker: w,
            pool,
            app: Some("shop".into()),
            reason: EvictReason::Silent,
            in_flight: 0,
        });
        let text = render(&m);
        assert!(text.contains(r#"switchboard_provisions_total{pool="python"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_worker_evictions_total{language="python",reason="silent"} 1"#));
        assert!(text.contains(
            r#"switchboard_specialization_duration_seconds_count{app="shop",language="python"} 1"#
        ));
        assert!(text.contains(r#"switchboard_specializations_total{app="shop",result="success"} 1"#));
        m.event(&Event::AppRemoved { app: "shop".into() });
        let text = render(&m);
        assert!(!text.contains(r#"app="shop""#), "{text}");
        assert!(m.languages.is_empty());
    }
}
