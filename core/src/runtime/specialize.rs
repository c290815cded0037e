//! Specialization: placeholder → env reload (pool environment + app settings) → functions
//! metadata (only for workers that index) → one load per function → ready. Each phase has a
//! deadline and a timing; a failure releases the worker and the app tries another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    BindingInfo, FunctionEnvironmentReloadRequest, FunctionEnvironmentReloadResponse, FunctionLoadRequest,
    FunctionLoadResponse, FunctionMetadataResponse, FunctionsMetadataRequest, RpcFunctionMetadata,
    RpcRetryOptions, StatusResult, StreamingMessage, binding_info, rpc_retry_options, status_result,
};

use super::registry::prost_duration;
use super::{AKey, Runtime, Timer, WKey};
use crate::app::{Direction, FunctionSpec, RetryStrategy};
use crate::event::{Event, EvictReason, Phase, SpecializationTimings, WorkerState};

/// Progress of one specialization.
#[derive(Debug)]
pub(super) struct Specializing {
    started: Instant,
    phase: Phase,
    phase_started: Instant,
    timings: SpecializationTimings,
    /// Function ids whose load response is outstanding.
    pending: BTreeSet<String>,
}

impl Runtime {
    /// Turns an idle placeholder into a worker of the app's current version.
    pub(super) fn start_specialization(&mut self, w: WKey, a: AKey) {
        let now = self.now;
        let app = self.apps.get_mut(&a).expect("specializing for a live app");
        let number = app.current;
        let version = app.versions.get_mut(&number).expect("current version exists");
        version.workers += 1;
        app.workers.insert(w);
        let spec = Arc::clone(&version.spec);
        let ids = Arc::clone(&version.function_ids);
        let concurrency = app.scale.concurrency;
        let worker = self.workers.get_mut(&w).expect("placeholder exists");
        worker.app = Some((a, number));
        worker.function_ids = Some(ids);
        worker.capacity = worker.caps.concurrency.unwrap_or(concurrency).max(1);
        worker.spec = Some(Box::new(Specializing {
            started: now,
            phase: Phase::EnvReload,
            phase_started: now,
            timings: SpecializationTimings::default(),
            pending: BTreeSet::new(),
        }));
        let pool = worker.pool;
        self.set_state(w, WorkerState::Specializing, &format!("specializing for app {}", spec.name));
        self.counters.specializations += 1;

        // The real Python worker replaces its whole environment with this map.
        let mut environment_variables = self.pools[pool].spec.environment.clone();
        environment_variables.extend(spec.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        environment_variables.insert("FUNCTIONS_WORKER_RUNTIME".into(), spec.language.clone());
        environment_variables.insert("AzureWebJobsScriptRoot".into(), spec.directory.clone());
        environment_variables.insert("WEBSITE_SITE_NAME".into(), spec.name.to_string());
        let msg = StreamingMessage {
            request_id: String::new(),
            content: Some(Content::FunctionEnvironmentReloadRequest(FunctionEnvironmentReloadRequest {
                environment_variables,
                function_app_directory: spec.directory.clone(),
            })),
        };
        self.send_to(w, msg);
        let at = now + self.cfg.timeouts.env_reload;
        self.timers.set(Timer::Phase(w), at);
        // The pool just lost a placeholder: refill it.
        self.reconcile_pool(pool);
    }

    /// Checks that `w` is specializing and in `phase`; otherwise the message is a violation.
    fn in_phase(&mut self, w: WKey, phase: Phase, what: &str) -> bool {
        let ok = self.workers.get(&w).and_then(|wk| wk.spec.as_ref()).is_some_and(|s| s.phase == phase);
        if !ok {
            self.evict(w, EvictReason::ProtocolViolation(format!("{what} outside the {phase} phase")));
        }
        ok
    }

    /// Records the end of a phase and starts the next.
    fn finish_phase(&mut self, w: WKey, next: Option<(Phase, Duration)>) {
        let now = self.now;
        let worker = self.workers.get_mut(&w).expect("phase of a live worker");
        let spec = worker.spec.as_mut().expect("specializing");
        let took = now.saturating_duration_since(spec.phase_started);
        match spec.phase {
            Phase::EnvReload => spec.timings.env_reload = took,
            Phase::Metadata => spec.timings.metadata = took,
            Phase::Load => spec.timings.load = took,
            Phase::Init => {}
        }
        let phase = spec.phase;
        if let Some((next, timeout)) = next {
            spec.phase = next;
            spec.phase_started = now;
            self.timers.set(Timer::Phase(w), now + timeout);
        }
        let id = worker.id.clone();
        let app = self.app_name_of(w);
        self.emit(Event::Phase { worker: id, app, phase, took });
    }

    pub(super) fn on_env_reload_response(&mut self, w: WKey, resp: FunctionEnvironmentReloadResponse) {
        if !self.in_phase(w, Phase::EnvReload, "FunctionEnvironmentReloadResponse") {
            return;
        }
        if let Some(error) = failure(resp.result.as_ref()) {
            return self.specialization_failed(w, Phase::EnvReload, error);
        }
        if self.workers[&w].caps.indexing {
            self.finish_phase(w, Some((Phase::Metadata, self.cfg.timeouts.metadata)));
            let dir = self.app_spec_of(w).directory.clone();
            let msg = StreamingMessage {
                request_id: String::new(),
                content: Some(Content::FunctionsMetadataRequest(FunctionsMetadataRequest {
                    function_app_directory: dir,
                })),
            };
            self.send_to(w, msg);
        } else {
            self.finish_phase(w, Some((Phase::Load, self.cfg.timeouts.function_load)));
            self.send_loads(w);
        }
    }

    pub(super) fn on_metadata_response(&mut self, w: WKey, resp: FunctionMetadataResponse) {
        if !self.in_phase(w, Phase::Metadata, "FunctionMetadataResponse") {
            return;
        }
        if let Some(error) = failure(resp.result.as_ref()) {
            return self.specialization_failed(w, Phase::Metadata, error);
        }
        if resp.function_metadata_results.len() > self.cfg.limits.max_indexed_functions {
            let why = format!(
                "{} indexed functions (limit {})",
                resp.function_metadata_results.len(),
                self.cfg.limits.max_indexed_functions
            );
            return self.evict(w, EvictReason::ProtocolViolation(why));
        }
        if !resp.use_default_metadata_indexing {
            // The worker assigns its own ids to the functions it found; use them for the
            // deployed functions of the same name.
            let spec = Arc::clone(self.app_spec_of(w));
            let worker = self.workers.get_mut(&w).expect("live worker");
            let mut ids: Vec<String> = worker.function_ids.as_deref().cloned().unwrap_or_default();
            for (i, f) in spec.functions.iter().enumerate() {
                if let Some(found) = resp
                    .function_metadata_results
                    .iter()
                    .find(|m| m.name == f.name && !m.function_id.is_empty())
                {
                    ids[i] = found.function_id.clone();
                }
            }
            worker.function_ids = Some(Arc::new(ids));
        }
        self.finish_phase(w, Some((Phase::Load, self.cfg.timeouts.function_load)));
        self.send_loads(w);
    }

    fn send_loads(&mut self, w: WKey) {
        let spec = Arc::clone(self.app_spec_of(w));
        let ids = self.workers[&w].function_ids.clone().expect("specialized workers have ids");
        let mut pending = BTreeSet::new();
        for (f, id) in spec.functions.iter().zip(ids.iter()) {
            if f.disabled {
                continue;
            }
            pending.insert(id.clone());
            let msg = StreamingMessage {
                request_id: String::new(),
                content: Some(Content::FunctionLoadRequest(FunctionLoadRequest {
                    function_id: id.clone(),
                    metadata: Some(function_metadata(f, id, &spec.language)),
                    managed_dependency_enabled: false,
                })),
            };
            self.send_to(w, msg);
        }
        let done = pending.is_empty();
        if let Some(s) = self.workers.get_mut(&w).and_then(|wk| wk.spec.as_mut()) {
            s.pending = pending;
        }
        if done {
            self.become_ready(w);
        }
    }

    pub(super) fn on_load_response(&mut self, w: WKey, resp: FunctionLoadResponse) {
        if !self.in_phase(w, Phase::Load, "FunctionLoadResponse") {
            return;
        }
        let spec = self.workers.get_mut(&w).and_then(|wk| wk.spec.as_mut()).expect("in phase");
        if !spec.pending.remove(&resp.function_id) {
            let why =
                format!("FunctionLoadResponse for function id {:?} that is not loading", resp.function_id);
            return self.evict(w, EvictReason::ProtocolViolation(why));
        }
        let remaining = spec.pending.len();
        if let Some(error) = failure(resp.result.as_ref()) {
            let name = self.function_name_by_id(w, &resp.function_id);
            return self.specialization_failed(w, Phase::Load, format!("function {name}: {error}"));
        }
        if remaining == 0 {
            self.become_ready(w);
        }
    }

    fn become_ready(&mut self, w: WKey) {
        self.finish_phase(w, None);
        self.timers.cancel(Timer::Phase(w));
        let now = self.now;
        let worker = self.workers.get_mut(&w).expect("live worker");
        let mut spec = worker.spec.take().expect("specializing");
        spec.timings.total = now.saturating_duration_since(spec.started);
        let (a, version) = worker.app.expect("specialized");
        let id = worker.id.clone();
        let app = self.apps.get_mut(&a).expect("app of a specializing worker");
        app.failures = 0;
        app.last_error = None;
        app.last_specialization = Some(spec.timings);
        let name = app.name.clone();
        let current = app.current;
        self.emit(Event::Specialized { worker: id, app: name.clone(), timings: spec.timings });
        self.set_state(w, WorkerState::Ready, &format!("specialized for app {name}"));
        if version == current {
            // A rollout completes worker by worker: each new worker retires one old one.
            let old: Option<WKey> = self.apps[&a]
                .ready
                .iter()
                .filter(|s| s.version != current)
                .min_by_key(|s| (s.in_flight, s.w))
                .map(|s| s.w);
            if let Some(old) = old {
                self.drain(old, "replaced by a new app version");
            }
        }
        self.worker_became_available(w);
    }

    /// The worker answered a phase with a failure: release it (it has imported the app's code
    /// and cannot serve another app) and count the failure against the app.
    fn specialization_failed(&mut self, w: WKey, phase: Phase, error: String) {
        let Some((a, _)) = self.workers.get(&w).and_then(|wk| wk.app) else { return };
        let id = self.workers[&w].id.clone();
        let app = self.app_name_of(w);
        self.emit(Event::SpecializationFailed { worker: id, app, phase, error: error.clone() });
        self.release(w, &format!("specialization failed in {phase}"));
        self.app_failure(a, error);
    }

    pub(super) fn on_phase_timeout(&mut self, w: WKey) {
        let Some(worker) = self.workers.get(&w) else { return };
        match (worker.state, worker.spec.as_ref().map(|s| s.phase), worker.app) {
            (WorkerState::Initializing, _, _) => self.evict(w, EvictReason::PhaseTimeout(Phase::Init)),
            (WorkerState::Specializing, Some(phase), Some((a, _))) => {
                let id = worker.id.clone();
                let app = self.app_name_of(w);
                let error = format!("{phase} timed out");
                self.emit(Event::SpecializationFailed { worker: id, app, phase, error: error.clone() });
                self.evict(w, EvictReason::PhaseTimeout(phase));
                self.app_failure(a, error);
            }
            _ => {}
        }
    }

    fn app_spec_of(&self, w: WKey) -> &Arc<crate::app::AppSpec> {
        let (a, v) = self.workers[&w].app.expect("specialized worker");
        &self.apps[&a].versions[&v].spec
    }

    pub(super) fn app_name_of(&self, w: WKey) -> String {
        self.workers
            .get(&w)
            .and_then(|wk| wk.app)
            .and_then(|(a, _)| self.apps.get(&a))
            .map(|a| a.name.clone())
            .unwrap_or_default()
    }

    fn function_name_by_id(&self, w: WKey, id: &str) -> String {
        let ids = self.workers[&w].function_ids.clone().unwrap_or_default();
        let spec = self.app_spec_of(w);
        ids.iter().position(|x| x == id).map(|i| spec.functions[i].name.clone()).unwrap_or_default()
    }
}

/// The error of a failed `StatusResult` (a missing result counts as failure).
pub(super) fn failure(result: Option<&StatusResult>) -> Option<String> {
    match result {
        Some(r) if r.status == status_result::Status::Success as i32 => None,
        Some(r) => {
            let message = r.exception.as_ref().map(|e| e.message.as_str()).filter(|m| !m.is_empty());
            Some(
                message
                    .or(Some(r.result.as_str()).filter(|m| !m.is_empty()))
                    .unwrap_or("failed without a message")
                    .to_owned(),
            )
        }
        None => Some("no result in the response".to_owned()),
    }
}

/// `RpcFunctionMetadata` for one function of the function.json model.
fn function_metadata(f: &FunctionSpec, id: &str, language: &str) -> RpcFunctionMetadata {
    let bindings: BTreeMap<String, BindingInfo> = f
        .bindings
        .iter()
        .map(|b| {
            let direction = match b.direction {
                Direction::In => binding_info::Direction::In,
                Direction::Out => binding_info::Direction::Out,
                Direction::InOut => binding_info::Direction::Inout,
            };
            let data_type = match b.data_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("string") => binding_info::DataType::String,
                Some("binary") => binding_info::DataType::Binary,
                Some("stream") => binding_info::DataType::Stream,
                _ => binding_info::DataType::Undefined,
            };
            let info = BindingInfo {
                r#type: b.kind.clone(),
                direction: direction as i32,
                data_type: data_type as i32,
                properties: BTreeMap::new(),
            };
            (b.name.clone(), info)
        })
        .collect();
    RpcFunctionMetadata {
        name: f.name.clone(),
        directory: f.directory.clone(),
        script_file: f.script_file.clone(),
        entry_point: f.entry_point.clone(),
        bindings,
        raw_bindings: f.bindings.iter().map(|b| b.raw.clone()).collect(),
        language: language.to_owned(),
        function_id: id.to_owned(),
        retry_options: f.retry.map(|r| {
            let (strategy, delay, min, max) = match r.strategy {
                RetryStrategy::Fixed(d) => {
                    (rpc_retry_options::RetryStrategy::FixedDelay, Some(d), None, None)
                }
                RetryStrategy::Exponential { min, max } => {
                    (rpc_retry_options::RetryStrategy::ExponentialBackoff, None, Some(min), Some(max))
                }
            };
            RpcRetryOptions {
                max_retry_count: i32::try_from(r.max_retries).unwrap_or(i32::MAX),
                delay_interval: delay.map(prost_duration),
                minimum_interval: min.map(prost_duration),
                maximum_interval: max.map(prost_duration),
                retry_strategy: strategy as i32,
            }
        }),
        ..Default::default()
    }
}
