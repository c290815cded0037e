//! Routing and settling: each accepted call goes to the least busy ready worker of its app
//! with room, else waits in the app's bounded FIFO queue, else is refused; and ends in exactly
//! one outcome. Late and duplicate responses are dropped and counted, never forwarded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    InvocationCancel, InvocationRequest, InvocationResponse, ParameterBinding, RetryContext, RpcException,
    RpcHttp, RpcTraceContext, StreamingMessage, TypedData, parameter_binding::RpcData, status_result,
    typed_data::Data,
};

use super::registry::prost_duration;
use super::{AKey, IKey, Runtime, Timer, WKey};
use crate::app::{AppSpec, FunctionSpec, RouteMatch, Trigger};
use crate::event::{DropReason, Event};
use crate::ids::CallId;
use crate::io::{Completed, FunctionError, Invoke, NotFound, Outcome, Output, Payload, Target, Unavailable};

/// An accepted call.
#[derive(Debug)]
pub(super) struct Inv {
    pub(super) call: CallId,
    pub(super) app: AKey,
    /// The app version the call was resolved against, and the function's index in it
    /// (functions are matched by name on workers of other versions).
    spec: Arc<AppSpec>,
    function: usize,
    state: InvState,
    /// The trigger input; kept after sending only when it may have to be sent again.
    input: Option<TypedData>,
    trace: Option<RpcTraceContext>,
    accepted: Instant,
    deadline: Instant,
    attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvState {
    /// In its app's queue.
    Queued,
    /// Sent to this worker.
    Sent(WKey),
    /// Its worker was lost; waiting for the retry delay.
    RetryWait,
}

impl Inv {
    pub(super) fn function_name(&self) -> &str {
        &self.spec.functions[self.function].name
    }

    fn function_spec(&self) -> &FunctionSpec {
        &self.spec.functions[self.function]
    }

    pub(super) fn is_sent(&self) -> bool {
        matches!(self.state, InvState::Sent(_))
    }
}

impl Runtime {
    pub(super) fn on_invoke(&mut self, invoke: Invoke) {
        let Invoke { call, app, target, payload, trace, timeout } = invoke;
        if self.calls.contains_key(&call) {
            // Two calls with one number cannot both be answered; the shell numbers calls.
            debug_assert!(false, "call id {call} reused by the shell");
            return;
        }
        let retry_after = self.cfg.timeouts.retry_after;
        if self.shutting_down {
            return self
                .reply_early(call, Outcome::Unavailable { reason: Unavailable::ShuttingDown, retry_after });
        }
        let Some(&a) = self.app_names.get(app.as_str()) else {
            return self.reply_early(call, Outcome::NotFound(NotFound::App));
        };
        let spec = Arc::clone(self.apps[&a].spec());
        let (f, params) = match resolve(&spec, &target) {
            Ok(found) => found,
            Err(nf) => return self.reply_early(call, Outcome::NotFound(nf)),
        };
        let input = trigger_input(f, payload, params);
        let function = function_index(&spec, &f.name).expect("resolved from this spec");
        let app = &self.apps[&a];
        if app.failing(self.now) {
            let error = app.last_error.clone().unwrap_or_default();
            return self.reply_early(
                call,
                Outcome::Unavailable { reason: Unavailable::AppFailing(error), retry_after },
            );
        }
        let budget = timeout.map_or(spec.function_timeout, |t| t.min(spec.function_timeout));
        let i = IKey(self.key());
        self.invs.insert(
            i,
            Inv {
                call,
                app: a,
                spec: Arc::clone(&spec),
                function,
                state: InvState::Queued,
                input: Some(input),
                trace,
                accepted: self.now,
                deadline: self.now + budget,
                attempts: 0,
            },
        );
        self.calls.insert(call, i);
        self.counters.accepted += 1;
        self.place(i, false);
    }

    /// An invocation id: unique per runtime run, UUID-shaped as workers expect. The call's key
    /// is in its last 16 hex digits, so an answer finds its call without a lookup table.
    pub(super) fn invocation_id(&self, i: IKey) -> String {
        crate::rng::uuid_string(self.id_prefix, i.0)
    }

    /// The key an invocation id carries, if the id is one this runtime issued.
    pub(super) fn key_of_wire_id(&self, id: &str) -> Option<IKey> {
        let key = crate::rng::uuid_low(id)?;
        (crate::rng::uuid_bytes(self.id_prefix, key) == id.as_bytes()).then_some(IKey(key))
    }

    /// The open call an invocation id names.
    pub(super) fn inv_by_wire_id(&self, id: &str) -> Option<IKey> {
        self.key_of_wire_id(id).filter(|i| self.invs.contains_key(i))
    }

    /// Answers a call that was never accepted (unknown app, shutting down, ...).
    fn reply_early(&mut self, call: CallId, outcome: Outcome) {
        self.counters.refused += 1;
        self.out.push_back(Output::Reply { call, outcome });
    }

    /// Sends the invocation to a worker with room, or queues it (at the front when it was
    /// already accepted earlier and is being retried), or refuses it when the queue is full.
    fn place(&mut self, i: IKey, front: bool) {
        let a = self.invs[&i].app;
        let app = &self.apps[&a];
        if (app.queue.is_empty() || front)
            && let Some(w) = self.pick_worker(a, &self.invs[&i])
        {
            return self.dispatch(i, w);
        }
        let app = self.apps.get_mut(&a).expect("live app");
        if !front && app.queue.len() >= app.scale.queue_limit as usize {
            let retry_after = self.cfg.timeouts.retry_after;
            return self.settle(i, Outcome::Unavailable { reason: Unavailable::Overloaded, retry_after });
        }
        if front {
            app.queue.push_front(i);
        } else {
            app.queue.push_back(i);
        }
        let inv = self.invs.get_mut(&i).expect("live invocation");
        inv.state = InvState::Queued;
        let at = inv.deadline.min(self.now + self.cfg.timeouts.queue);
        self.timers.set(Timer::Deadline(i), at);
        self.reconcile_app(a);
    }

    /// The least busy routable worker of the app with room that has the function; workers
    /// of the current version first; ties go to the oldest worker.
    fn pick_worker(&self, a: AKey, inv: &Inv) -> Option<WKey> {
        let app = &self.apps[&a];
        let mut best: Option<(bool, u32, WKey)> = None;
        for slot in &app.ready {
            if slot.in_flight >= slot.capacity {
                continue;
            }
            let old = slot.version != app.current;
            if old && index_on(&app.versions[&slot.version].spec, inv).is_none() {
                continue;
            }
            let rank = (old, slot.in_flight, slot.w);
            if best.is_none_or(|b| rank < b) {
                best = Some(rank);
            }
        }
        best.map(|(_, _, w)| w)
    }

    /// Sends an invocation to a worker.
    fn dispatch(&mut self, i: IKey, w: WKey) {
        let inv = self.invs.get_mut(&i).expect("live invocation");
        inv.state = InvState::Sent(w);
        inv.attempts += 1;
        let deadline = inv.deadline;
        self.timers.set(Timer::Deadline(i), deadline);
        let a = inv.app;
        let worker = self.workers.get_mut(&w).expect("picked a live worker");
        worker.in_flight.push(i);
        worker.idle_since = None;
        let app = self.apps.get_mut(&a).expect("live app");
        app.in_flight += 1;
        if let Some(slot) = app.ready.iter_mut().find(|s| s.w == w) {
            slot.in_flight += 1;
        }
        let msg = self.invocation_request(i, w);
        self.send_to(w, msg);
    }

    /// Builds the `InvocationRequest` for `i` on `w`, shaped to the worker's capabilities.
    fn invocation_request(&mut self, i: IKey, w: WKey) -> StreamingMessage {
        let worker = &self.workers[&w];
        let (a, version) = worker.app.expect("dispatching to a specialized worker");
        let spec = &self.apps[&a].versions[&version].spec;
        let inv = self.invs.get_mut(&i).expect("live invocation");
        let index = index_on(spec, inv).expect("picked workers have the function");
        let f = &spec.functions[index];
        let function_id = worker.function_ids.as_ref().expect("specialized")[index].clone();
        // Keep the input if this call may be sent again: after a resume, or for a retry.
        let keep = worker.caps.resume || f.retry.is_some();
        let mut data = if keep { inv.input.clone() } else { inv.input.take() }.unwrap_or_default();
        if !worker.caps.raw_body_bytes {
            body_as_string(&mut data);
        }
        let mut trigger_metadata = BTreeMap::new();
        if matches!(f.trigger, Trigger::Http(_)) && !worker.caps.trigger_metadata_removed {
            trigger_metadata.insert(f.trigger_name().to_owned(), data.clone());
        }
        let retry_context = (inv.attempts > 1).then(|| RetryContext {
            retry_count: i32::try_from(inv.attempts - 1).unwrap_or(i32::MAX),
            max_retry_count: f.retry.map_or(0, |r| i32::try_from(r.max_retries).unwrap_or(i32::MAX)),
            exception: None,
        });
        StreamingMessage {
            request_id: String::new(),
            content: Some(Content::InvocationRequest(InvocationRequest {
                invocation_id: crate::rng::uuid_string(self.id_prefix, i.0),
                function_id,
                input_data: vec![ParameterBinding {
                    name: f.trigger_name().to_owned(),
                    rpc_data: Some(RpcData::Data(data)),
                }],
                trigger_metadata,
                trace_context: inv.trace.clone(),
                retry_context,
            })),
        }
    }

    /// Sends again every invocation a resumed worker holds; it ignores ones it already has.
    pub(super) fn resend_in_flight(&mut self, w: WKey) -> usize {
        let held = self.workers[&w].in_flight.clone();
        for &i in &held {
            let msg = self.invocation_request(i, w);
            self.send_to(w, msg);
        }
        held.len()
    }

    pub(super) fn on_invocation_response(&mut self, w: WKey, resp: InvocationResponse) {
        let sent_here = self
            .inv_by_wire_id(&resp.invocation_id)
            .filter(|i| self.invs.get(i).is_some_and(|inv| inv.state == InvState::Sent(w)));
        let Some(i) = sent_here else {
            let key = self.key_of_wire_id(&resp.invocation_id);
            let late = key.is_some_and(|k| self.workers.get(&w).is_some_and(|wk| wk.abandoned.contains(&k)));
            let why = if late { DropReason::Late } else { DropReason::NotGiven };
            match why {
                DropReason::Late => self.counters.late_responses += 1,
                DropReason::NotGiven => self.counters.unknown_responses += 1,
            }
            let worker = self.workers[&w].id.clone();
            self.emit(Event::ResponseDropped { worker, invocation: resp.invocation_id, why });
            return;
        };
        self.take_off_worker(i, w);
        let status = resp.result.as_ref().map_or(status_result::Status::Failure as i32, |r| r.status);
        let outcome = if status == status_result::Status::Success as i32 {
            let http_output = self.invs[&i].function_spec().http_output();
            Outcome::Completed(Box::new(Completed::from_response(resp, http_output)))
        } else if status == status_result::Status::Cancelled as i32 {
            Outcome::Cancelled
        } else {
            let exception = resp.result.and_then(|r| r.exception).unwrap_or_else(|| RpcException {
                message: "the function failed without an exception".into(),
                ..Default::default()
            });
            if self.may_retry(i, false) {
                // The answer is in: a late copy of it is late, and the worker has room again.
                self.abandon(w, i);
                self.schedule_retry(i);
                return self.worker_became_available(w);
            }
            let expose = self.apps[&self.invs[&i].app].spec().expose_errors;
            Outcome::Failed(Box::new(FunctionError { exception, expose }))
        };
        self.settle(i, outcome);
        self.worker_became_available(w);
    }

    /// Detaches a sent invocation from its worker (answered, timed out, cancelled, lost).
    fn take_off_worker(&mut self, i: IKey, w: WKey) {
        let a = self.invs[&i].app;
        if let Some(worker) = self.workers.get_mut(&w)
            && let Some(pos) = worker.in_flight.iter().position(|x| *x == i)
        {
            worker.in_flight.swap_remove(pos);
        }
        if let Some(app) = self.apps.get_mut(&a) {
            app.in_flight -= 1;
            if let Some(slot) = app.ready.iter_mut().find(|s| s.w == w) {
                slot.in_flight -= 1;
            }
        }
    }

    /// A worker has room (answered a call, became ready, resumed): feed it from the queue;
    /// release it if it was draining and is now empty; start its idle clock if it has nothing.
    pub(super) fn worker_became_available(&mut self, w: WKey) {
        let Some(worker) = self.workers.get(&w) else { return };
        if worker.state == crate::event::WorkerState::Draining {
            if worker.in_flight.is_empty() {
                self.timers.cancel(Timer::Drain(w));
                self.release(w, "drained");
            }
            return;
        }
        if !worker.routable() {
            return;
        }
        let Some((a, version)) = worker.app else { return };
        loop {
            let worker = &self.workers[&w];
            if worker.in_flight.len() >= worker.capacity as usize {
                break;
            }
            let app = &self.apps[&a];
            let spec = &app.versions[&version].spec;
            // Old-version workers can only take calls for functions they have; look a little
            // way down the queue rather than block on the head.
            let next = app
                .queue
                .iter()
                .take(32)
                .position(|i| version == app.current || index_on(spec, &self.invs[i]).is_some());
            let Some(pos) = next else { break };
            let i =
                self.apps.get_mut(&a).expect("live app").queue.remove(pos).expect("position is in the queue");
            self.dispatch(i, w);
        }
        let now = self.now;
        let worker = self.workers.get_mut(&w).expect("live worker");
        if worker.in_flight.is_empty() && worker.idle_since.is_none() {
            // The idle clock is lazy: its timer is armed once and re-armed from `idle_since`
            // when it fires, so a busy worker costs no timer operations per call.
            worker.idle_since = Some(now);
            if !self.timers.is_armed(Timer::Idle(w)) {
                self.timers.set(Timer::Idle(w), now + self.cfg.timeouts.idle_release);
            }
        }
    }

    /// The worker is gone: retry what its functions' policies allow, settle the rest.
    pub(super) fn fail_in_flight(&mut self, w: WKey, lost: &str) {
        let held = std::mem::take(&mut self.workers.get_mut(&w).expect("live worker").in_flight);
        for i in held {
            let a = self.invs[&i].app;
            if let Some(app) = self.apps.get_mut(&a) {
                app.in_flight -= 1;
            }
            if self.may_retry(i, true) {
                self.schedule_retry(i);
            } else {
                let retry_after = self.cfg.timeouts.retry_after;
                let reason = Unavailable::WorkerLost(lost.to_owned());
                self.settle(i, Outcome::Unavailable { reason, retry_after });
            }
        }
    }

    /// Whether the function's retry policy allows another attempt before the deadline.
    /// Function failures are retried only for non-HTTP triggers, as Azure does.
    fn may_retry(&self, i: IKey, worker_lost: bool) -> bool {
        let inv = &self.invs[&i];
        let Some(app) = self.apps.get(&inv.app) else { return false };
        if app.removing || self.shutting_down || inv.input.is_none() {
            return false;
        }
        let f = inv.function_spec();
        let Some(policy) = f.retry else { return false };
        if !worker_lost && matches!(f.trigger, Trigger::Http(_)) {
            return false;
        }
        inv.attempts <= policy.max_retries && self.now + policy.delay(inv.attempts) < inv.deadline
    }

    fn schedule_retry(&mut self, i: IKey) {
        let inv = self.invs.get_mut(&i).expect("live invocation");
        inv.state = InvState::RetryWait;
        let delay = inv.function_spec().retry.map(|p| p.delay(inv.attempts)).unwrap_or_default();
        self.counters.retries += 1;
        self.timers.set(Timer::Retry(i), self.now + delay);
    }

    pub(super) fn on_retry_timer(&mut self, i: IKey) {
        if self.invs.get(&i).is_some_and(|inv| inv.state == InvState::RetryWait) {
            let i = self.rekey(i);
            self.place(i, true);
        }
    }

    /// Gives a call a new key, and so a new invocation id, for its next attempt: a worker
    /// that already answered the old id would take the retry for a re-send and not run it,
    /// and a late answer to an earlier attempt must not settle this one.
    fn rekey(&mut self, old: IKey) -> IKey {
        let new = IKey(self.key());
        let inv = self.invs.remove(&old).expect("retrying a live invocation");
        self.timers.cancel(Timer::Deadline(old));
        self.timers.cancel(Timer::Retry(old));
        self.calls.insert(inv.call, new);
        self.invs.insert(new, inv);
        new
    }

    pub(super) fn on_deadline(&mut self, i: IKey) {
        let Some(inv) = self.invs.get(&i) else { return };
        let retry_after = self.cfg.timeouts.retry_after;
        match inv.state {
            InvState::Queued => {
                self.settle(i, Outcome::Unavailable { reason: Unavailable::NoWorker, retry_after });
            }
            InvState::Sent(w) => {
                self.abandon_sent(i, w);
                self.settle(i, Outcome::Timeout);
                self.worker_became_available(w);
            }
            InvState::RetryWait => self.settle(i, Outcome::Timeout),
        }
    }

    pub(super) fn on_cancel(&mut self, call: CallId) {
        let Some(&i) = self.calls.get(&call) else { return };
        match self.invs[&i].state {
            InvState::Sent(w) => {
                self.abandon_sent(i, w);
                self.settle(i, Outcome::Cancelled);
                self.worker_became_available(w);
            }
            InvState::Queued | InvState::RetryWait => self.settle(i, Outcome::Cancelled),
        }
    }

    /// Gives up on a sent invocation: tell the worker if it listens, and remember the id so its
    /// late answer is recognised.
    fn abandon_sent(&mut self, i: IKey, w: WKey) {
        self.take_off_worker(i, w);
        if self.workers.get(&w).is_some_and(|wk| wk.caps.cancel) {
            let wire_id = self.invocation_id(i);
            let msg = StreamingMessage {
                request_id: String::new(),
                content: Some(Content::InvocationCancel(InvocationCancel {
                    invocation_id: wire_id,
                    grace_period: Some(prost_duration(std::time::Duration::ZERO)),
                })),
            };
            self.send_to(w, msg);
        }
        self.abandon(w, i);
    }

    /// Ends a call with its one outcome.
    pub(super) fn settle(&mut self, i: IKey, outcome: Outcome) {
        let inv = self.invs.remove(&i).expect("settling a live invocation");
        self.calls.remove(&inv.call);
        self.timers.cancel(Timer::Deadline(i));
        self.timers.cancel(Timer::Retry(i));
        if inv.state == InvState::Queued
            && let Some(app) = self.apps.get_mut(&inv.app)
            && let Some(pos) = app.queue.iter().position(|x| *x == i)
        {
            app.queue.remove(pos);
        }
        let app = self.apps.get(&inv.app).map(|a| a.name.clone()).unwrap_or_default();
        self.counters.settled += 1;
        self.emit(Event::Settled {
            app,
            function: inv.function_name().to_owned(),
            outcome: outcome.kind(),
            took: self.now.saturating_duration_since(inv.accepted),
            attempts: inv.attempts,
        });
        self.out.push_back(Output::Reply { call: inv.call, outcome });
    }

    /// Calls accepted and not yet settled.
    pub fn open_calls(&self) -> usize {
        self.invs.len()
    }
}

/// Index of the call's function on a worker of version `spec` (by name across versions).
fn index_on(spec: &Arc<AppSpec>, inv: &Inv) -> Option<usize> {
    if Arc::ptr_eq(spec, &inv.spec) { Some(inv.function) } else { function_index(spec, inv.function_name()) }
}

/// Index of a function by name (functions are sorted by name).
pub(super) fn function_index(spec: &AppSpec, name: &str) -> Option<usize> {
    spec.functions.binary_search_by(|f| f.name.as_str().cmp(name)).ok()
}

/// A function and its route parameters.
type Resolved<'a> = (&'a FunctionSpec, Vec<(String, String)>);

/// Finds the function a target names, with route parameters for HTTP routes.
fn resolve<'a>(spec: &'a AppSpec, target: &Target) -> Result<Resolved<'a>, NotFound> {
    match target {
        Target::Function(name) => {
            let f = function_index(spec, name).map(|i| &spec.functions[i]).ok_or(NotFound::Function)?;
            if f.disabled { Err(NotFound::Function) } else { Ok((f, Vec::new())) }
        }
        Target::Route { method, path } => match spec.match_http(method, path) {
            RouteMatch::Found { function, params } => Ok((function, params)),
            RouteMatch::MethodNotAllowed => Err(NotFound::Method),
            RouteMatch::NotFound => Err(NotFound::Route),
        },
    }
}

/// The trigger binding's data for a call: HTTP requests get their route parameters; data for
/// an HTTP function (an admin call) becomes a POST with that body.
fn trigger_input(f: &FunctionSpec, payload: Payload, params: Vec<(String, String)>) -> TypedData {
    let data = match (payload, &f.trigger) {
        (Payload::Http(mut http), _) => {
            http.params.extend(params);
            Data::Http(http)
        }
        (Payload::Data(data), Trigger::Http(_)) => Data::Http(Box::new(RpcHttp {
            method: "POST".into(),
            url: format!("/{}", f.name),
            body: Some(Box::new(data)),
            ..Default::default()
        })),
        (Payload::Data(data), _) => return data,
    };
    TypedData { data: Some(data) }
}

/// For workers without `RawHttpBodyBytes`: UTF-8 bodies as strings (others stay bytes).
fn body_as_string(data: &mut TypedData) {
    let Some(Data::Http(http)) = &mut data.data else { return };
    let Some(body) = http.body.as_mut() else { return };
    if let Some(Data::Bytes(bytes)) = &body.data
        && let Ok(text) = std::str::from_utf8(bytes)
    {
        body.data = Some(Data::String(text.to_owned()));
    }
}
