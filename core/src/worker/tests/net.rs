//! An in-memory network between one [`Runtime`] and several [`Worker`]s on a virtual clock.
//!
//! Every message takes `latency` to cross; each direction of a stream is FIFO. `step()` jumps
//! the clock to the earliest of: the next delivery, the runtime's timeout, any running
//! worker's timeout, and processes what is due. The custom handler behind each worker is a
//! closure that answers invocations, either after `work` (auto) or when the test says so
//! (parked). Faults: cut a stream, freeze a worker process, black-hole a worker's traffic,
//! restart the runtime. Invariants are checked as outputs flow: no call answered twice, no
//! invocation run twice by one worker.
//!
//! Self-contained on purpose, so it can grow into the simulation harness in `tests/`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchboard_proto::rpc::typed_data::Data;
use switchboard_proto::rpc::{InvocationRequest, InvocationResponse, RpcHttp, StreamingMessage, TypedData};

use crate::app::AppSpec;
use crate::testkit::{epoch, get, ok};
use crate::worker::{Worker, WorkerConfig, WorkerEvent, WorkerInput, WorkerOutput};
use crate::{CallId, Config, ConnId, Event, Input, Invoke, Outcome, Output, Payload, Runtime, Target};

/// What answers a worker's invocations.
pub(crate) type Handler = Box<dyn Fn(&InvocationRequest) -> InvocationResponse>;

/// One worker process, its handler, and what the test wants to know about it.
pub(crate) struct Node {
    pub(crate) w: Worker,
    /// The stream the worker is on (or dialing), as the network knows it.
    conn: Option<ConnId>,
    /// A frozen process (SIGSTOP, long GC) handles nothing; its inputs wait.
    frozen: bool,
    held: Vec<WorkerInput>,
    /// Its traffic vanishes both ways and its dials hang.
    blackholed: bool,
    /// What the runtime writes on this stream vanishes (the other way still works).
    deaf: Option<ConnId>,
    /// Answer invocations after `work` (else park them until `finish`).
    pub(crate) auto: bool,
    pub(crate) parked: Vec<InvocationRequest>,
    handler: Handler,
    /// Every invocation id the handler was asked to run, in order.
    pub(crate) invoked: Vec<String>,
    pub(crate) events: Vec<WorkerEvent>,
    pub(crate) resets: usize,
    pub(crate) exit: Option<(i32, String)>,
}

enum Delivery {
    ToRuntime {
        conn: ConnId,
        msg: Box<StreamingMessage>,
    },
    ToWorker {
        node: usize,
        conn: ConnId,
        msg: Box<StreamingMessage>,
    },
    /// The dial of `conn` completed.
    Connected {
        node: usize,
        conn: ConnId,
    },
    /// The runtime closed `conn`.
    ClosedByRuntime {
        node: usize,
        conn: ConnId,
        reason: String,
    },
    /// The worker closed `conn` (after what it wrote before).
    ClosedByWorker {
        conn: ConnId,
    },
    /// The shell or handler answered the worker.
    Input {
        node: usize,
        input: WorkerInput,
    },
}

pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) rt: Runtime,
    rt_cfg: Config,
    pub(crate) nodes: Vec<Node>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    /// Live streams and their worker.
    conns: BTreeMap<ConnId, usize>,
    next_conn: u64,
    next_call: u64,
    runtime_down_until: Option<Instant>,
    pub(crate) latency: Duration,
    pub(crate) work: Duration,
    pub(crate) replies: BTreeMap<CallId, Vec<Outcome>>,
    pub(crate) rt_events: Vec<(Instant, Event)>,
}

impl Net {
    pub(crate) fn new(rt_cfg: Config) -> Net {
        let now = epoch();
        let mut net = Net {
            now,
            rt: Runtime::new(rt_cfg.clone(), now),
            rt_cfg,
            nodes: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            conns: BTreeMap::new(),
            next_conn: 1,
            next_call: 1,
            runtime_down_until: None,
            latency: Duration::from_millis(1),
            work: Duration::from_millis(10),
            replies: BTreeMap::new(),
            rt_events: Vec::new(),
        };
        net.pump_runtime();
        net
    }

    /// Starts a worker process; returns its index.
    pub(crate) fn add_worker(&mut self, cfg: WorkerConfig, handler: Handler) -> usize {
        let node = Node {
            w: Worker::new(cfg, self.now),
            conn: None,
            frozen: false,
            held: Vec::new(),
            blackholed: false,
            deaf: None,
            auto: true,
            parked: Vec::new(),
            handler,
            invoked: Vec::new(),
            events: Vec::new(),
            resets: 0,
            exit: None,
        };
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.pump_worker(i);
        i
    }

    // ---- driving ----

    /// Advances to the next thing that happens, but not past `end`, and does what is due.
    /// False when nothing is left to happen.
    pub(crate) fn step(&mut self, end: Instant) -> bool {
        let mut next = self.queue.keys().next().map(|(at, _)| *at);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.rt.poll_timeout());
        for node in &self.nodes {
            if !node.frozen {
                consider(node.w.poll_timeout());
            }
        }
        let Some(at) = next else { return false };
        self.now = self.now.max(at.min(end));
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let delivery = entry.remove();
            self.deliver(delivery);
        }
        self.rt.handle_timeout(self.now);
        self.pump_runtime();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].frozen {
                self.nodes[i].w.handle_timeout(self.now);
                self.pump_worker(i);
            }
        }
        true
    }

    /// Steps until `done` holds; false if `limit` of virtual time passes first.
    pub(crate) fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= end || !self.step(end) {
                return done(self);
            }
        }
    }

    /// Steps for `d` of virtual time.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(d, |net| net.now >= end);
    }

    fn schedule(&mut self, after: Duration, delivery: Delivery) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), delivery);
    }

    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::ToRuntime { conn, msg } => {
                if self.conns.contains_key(&conn) {
                    self.rt.handle_input(self.now, Input::Message { conn, msg });
                    self.pump_runtime();
                }
            }
            Delivery::ToWorker { node, conn, msg } => {
                // Written before a close by the runtime: still delivered, as on a real stream.
                if self.nodes[node].conn == Some(conn) {
                    self.tell_worker(node, WorkerInput::Message(msg));
                }
            }
            Delivery::Connected { node, conn } => {
                if self.nodes[node].conn == Some(conn) {
                    self.tell_worker(node, WorkerInput::Connected);
                }
            }
            Delivery::ClosedByRuntime { node, conn, reason } => {
                if self.nodes[node].conn == Some(conn) {
                    self.nodes[node].conn = None;
                    self.tell_worker(node, WorkerInput::Disconnected { reason });
                }
            }
            Delivery::ClosedByWorker { conn } => {
                if self.conns.remove(&conn).is_some() {
                    let reason = "closed by the worker".to_owned();
                    self.rt.handle_input(self.now, Input::Disconnected { conn, reason });
                    self.pump_runtime();
                }
            }
            Delivery::Input { node, input } => self.tell_worker(node, input),
        }
    }

    fn tell_worker(&mut self, node: usize, input: WorkerInput) {
        if self.nodes[node].frozen {
            self.nodes[node].held.push(input);
            return;
        }
        self.nodes[node].w.handle_input(self.now, input);
        self.pump_worker(node);
    }

    fn pump_runtime(&mut self) {
        while let Some(out) = self.rt.poll_output() {
            match out {
                Output::Send { conn, msg } => {
                    if let Some(&node) = self.conns.get(&conn)
                        && !self.nodes[node].blackholed
                        && self.nodes[node].deaf != Some(conn)
                    {
                        self.schedule(self.latency, Delivery::ToWorker { node, conn, msg });
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some(node) = self.conns.remove(&conn)
                        && !self.nodes[node].blackholed
                    {
                        let reason = format!("closed by the runtime: {}", reason.message());
                        self.schedule(self.latency, Delivery::ClosedByRuntime { node, conn, reason });
                    }
                }
                Output::Reply { call, outcome } => {
                    let replies = self.replies.entry(call).or_default();
                    replies.push(outcome);
                    assert_eq!(replies.len(), 1, "{call} answered twice: {replies:?}");
                }
                Output::Event(event) => self.rt_events.push((self.now, event)),
                _ => {}
            }
        }
    }

    fn pump_worker(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].w.poll_output() {
            match out {
                WorkerOutput::Connect { meta } => self.dial(i, meta),
                WorkerOutput::Send(msg) => {
                    if let Some(conn) = self.nodes[i].conn
                        && !self.nodes[i].blackholed
                    {
                        self.schedule(self.latency, Delivery::ToRuntime { conn, msg });
                    }
                }
                WorkerOutput::CloseStream => {
                    if let Some(conn) = self.nodes[i].conn.take()
                        && !self.nodes[i].blackholed
                    {
                        self.schedule(self.latency, Delivery::ClosedByWorker { conn });
                    }
                }
                WorkerOutput::ReloadEnvironment { .. } => {
                    let input = WorkerInput::EnvReloaded { result: Ok(()) };
                    self.schedule(self.work, Delivery::Input { node: i, input });
                }
                WorkerOutput::LoadFunction { function_id, .. } => {
                    let input = WorkerInput::FunctionLoaded { function_id, result: Ok(()) };
                    self.schedule(self.work, Delivery::Input { node: i, input });
                }
                WorkerOutput::Invoke(req) => {
                    let node = &mut self.nodes[i];
                    assert!(
                        !node.invoked.contains(&req.invocation_id),
                        "worker {i} ran invocation {} twice",
                        req.invocation_id
                    );
                    node.invoked.push(req.invocation_id.clone());
                    if node.auto {
                        let response = Box::new((node.handler)(&req));
                        self.schedule(
                            self.work,
                            Delivery::Input { node: i, input: WorkerInput::InvocationDone { response } },
                        );
                    } else {
                        node.parked.push(*req);
                    }
                }
                WorkerOutput::ResetApp => {
                    // The handler is stopped: what it was doing is gone, and nothing it was
                    // asked before is answered.
                    self.nodes[i].resets += 1;
                    self.nodes[i].parked.clear();
                    self.queue.retain(|_, d| !matches!(d, Delivery::Input { node, .. } if *node == i));
                }
                WorkerOutput::Exit { code, reason } => {
                    self.nodes[i].exit = Some((code, reason));
                    if let Some(conn) = self.nodes[i].conn.take() {
                        self.schedule(self.latency, Delivery::ClosedByWorker { conn });
                    }
                }
                WorkerOutput::Event(event) => self.nodes[i].events.push(event),
                _ => {}
            }
        }
    }

    fn dial(&mut self, i: usize, meta: crate::ConnMeta) {
        if self.nodes[i].blackholed {
            return; // the dial hangs; the worker's connect timeout ends it
        }
        if self.runtime_down_until.is_some_and(|t| t > self.now) {
            let input = WorkerInput::ConnectFailed { error: "connection refused".into() };
            return self.schedule(self.latency, Delivery::Input { node: i, input });
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(conn, i);
        self.nodes[i].conn = Some(conn);
        let peer = format!("10.0.0.{i}:5000");
        self.rt.handle_input(self.now, Input::Connected { conn, peer, meta });
        self.pump_runtime();
        self.schedule(self.latency, Delivery::Connected { node: i, conn });
    }

    // ---- the test's levers ----

    /// Deploys an app on the runtime.
    pub(crate) fn deploy(&mut self, spec: AppSpec) {
        self.rt.deploy(self.now, spec).expect("valid app");
        self.pump_runtime();
    }

    /// The runtime drains a worker (admin request).
    pub(crate) fn drain_worker(&mut self, id: &str) {
        self.rt.drain_worker(self.now, id).expect("a known worker");
        self.pump_runtime();
    }

    /// A caller invokes `GET /<app>/<path>`.
    pub(crate) fn invoke(&mut self, app: &str, path: &str) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        let invoke = Invoke {
            call,
            app: app.into(),
            target: Target::Route { method: "GET".into(), path: path.into() },
            payload: Payload::Http(get(path)),
            trace: None,
            timeout: None,
        };
        self.rt.handle_input(self.now, Input::Invoke(invoke));
        self.pump_runtime();
        call
    }

    /// The handler of worker `i` answers its `n` oldest parked invocations now.
    pub(crate) fn finish(&mut self, i: usize, n: usize) {
        let done: Vec<InvocationRequest> = self.nodes[i].parked.drain(..n).collect();
        for req in done {
            let response = Box::new((self.nodes[i].handler)(&req));
            self.tell_worker(i, WorkerInput::InvocationDone { response });
        }
    }

    /// Sends a local input (e.g. `Drain`) to worker `i`.
    pub(crate) fn input(&mut self, i: usize, input: WorkerInput) {
        self.tell_worker(i, input);
    }

    /// Cuts worker `i`'s stream: what is in flight on it is lost, both ends are told.
    pub(crate) fn cut(&mut self, i: usize) {
        let Some(conn) = self.nodes[i].conn.take() else { return };
        if self.conns.remove(&conn).is_some() {
            let reason = "connection reset".to_owned();
            self.rt.handle_input(self.now, Input::Disconnected { conn, reason });
            self.pump_runtime();
        }
        self.tell_worker(i, WorkerInput::Disconnected { reason: "connection reset".into() });
    }

    /// Freezes or thaws worker `i`'s process. Thawing delivers what arrived meanwhile.
    pub(crate) fn set_frozen(&mut self, i: usize, frozen: bool) {
        self.nodes[i].frozen = frozen;
        if !frozen {
            for input in std::mem::take(&mut self.nodes[i].held) {
                self.tell_worker(i, input);
            }
            self.nodes[i].w.handle_timeout(self.now);
            self.pump_worker(i);
        }
    }

    /// Makes worker `i`'s traffic vanish (both ways; dials hang), or heals it.
    pub(crate) fn set_blackholed(&mut self, i: usize, on: bool) {
        self.nodes[i].blackholed = on;
    }

    /// From now on, what the runtime writes on worker `i`'s current stream is lost; what the
    /// worker writes still arrives. A new stream is not affected.
    pub(crate) fn make_deaf(&mut self, i: usize) {
        self.nodes[i].deaf = self.nodes[i].conn;
    }

    /// Replaces the runtime with a new process (same config, other seed), which refuses
    /// connections for `down`. Every stream ends.
    pub(crate) fn restart_runtime(&mut self, down: Duration) {
        self.rt_cfg.seed[0] = self.rt_cfg.seed[0].wrapping_add(1);
        self.rt = Runtime::new(self.rt_cfg.clone(), self.now);
        self.runtime_down_until = Some(self.now + down);
        let streams = std::mem::take(&mut self.conns);
        for (_, i) in streams {
            if self.nodes[i].conn.take().is_some() {
                self.tell_worker(i, WorkerInput::Disconnected { reason: "runtime went away".into() });
            }
        }
        self.pump_runtime();
    }

    // ---- what happened ----

    pub(crate) fn events_of(&self, i: usize) -> &[WorkerEvent] {
        &self.nodes[i].events
    }

    pub(crate) fn count_events(&self, i: usize, pred: impl Fn(&WorkerEvent) -> bool) -> usize {
        self.nodes[i].events.iter().filter(|e| pred(e)).count()
    }

    pub(crate) fn placeholders(&self) -> usize {
        self.rt.pools().iter().map(|p| p.idle).sum()
    }
}

/// A handler that answers every invocation with HTTP 200 and body `ok`.
pub(crate) fn ok_handler() -> Handler {
    Box::new(|req: &InvocationRequest| {
        let http = RpcHttp {
            status_code: "200".into(),
            body: Some(Box::new(TypedData { data: Some(Data::Bytes("ok".into())) })),
            ..Default::default()
        };
        InvocationResponse {
            invocation_id: req.invocation_id.clone(),
            return_value: Some(TypedData { data: Some(Data::Http(Box::new(http))) }),
            result: ok(),
            ..Default::default()
        }
    })
}

/// The body of a completed HTTP call.
pub(crate) fn body(outcome: &Outcome) -> Option<String> {
    let Outcome::Completed(done) = outcome else { return None };
    match done.http.as_ref()?.body.as_ref()?.data.as_ref()? {
        Data::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Data::String(s) => Some(s.clone()),
        _ => None,
    }
}
