//! Where the core's events and worker logs go: `tracing` events with structured fields,
//! Prometheus metrics ([`Metrics`]) and the live-log hub ([`LogHub`]).

use switchboard_core::{Event, OutcomeKind, WorkerLog};

use crate::logs::LogHub;
use crate::metrics::Metrics;

/// Where events and worker logs go. Owned by the driver; the admin API reads the same metrics
/// registry and log hub.
#[derive(Debug, Default)]
pub struct Telemetry {
    metrics: Metrics,
    logs: LogHub,
}

impl Telemetry {
    /// Telemetry feeding these metrics and this log hub.
    pub fn new(metrics: Metrics, logs: LogHub) -> Self {
        Telemetry { metrics, logs }
    }

    /// Records a core event.
    pub fn event(&mut self, event: &Event) {
        self.metrics.event(event);
        match event {
            Event::WorkerAdmitted { worker, pool, peer, via } => {
                tracing::info!(%worker, %pool, %peer, ?via, "worker admitted");
            }
            Event::WorkerRejected { conn, peer, worker, reason } => {
                let worker = worker.as_ref().map(|w| w.to_string()).unwrap_or_default();
                tracing::warn!(%conn, %peer, %worker, %reason, "worker rejected");
            }
            Event::AdmissionLimited { address, failures, within, cooldown } => {
                tracing::warn!(
                    %address,
                    failures,
                    within_s = within.as_secs(),
                    cooldown_s = cooldown.as_secs(),
                    "too many failed worker admissions from this address: its streams are refused for a while"
                );
            }
            Event::WorkerState { worker, app, from, to, reason } => {
                let app = app.as_deref().unwrap_or("");
                tracing::debug!(%worker, app, %from, %to, %reason, "worker state");
            }
            Event::WorkerEvicted { worker, pool, app, reason, in_flight } => {
                let app = app.as_deref().unwrap_or("");
                tracing::warn!(%worker, %pool, app, %reason, in_flight, "worker evicted");
            }
            Event::WorkerReleased { worker, app, reason } => {
                let app = app.as_deref().unwrap_or("");
                tracing::info!(%worker, app, %reason, "worker released");
            }
            Event::WorkerResumed { worker, after, resent } => {
                tracing::info!(%worker, after_ms = after.as_millis() as u64, resent, "worker resumed");
            }
            Event::Phase { worker, app, phase, took } => {
                tracing::debug!(%worker, app, %phase, took_ms = ms(*took), "specialization phase done");
            }
            Event::Specialized { worker, app, timings } => {
                tracing::info!(
                    %worker,
                    app,
                    env_reload_ms = ms(timings.env_reload),
                    load_ms = ms(timings.load),
                    total_ms = ms(timings.total),
                    "worker specialized"
                );
            }
            Event::SpecializationFailed { worker, app, phase, error } => {
                tracing::warn!(%worker, app, %phase, %error, "specialization failed");
            }
            Event::AppDeployed { app, version } => tracing::info!(app, version, "app deployed"),
            Event::AppFailing { app, error, failures } => {
                tracing::error!(app, %error, failures, "app keeps failing to start; failing fast for a while");
            }
            Event::AppRemoved { app } => {
                self.logs.forget_app(app);
                tracing::info!(app, "app removed");
            }
            Event::ResponseDropped { worker, invocation, why } => {
                tracing::warn!(%worker, invocation, why = why.label(), "response dropped");
            }
            Event::MessageIgnored { worker, what } => tracing::debug!(%worker, what, "message ignored"),
            Event::Settled { app, function, outcome, took, attempts } => {
                let (kind, outcome, took_ms) = (*outcome, outcome.label(), ms(*took));
                // Successes are the hot path (counted in /metrics); anything else is news.
                match kind {
                    OutcomeKind::Success => {
                        tracing::debug!(app, function, outcome, took_ms, attempts, "settled")
                    }
                    OutcomeKind::Failure | OutcomeKind::Cancelled => {
                        tracing::info!(app, function, outcome, took_ms, attempts, "settled")
                    }
                    _ => tracing::warn!(app, function, outcome, took_ms, attempts, "settled"),
                }
            }
            Event::ProvisionRequested { worker, pool } => tracing::debug!(%worker, %pool, "provisioning"),
            Event::ProvisionFailed { worker, pool, reason, backoff } => {
                tracing::warn!(%worker, %pool, %reason, backoff_ms = ms(*backoff), "provision failed");
            }
            Event::ShutdownComplete => tracing::info!("all workers released"),
            other => tracing::debug!(?other, "event"),
        }
    }

    /// Re-emits a worker's log line with its attribution.
    pub fn log(&mut self, log: &WorkerLog) {
        self.logs.publish(log);
        let app = log.app.as_deref().unwrap_or("");
        let function = log.function.as_deref().unwrap_or("");
        let invocation = log.invocation.as_deref().unwrap_or("");
        let worker = log.worker.as_str();
        let category = log.category.as_str();
        let message = log.message.as_str();
        // System logs of the worker are chatty; user logs are what operators look for.
        let system = log.log_category == 1;
        match (log.level, system) {
            (4.., _) => {
                tracing::warn!(target: "worker", app, function, invocation, worker, category, level = log.level, "{message}")
            }
            (3, _) => {
                tracing::warn!(target: "worker", app, function, invocation, worker, category, "{message}")
            }
            (2, false) => {
                tracing::info!(target: "worker", app, function, invocation, worker, category, "{message}")
            }
            _ => tracing::debug!(target: "worker", app, function, invocation, worker, category, "{message}"),
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
