//! Apps (JobHosts): deploy, update, scale, remove; how many workers each wants; failures.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{AKey, IKey, Runtime, Timer, WKey};
use crate::app::{AppSpec, ScaleSpec};
use crate::config::Backoff;
use crate::error::{AppError, WorkerError};
use crate::event::{Event, WorkerState};
use crate::io::{Outcome, Unavailable};

/// One deployed version of an app.
#[derive(Debug)]
pub(super) struct Version {
    pub(super) spec: Arc<AppSpec>,
    /// One id per function, aligned with `spec.functions`.
    pub(super) function_ids: Arc<Vec<String>>,
    /// Workers specialized (or specializing) for this version.
    pub(super) workers: u32,
}

/// A ready worker as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) w: WKey,
    pub(super) version: u32,
    pub(super) in_flight: u32,
    pub(super) capacity: u32,
}

/// An app's live state.
#[derive(Debug)]
pub(super) struct App {
    pub(super) name: String,
    pub(super) pool: usize,
    pub(super) versions: BTreeMap<u32, Version>,
    pub(super) current: u32,
    pub(super) scale: ScaleSpec,
    /// Routable workers (state Ready), any version, with their load kept inline so routing
    /// reads one contiguous array. Maintained by `set_state` and the router.
    pub(super) ready: Vec<Slot>,
    /// Workers specializing for it. Maintained by `set_state`.
    pub(super) specializing: u32,
    /// Every worker bound to it, in any state.
    pub(super) workers: BTreeSet<WKey>,
    /// Invocations waiting for a worker, oldest first.
    pub(super) queue: VecDeque<IKey>,
    /// Invocations sent to its workers and not answered.
    pub(super) in_flight: u32,
    /// Removed: no new calls; workers drain; the record goes when the last one does.
    pub(super) removing: bool,
    /// Consecutive failed specializations.
    pub(super) failures: u32,
    /// Calls fail fast until then.
    pub(super) failing_until: Option<Instant>,
    pub(super) last_error: Option<String>,
    /// Phase timings of its most recent specialization (cold-start telemetry).
    pub(super) last_specialization: Option<crate::event::SpecializationTimings>,
}

impl App {
    pub(super) fn spec(&self) -> &Arc<AppSpec> {
        &self.versions[&self.current].spec
    }

    pub(super) fn failing(&self, now: Instant) -> bool {
        self.failing_until.is_some_and(|t| t > now)
    }
}

impl Runtime {
    /// Deploys an app, or a new version of it. A new version specializes fresh workers; the
    /// old version's workers keep serving until one of the new ones is ready, then drain.
    /// Returns the version number.
    pub fn deploy(&mut self, now: Instant, spec: AppSpec) -> Result<u32, AppError> {
        self.advance(now);
        if self.shutting_down {
            return Err(AppError::ShuttingDown);
        }
        validate_scale(&spec.scale)?;
        if spec.functions.is_empty() {
            return Err(AppError::NoFunctions);
        }
        let Some(pool) = self.pool_for(&spec.language, &spec.version) else {
            return Err(AppError::NoPool { language: spec.language.clone(), version: spec.version.clone() });
        };
        let function_ids: Vec<String> = spec.functions.iter().map(|_| self.rng.uuid()).collect();
        let version = Version { spec: Arc::new(spec), function_ids: Arc::new(function_ids), workers: 0 };
        let name = version.spec.name.as_str().to_owned();
        let scale = version.spec.scale;
        let (a, number) = match self.app_names.get(&name).copied() {
            Some(a) => {
                let app = self.apps.get_mut(&a).expect("named apps exist");
                let number = app.current + 1;
                app.versions.insert(number, version);
                app.current = number;
                app.scale = scale;
                app.pool = pool;
                app.failures = 0;
                app.failing_until = None;
                app.last_error = None;
                self.timers.cancel(Timer::App(a));
                (a, number)
            }
            None => {
                let a = AKey(self.key());
                self.apps.insert(
                    a,
                    App {
                        name: name.clone(),
                        pool,
                        versions: BTreeMap::from([(1, version)]),
                        current: 1,
                        scale,
                        ready: Vec::new(),
                        specializing: 0,
                        workers: BTreeSet::new(),
                        queue: VecDeque::new(),
                        in_flight: 0,
                        removing: false,
                        failures: 0,
                        failing_until: None,
                        last_error: None,
                        last_specialization: None,
                    },
                );
                self.app_names.insert(name.clone(), a);
                (a, 1)
            }
        };
        if number > 1 {
            // Specializations of the superseded version would only be drained later.
            let stale: Vec<WKey> = self.apps[&a]
                .workers
                .iter()
                .copied()
                .filter(|w| self.workers[w].state == WorkerState::Specializing)
                .collect();
            for w in stale {
                self.release(w, "superseded by a new app version");
            }
        }
        self.emit(Event::AppDeployed { app: name, version: number });
        self.reconcile_app(a);
        Ok(number)
    }

    /// Removes an app: its routes disappear now, its waiting calls get "unavailable", its
    /// workers finish what they run and are released.
    pub fn remove_app(&mut self, now: Instant, name: &str) -> Result<(), AppError> {
        self.advance(now);
        let Some(a) = self.app_names.remove(name) else {
            return Err(AppError::NotFound(name.to_owned()));
        };
        let app = self.apps.get_mut(&a).expect("named apps exist");
        app.removing = true;
        self.timers.cancel(Timer::App(a));
        self.fail_waiting(a, Unavailable::AppRemoved);
        self.emit(Event::AppRemoved { app: name.to_owned() });
        let workers: Vec<WKey> = self.apps[&a].workers.iter().copied().collect();
        for w in workers {
            self.drain(w, "app removed");
        }
        self.forget_app_if_done(a);
        self.check_shutdown();
        Ok(())
    }

    /// Changes an app's scale bounds and per-worker concurrency.
    pub fn scale_app(&mut self, now: Instant, name: &str, scale: ScaleSpec) -> Result<(), AppError> {
        self.advance(now);
        validate_scale(&scale)?;
        let Some(&a) = self.app_names.get(name) else {
            return Err(AppError::NotFound(name.to_owned()));
        };
        let app = self.apps.get_mut(&a).expect("named apps exist");
        app.scale = scale;
        // Above the new maximum: drain the least busy ready workers now.
        let excess = (app.ready.len() + app.specializing as usize).saturating_sub(scale.max_workers as usize);
        let mut ready = app.ready.clone();
        ready.sort_by_key(|s| (s.in_flight, s.w));
        for w in ready.into_iter().map(|s| s.w).take(excess) {
            self.drain(w, "app scaled down");
        }
        self.reconcile_app(a);
        Ok(())
    }

    /// Stops giving a worker new work; it is released once its in-flight calls finish (or the
    /// drain deadline passes). Placeholders are released at once.
    pub fn drain_worker(&mut self, now: Instant, id: &str) -> Result<(), WorkerError> {
        self.advance(now);
        let Some(&w) = self.worker_ids.get(id) else {
            return Err(WorkerError::NotFound(id.to_owned()));
        };
        self.drain(w, "drain requested");
        Ok(())
    }

    /// Drains one worker (see [`Runtime::drain_worker`]).
    pub(super) fn drain(&mut self, w: WKey, reason: &str) {
        let Some(worker) = self.workers.get(&w) else { return };
        match worker.state {
            WorkerState::Draining | WorkerState::Gone => {}
            WorkerState::Ready | WorkerState::Disconnected if !worker.in_flight.is_empty() => {
                self.set_state(w, WorkerState::Draining, reason);
                let at = self.now + self.cfg.timeouts.drain;
                self.timers.set(Timer::Drain(w), at);
                self.timers.cancel(Timer::Idle(w));
            }
            _ => self.release(w, reason),
        }
    }

    /// Workers the app should have: enough for its load at its concurrency, within bounds,
    /// and during a rollout at least as many as the old version has ready.
    pub(super) fn app_wanted(&self, app: &App) -> u32 {
        if app.removing || self.shutting_down {
            return 0;
        }
        let per_worker = app.scale.concurrency.max(1);
        let load = app.in_flight + app.queue.len() as u32;
        let mut wanted = load.div_ceil(per_worker).max(app.scale.min_workers);
        let old_ready = app.ready.iter().filter(|s| s.version != app.current).count();
        wanted = wanted.max(old_ready as u32);
        wanted.min(app.scale.max_workers)
    }

    /// Workers the app still needs beyond those ready or specializing for its current version.
    pub(super) fn app_shortfall(&self, app: &App) -> u32 {
        if app.failing(self.now) {
            return 0;
        }
        let current_ready = app.ready.iter().filter(|s| s.version == app.current).count() as u32;
        self.app_wanted(app).saturating_sub(current_ready + app.specializing)
    }

    /// Specializes placeholders until the app has what it wants; if the pool has none left,
    /// queues the app for the next one and lets the pool provision.
    pub(super) fn reconcile_app(&mut self, a: AKey) {
        loop {
            let Some(app) = self.apps.get(&a) else { return };
            if self.app_shortfall(app) == 0 {
                return;
            }
            let pool = app.pool;
            match self.take_placeholder(pool) {
                Some(w) => self.start_specialization(w, a),
                None => {
                    if !self.pools[pool].waiting.contains(&a) {
                        self.pools[pool].waiting.push_back(a);
                    }
                    self.reconcile_pool(pool);
                    return;
                }
            }
        }
    }

    /// A worker bound to the app is gone.
    pub(super) fn app_lost_worker(&mut self, a: AKey, version: u32, w: WKey) {
        let Some(app) = self.apps.get_mut(&a) else { return };
        app.workers.remove(&w);
        if let Some(v) = app.versions.get_mut(&version) {
            v.workers -= 1;
            if v.workers == 0 && version != app.current {
                app.versions.remove(&version);
            }
        }
        if !self.forget_app_if_done(a) {
            self.reconcile_app(a);
        }
    }

    /// Drops a removed app's record once its last worker is gone.
    fn forget_app_if_done(&mut self, a: AKey) -> bool {
        let done = self.apps.get(&a).is_some_and(|app| app.removing && app.workers.is_empty());
        if done {
            self.apps.remove(&a);
            self.timers.cancel(Timer::App(a));
        }
        done
    }

    /// A specialization failed: count it, and after enough in a row make the app fail fast
    /// for a while (its waiting calls get the error instead of a timeout).
    pub(super) fn app_failure(&mut self, a: AKey, error: String) {
        let threshold = self.cfg.timeouts.app_failure_threshold.max(1);
        let Some(app) = self.apps.get_mut(&a) else { return };
        app.failures = app.failures.saturating_add(1);
        app.last_error = Some(error.clone());
        if app.failures >= threshold {
            let backoff = Backoff {
                initial: self.cfg.timeouts.app_failure_backoff,
                max: self.cfg.timeouts.app_failure_backoff * 12,
            };
            let until = self.now + backoff.delay(app.failures - threshold + 1);
            app.failing_until = Some(until);
            let (name, failures) = (app.name.clone(), app.failures);
            self.timers.set(Timer::App(a), until);
            self.emit(Event::AppFailing { app: name, error: error.clone(), failures });
            self.fail_waiting(a, Unavailable::AppFailing(error));
        } else {
            self.reconcile_app(a);
        }
    }

    pub(super) fn on_app_backoff_over(&mut self, a: AKey) {
        if let Some(app) = self.apps.get_mut(&a) {
            app.failing_until = None;
        }
        self.reconcile_app(a);
    }

    /// Settles every call of the app that waits (queued or waiting for a retry).
    fn fail_waiting(&mut self, a: AKey, reason: Unavailable) {
        let retry_after = self.cfg.timeouts.retry_after;
        let waiting: Vec<IKey> = self
            .invs
            .iter()
            .filter(|(_, inv)| inv.app == a && !inv.is_sent())
            .map(|(i, _)| *i)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for i in waiting {
            self.settle(i, Outcome::Unavailable { reason: reason.clone(), retry_after });
        }
    }
}

fn validate_scale(scale: &ScaleSpec) -> Result<(), AppError> {
    if scale.max_workers == 0 {
        return Err(AppError::InvalidScale("max_workers must be at least 1".into()));
    }
    if scale.min_workers > scale.max_workers {
        return Err(AppError::InvalidScale(format!(
            "min_workers {} exceeds max_workers {}",
            scale.min_workers, scale.max_workers
        )));
    }
    if scale.concurrency == 0 {
        return Err(AppError::InvalidScale("concurrency must be at least 1".into()));
    }
    Ok(())
}
