//! The observer: watches every input the runtime gets and every output it gives, like a tap on
//! the wire, keeps a model of what it has seen, and reports the first broken promise.
//!
//! Safety invariants, checked as outputs flow and after every step:
//! - a call is answered at most once, and only if it was made; a completed answer is the
//!   answer to that call, from a worker of that call's app, and a call whose function raised
//!   never completes;
//! - no call stays open past its deadline (its timeout, or the app's function timeout);
//! - an invocation goes only to a worker that is ready (or draining, for its own re-sends after
//!   a resume), specialized for the call's app, with the function loaded, and only while the
//!   call is open; never to an evicted or released worker;
//! - an app's settings go only to a worker being specialized for that app, at most once per
//!   admission (specialization is one-way);
//! - pool counts stay within bounds and agree with what the outputs said: members are the
//!   workers admitted and not yet evicted or released; provisions in flight are the worker
//!   ids issued and not yet used or failed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use switchboard_core::proto::Content;
use switchboard_core::proto::rpc::{FunctionLoadResponse, StreamingMessage, status_result};
use switchboard_core::{
    Admission, CallId, ConnId, Event, Input, Outcome, OutcomeKind, Output, PoolKey, Runtime, WorkerState,
};

use crate::payload::{self, Tag};

/// What the observer knows about a call.
#[derive(Debug, Clone)]
pub struct CallRec {
    /// The app it was made to.
    pub app: String,
    /// The function.
    pub function: String,
    /// Latest moment its answer may come (for a call the runtime may accept).
    pub deadline: Option<Instant>,
    /// Its function raises.
    pub fail: bool,
    /// Made to an app whose environment cannot start.
    pub broken: bool,
    /// When it was made, since the start of the run.
    pub made: Duration,
}

/// What the observer knows about a worker since its last fresh admission.
#[derive(Debug, Default)]
struct WorkerRec {
    pool: Option<PoolKey>,
    state: Option<WorkerState>,
    /// The app of its latest state change.
    state_app: Option<String>,
    /// The app whose settings it was sent.
    specialized: Option<String>,
    /// Function id → name, for loads sent to it.
    requested: BTreeMap<String, String>,
    /// Function ids it reported loaded.
    loaded: BTreeSet<String>,
    /// Invocation ids sent to it.
    given: BTreeSet<String>,
    /// Evicted or released.
    gone: bool,
}

/// The tap on the runtime's inputs and outputs.
#[derive(Debug)]
pub struct Observer {
    t0: Instant,
    calls: BTreeMap<CallId, CallRec>,
    deadlines: BTreeSet<(Instant, CallId)>,
    /// Every call ever made and its app (worker-side checks need it after the answer).
    pub call_apps: BTreeMap<u64, String>,
    answered: BTreeSet<CallId>,
    /// Stream → the worker id it presented.
    conns: BTreeMap<ConnId, String>,
    workers: BTreeMap<String, WorkerRec>,
    /// Worker ids issued and not yet used or failed, with their pool.
    tickets: BTreeMap<String, PoolKey>,
    members: BTreeMap<PoolKey, i64>,
    /// Invocation id → call, from the requests.
    pub inv_calls: BTreeMap<String, CallId>,
    /// Workers may send anything (the decode fuzz target forges their messages): do not hold
    /// answers to their content.
    pub relaxed: bool,
    /// The first broken promise.
    pub violation: Option<String>,
    /// The runtime was told to shut down.
    pub shutdown_begun: bool,
    /// The runtime said its shutdown is complete.
    pub shutdown_complete: bool,
    /// Outcome counts by kind label.
    pub outcomes: BTreeMap<&'static str, u64>,
    outcome_kinds: BTreeMap<CallId, OutcomeKind>,
}

impl Observer {
    /// An observer of a run that starts at `t0`.
    pub fn new(t0: Instant) -> Observer {
        Observer {
            t0,
            calls: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            call_apps: BTreeMap::new(),
            answered: BTreeSet::new(),
            conns: BTreeMap::new(),
            workers: BTreeMap::new(),
            tickets: BTreeMap::new(),
            members: BTreeMap::new(),
            inv_calls: BTreeMap::new(),
            relaxed: false,
            violation: None,
            shutdown_begun: false,
            shutdown_complete: false,
            outcomes: BTreeMap::new(),
            outcome_kinds: BTreeMap::new(),
        }
    }

    fn at(&self, t: Instant) -> String {
        format!("+{:.6}s", t.saturating_duration_since(self.t0).as_secs_f64())
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }

    /// A caller made a call.
    pub fn call_made(&mut self, call: CallId, rec: CallRec) {
        if let Some(d) = rec.deadline {
            self.deadlines.insert((d, call));
        }
        self.call_apps.insert(call.0, rec.app.clone());
        self.calls.insert(call, rec);
    }

    /// Calls not answered yet.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// An open call, if it is.
    pub fn call(&self, call: CallId) -> Option<&CallRec> {
        self.calls.get(&call)
    }

    /// The kind of answer a call got.
    pub fn outcome_of(&self, call: CallId) -> Option<OutcomeKind> {
        self.outcome_kinds.get(&call).copied()
    }

    /// Whether the call has been answered.
    pub fn is_answered(&self, call: CallId) -> bool {
        self.answered.contains(&call)
    }

    /// The `n`th open call (mod their number).
    pub fn nth_open(&self, n: usize) -> Option<CallId> {
        let len = self.calls.len();
        if len == 0 { None } else { self.calls.keys().nth(n % len).copied() }
    }

    /// Worker ids issued and not used or failed.
    pub fn tickets(&self) -> impl Iterator<Item = &String> {
        self.tickets.keys()
    }

    /// Watches an input before the runtime gets it.
    pub fn on_input(&mut self, input: &Input) {
        let Input::Message { conn, msg } = input else { return };
        match &msg.content {
            Some(Content::StartStream(s)) => {
                self.conns.entry(*conn).or_insert_with(|| s.worker_id.clone());
            }
            Some(Content::FunctionLoadResponse(r)) => self.loaded(*conn, r),
            Some(Content::FunctionLoadResponseCollection(all)) => {
                for r in &all.function_load_responses {
                    self.loaded(*conn, r);
                }
            }
            _ => {}
        }
    }

    fn loaded(&mut self, conn: ConnId, r: &FunctionLoadResponse) {
        let ok = r.result.as_ref().is_some_and(|s| s.status == status_result::Status::Success as i32);
        let Some(w) = self.conns.get(&conn).and_then(|id| self.workers.get_mut(id)) else { return };
        if ok && w.requested.contains_key(&r.function_id) {
            w.loaded.insert(r.function_id.clone());
        }
    }

    /// Watches an output as the shell takes it.
    pub fn on_output(&mut self, now: Instant, out: &Output) {
        match out {
            Output::Send { conn, msg } => self.on_send(*conn, msg),
            Output::Reply { call, outcome } => self.on_reply(now, *call, outcome),
            Output::Provision(req) if self.shutdown_begun => {
                self.fail(format!("worker {} provisioned after shutdown began", req.worker));
            }
            Output::Provision(req)
                if self.tickets.insert(req.worker.0.clone(), req.pool.clone()).is_some() =>
            {
                self.fail(format!("worker id {} issued twice", req.worker));
            }
            Output::Event(event) => self.on_event(event),
            // Shutting down, the runtime gives up the worker ids it issued (no event says so).
            Output::Release { worker, .. } if self.shutdown_begun => {
                self.tickets.remove(worker.as_str());
            }
            _ => {}
        }
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            Event::WorkerAdmitted { worker, pool, via, .. } => {
                let id = worker.as_str();
                if *via == Admission::Resumed {
                    if self.workers.get(id).is_none_or(|w| w.gone) {
                        self.fail(format!("worker {id} resumed a slot it does not hold"));
                    }
                    return;
                }
                if self.workers.get(id).is_some_and(|w| !w.gone) {
                    self.fail(format!("worker {id} admitted while its earlier admission is live"));
                }
                if *via == Admission::Provisioned && self.tickets.remove(id).is_none() {
                    self.fail(format!("worker {id} admitted as provisioned with an id never issued"));
                }
                *self.members.entry(pool.clone()).or_default() += 1;
                let rec = WorkerRec {
                    pool: Some(pool.clone()),
                    state: Some(WorkerState::Initializing),
                    ..Default::default()
                };
                self.workers.insert(id.to_owned(), rec);
            }
            Event::WorkerState { worker, app, from, to, .. } => {
                let Some(w) = self.workers.get_mut(worker.as_str()) else {
                    return self.fail(format!("state change of unknown worker {worker}"));
                };
                if w.state != Some(*from) {
                    let what = format!("worker {worker} moved {from} -> {to} but was {:?}", w.state);
                    return self.fail(what);
                }
                w.state = Some(*to);
                w.state_app = app.clone();
            }
            Event::WorkerEvicted { worker, .. } | Event::WorkerReleased { worker, .. } => {
                let Some(w) = self.workers.get_mut(worker.as_str()) else {
                    return self.fail(format!("unknown worker {worker} removed"));
                };
                if w.gone {
                    return self.fail(format!("worker {worker} removed twice"));
                }
                w.gone = true;
                let pool = w.pool.clone().unwrap_or_else(|| PoolKey::new("?", ""));
                *self.members.entry(pool).or_default() -= 1;
            }
            Event::ShutdownComplete if self.shutdown_complete => self.fail("shutdown completed twice".into()),
            Event::ShutdownComplete => self.shutdown_complete = true,
            Event::ProvisionFailed { worker, .. } if self.tickets.remove(worker.as_str()).is_none() => {
                self.fail(format!("provision of {worker} failed but it was not in flight"));
            }
            _ => {}
        }
    }

    fn on_send(&mut self, conn: ConnId, msg: &StreamingMessage) {
        let Some(id) = self.conns.get(&conn).cloned() else {
            return self.fail(format!("runtime wrote on {conn} before it presented StartStream"));
        };
        if !self.workers.contains_key(&id) {
            return self.fail(format!("runtime wrote to {id} on {conn}, which was never admitted"));
        }
        if let Err(what) = self.check_send(&id, msg) {
            self.fail(what);
        }
    }

    fn check_send(&mut self, id: &str, msg: &StreamingMessage) -> Result<(), String> {
        let w = self.workers.get_mut(id).expect("checked by the caller");
        match &msg.content {
            Some(Content::FunctionEnvironmentReloadRequest(r)) => {
                let app = payload::app_of_dir(&r.function_app_directory).unwrap_or("?").to_owned();
                if w.gone {
                    return Err(format!("{app}'s settings sent to {id}, which was removed"));
                }
                if w.state != Some(WorkerState::Specializing) || w.state_app.as_deref() != Some(app.as_str())
                {
                    return Err(format!(
                        "{app}'s settings sent to {id}, which is {:?} for {:?}, not specializing for {app}",
                        w.state, w.state_app
                    ));
                }
                if let Some(before) = &w.specialized {
                    return Err(format!("{id} specialized twice: for {before}, then for {app}"));
                }
                for key in r.environment_variables.keys().filter(|k| k.starts_with("SECRET_")) {
                    if *key != payload::secret_key(&app) {
                        return Err(format!("{key} sent to {id}, which is specializing for {app}"));
                    }
                }
                w.specialized = Some(app);
            }
            Some(Content::FunctionLoadRequest(r)) => {
                let name = r.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                let dir_app =
                    r.metadata.as_ref().and_then(|m| payload::app_of_dir(&m.directory)).map(str::to_owned);
                if w.specialized.is_none() || w.specialized != dir_app {
                    return Err(format!(
                        "load of {dir_app:?}'s {name} sent to {id}, specialized for {:?}",
                        w.specialized
                    ));
                }
                w.requested.insert(r.function_id.clone(), name);
            }
            Some(Content::InvocationRequest(r)) => {
                let again = w.given.contains(&r.invocation_id);
                let ok_state = match w.state {
                    Some(WorkerState::Ready) => true,
                    Some(WorkerState::Draining) => again,
                    _ => false,
                };
                if w.gone || !ok_state {
                    return Err(format!(
                        "invocation {} sent to {id} in state {:?} (gone: {}, a re-send: {again})",
                        r.invocation_id, w.state, w.gone
                    ));
                }
                if self.shutdown_begun && !again {
                    return Err(format!(
                        "new invocation {} sent to {id} after shutdown began",
                        r.invocation_id
                    ));
                }
                if !w.loaded.contains(&r.function_id) {
                    return Err(format!(
                        "invocation of function id {} that {id} never loaded",
                        r.function_id
                    ));
                }
                let function = w.requested.get(&r.function_id).cloned().unwrap_or_default();
                let specialized = w.specialized.clone();
                w.given.insert(r.invocation_id.clone());
                let Some(tag) = Tag::of_request(r) else {
                    return Err(format!("invocation {} without the caller's tag", r.invocation_id));
                };
                let call = CallId(tag.call);
                self.inv_calls.insert(r.invocation_id.clone(), call);
                let Some(rec) = self.calls.get(&call) else {
                    return Err(format!("invocation {} for {call}, which is not open", r.invocation_id));
                };
                if specialized.as_deref() != Some(rec.app.as_str()) || function != rec.function {
                    return Err(format!(
                        "{call} ({}/{}) sent to {id}, a worker of {specialized:?} with function {function}",
                        rec.app, rec.function
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A caller got its answer (from the runtime, or from a planted bug in the shell).
    pub fn on_reply(&mut self, now: Instant, call: CallId, outcome: &Outcome) {
        *self.outcomes.entry(outcome.kind().label()).or_default() += 1;
        self.outcome_kinds.insert(call, outcome.kind());
        let Some(rec) = self.calls.remove(&call) else {
            let what =
                if self.answered.contains(&call) { "answered twice" } else { "answered but never made" };
            return self.fail(format!("{call} {what}: {outcome:?}"));
        };
        self.answered.insert(call);
        if let Some(d) = rec.deadline {
            self.deadlines.remove(&(d, call));
            if now > d {
                let what = format!("{call} answered at {}, after its deadline {}", self.at(now), self.at(d));
                return self.fail(what);
            }
        }
        match outcome {
            Outcome::Completed(_) if self.relaxed => {}
            Outcome::Completed(_) => {
                if rec.fail {
                    return self.fail(format!("{call} completed although its function raises"));
                }
                if rec.broken {
                    return self.fail(format!("{call} completed although app {} cannot start", rec.app));
                }
                let text = payload::answer_text(outcome).unwrap_or_default();
                if let Err(e) = payload::check_answer(&text, call, &rec.app) {
                    self.fail(e);
                }
            }
            Outcome::Failed(e) if !self.relaxed => {
                if let Some(n) = e.exception.message.strip_prefix("raised call=")
                    && (n != call.0.to_string() || !rec.fail)
                {
                    self.fail(format!("{call} got another call's failure: {}", e.exception.message));
                }
            }
            _ => {}
        }
    }

    /// Checks what must hold between steps.
    pub fn check_step(&mut self, now: Instant, rt: &Runtime) {
        if let Some(&(d, call)) = self.deadlines.first()
            && d < now
        {
            let rec = &self.calls[&call];
            let what = format!(
                "{call} ({}/{}, made at +{:.6}s) still open {:?} past its deadline {}",
                rec.app,
                rec.function,
                rec.made.as_secs_f64(),
                now - d,
                self.at(d)
            );
            return self.fail(what);
        }
        for pool in rt.pools() {
            if pool.members + pool.provisioning > pool.max || pool.idle as u32 > pool.members {
                return self.fail(format!("pool out of bounds: {pool:?}"));
            }
            let members = self.members.get(&pool.key).copied().unwrap_or(0);
            if i64::from(pool.members) != members {
                return self.fail(format!(
                    "pool {} counts {} members, the outputs say {members}",
                    pool.key, pool.members
                ));
            }
            let tickets = self.tickets.values().filter(|k| **k == pool.key).count();
            if pool.provisioning as usize != tickets {
                let what = format!(
                    "pool {} counts {} provisions, the outputs say {tickets}",
                    pool.key, pool.provisioning
                );
                return self.fail(what);
            }
        }
    }

    /// Time until the earliest open deadline, for reports.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// A short description of the open calls, for reports.
    pub fn describe_open(&self) -> String {
        self.calls
            .iter()
            .take(5)
            .map(|(c, r)| format!("{c} {}/{} made at +{:.3}s", r.app, r.function, r.made.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
