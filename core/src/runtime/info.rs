//! Read-only views for the admin API and metrics.

use std::time::{Duration, Instant};

use super::{Runtime, WKey};
use crate::app::{AppSpec, ScaleSpec};
use crate::event::{SpecializationTimings, WorkerState};
use crate::ids::PoolKey;

/// Running totals since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls accepted (queued or sent).
    pub accepted: u64,
    /// Calls answered without being accepted (not found, shutting down, failing app).
    pub refused: u64,
    /// Accepted calls settled.
    pub settled: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Responses for calls already settled.
    pub late_responses: u64,
    /// Responses for calls the worker was never given.
    pub unknown_responses: u64,
    /// Messages ignored (unknown or unhandled types).
    pub ignored: u64,
    /// Streams refused at admission.
    pub rejected: u64,
    /// Streams refused at once because their address failed admission too often (also in
    /// `rejected`).
    pub rate_limited: u64,
    /// Workers evicted.
    pub evictions: u64,
    /// Workers resumed.
    pub resumes: u64,
    /// Provisions requested.
    pub provisions: u64,
    /// Specializations started.
    pub specializations: u64,
}

/// An app, as the admin API shows it. Settings are not included: they are secrets.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// Name.
    pub name: String,
    /// Current version number.
    pub version: u32,
    /// The current version's spec, settings redacted (values replaced by `"***"`).
    pub spec: AppSpec,
    /// Scale in force.
    pub scale: ScaleSpec,
    /// Ready workers.
    pub ready: usize,
    /// Workers specializing.
    pub specializing: u32,
    /// All workers bound to it.
    pub workers: usize,
    /// Calls waiting for a worker.
    pub queued: usize,
    /// Calls sent and not answered.
    pub in_flight: u32,
    /// Consecutive failed specializations and the last error.
    pub failures: u32,
    /// Last specialization error.
    pub last_error: Option<String>,
    /// Failing fast until the backoff ends.
    pub failing: bool,
    /// Phase timings of the most recent specialization.
    pub last_specialization: Option<SpecializationTimings>,
}

/// A worker, as the admin API shows it.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// Its id.
    pub id: String,
    /// Its pool.
    pub pool: PoolKey,
    /// Its state.
    pub state: WorkerState,
    /// Its app, when specialized.
    pub app: Option<String>,
    /// Calls in flight on it.
    pub in_flight: usize,
    /// Its capacity.
    pub capacity: u32,
    /// Time since its last message.
    pub last_seen: Duration,
    /// Time in its current state.
    pub in_state: Duration,
    /// Peer address of its stream.
    pub peer: String,
    /// Provisioned by the runtime (else joined with a token).
    pub provisioned: bool,
}

/// A pool, as the admin API shows it.
#[derive(Debug, Clone)]
pub struct PoolInfo {
    /// Its key.
    pub key: PoolKey,
    /// Target idle placeholders.
    pub min_idle: u32,
    /// Maximum workers.
    pub max: u32,
    /// Idle placeholders now.
    pub idle: usize,
    /// Workers in any state.
    pub members: u32,
    /// Provisions in flight.
    pub provisioning: u32,
    /// Workers initializing.
    pub initializing: u32,
    /// Consecutive failures.
    pub failures: u32,
    /// Apps waiting for a placeholder.
    pub waiting_apps: usize,
}

impl Runtime {
    /// Totals since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Every app, by name.
    pub fn apps(&self) -> Vec<AppInfo> {
        let mut names: Vec<&String> = self.app_names.keys().collect();
        names.sort();
        names.into_iter().filter_map(|n| self.app(n)).collect()
    }

    /// One app.
    pub fn app(&self, name: &str) -> Option<AppInfo> {
        let app = &self.apps[self.app_names.get(name)?];
        let mut spec = (**app.spec()).clone();
        for value in spec.settings.values_mut() {
            *value = "***".into();
        }
        Some(AppInfo {
            name: app.name.clone(),
            version: app.current,
            spec,
            scale: app.scale,
            ready: app.ready.len(),
            specializing: app.specializing,
            workers: app.workers.len(),
            queued: app.queue.len(),
            in_flight: app.in_flight,
            failures: app.failures,
            last_error: app.last_error.clone(),
            failing: app.failing(self.now),
            last_specialization: app.last_specialization,
        })
    }

    /// Every worker, oldest first, as of `now`.
    pub fn workers(&self, now: Instant) -> Vec<WorkerInfo> {
        let mut keys: Vec<WKey> = self.workers.keys().copied().collect();
        keys.sort();
        keys.into_iter()
            .map(|w| {
                let worker = &self.workers[&w];
                WorkerInfo {
                    id: worker.id.0.clone(),
                    pool: self.pools[worker.pool].spec.key.clone(),
                    state: worker.state,
                    app: worker.app.and_then(|(a, _)| self.apps.get(&a)).map(|a| a.name.clone()),
                    in_flight: worker.in_flight.len(),
                    capacity: worker.capacity,
                    last_seen: now.saturating_duration_since(worker.last_seen),
                    in_state: now.saturating_duration_since(worker.state_since),
                    peer: worker.peer.clone(),
                    provisioned: worker.provisioned,
                }
            })
            .collect()
    }

    /// Every pool.
    pub fn pools(&self) -> Vec<PoolInfo> {
        self.pools
            .iter()
            .map(|p| PoolInfo {
                key: p.spec.key.clone(),
                min_idle: p.spec.min_idle,
                max: p.spec.max,
                idle: p.idle.len(),
                members: p.members,
                provisioning: p.provisioning,
                initializing: p.initializing,
                failures: p.failures,
                waiting_apps: p.waiting.len(),
            })
            .collect()
    }
}
