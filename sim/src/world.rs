//! The simulated world: one runtime core, worker processes, the network between them, a
//! provisioner and callers, on one virtual clock.
//!
//! [`World::step`] jumps the clock to the earliest of: the runtime's timeout, a running worker
//! core's timeout, the next agenda entry (a delivery, a handler finishing, a fault, a workload
//! action), and processes just that. The observer checks its invariants after every step.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use switchboard_core::proto::rpc::StreamingMessage;
use switchboard_core::worker::WorkerInput;
use switchboard_core::{CallId, ConnId, Event, Input, Output, Runtime};

use crate::net::Conn;
use crate::observer::Observer;
use crate::plan::Plan;
use crate::procs::{Job, Node, Proc};
use crate::rng::SimRng;

/// Something due at a point in virtual time.
#[derive(Debug)]
pub(crate) enum Ev {
    /// Bytes from a worker reach the runtime's shell.
    ToRuntime { conn: ConnId, msg: Box<StreamingMessage> },
    /// The worker closed its stream (after what it wrote before).
    ClosedByWorker { conn: ConnId },
    /// A dead process's kernel reset its stream.
    RstToRuntime { conn: ConnId },
    /// Bytes from the runtime reach a worker.
    ToWorker { conn: ConnId, msg: Box<StreamingMessage> },
    /// The worker's dial completed.
    DialDone { conn: ConnId },
    /// The runtime ended the stream (after what it wrote before).
    ClosedByRuntime { conn: ConnId, reason: String },
    /// The worker's transport saw the stream reset (not carried by the network).
    WorkerReset { conn: ConnId, reason: String },
    /// The shell's keepalive checks a peer that became unreachable.
    Keepalive { node: usize, epoch: u64 },
    /// The keepalive of a stream whose path died ends it.
    StreamKeepalive { conn: ConnId },
    /// Something inside a worker process (a handler finishing, a reply being written).
    Proc { node: usize, life: u32, job: Job },
    /// A provisioned or restarted process starts.
    Boot { node: usize, life: u32 },
    /// The provisioner asks a process to stop.
    Sigterm { node: usize, life: u32 },
    /// The provisioner kills a process that did not stop.
    Kill { node: usize, life: u32 },
    /// The provisioner tells the runtime what became of a worker it asked for.
    Report(Box<Input>),
    /// An orchestrator restarts an external worker that exited.
    Restart { node: usize },
    /// A partition ends.
    HealPartition { node: usize, epoch: u64, reset: bool },
    /// A frozen process resumes.
    Thaw { node: usize, epoch: u64 },
    /// A slow spell ends.
    Unslow { node: usize, epoch: u64 },
    /// A caller gives up on its call.
    CancelCall { call: CallId },
    /// The workload makes a call.
    Call,
    /// The workload does an admin operation.
    Admin,
    /// The operator deploys a removed app again.
    Restore { app: usize },
    /// A fault strikes.
    Fault(crate::driver::FaultKind),
    /// The faulty phase ends: everything heals.
    Heal,
    /// The runtime begins a graceful shutdown.
    Shutdown,
}

/// A hash of everything the runtime was given and gave, and the latest lines of it.
#[derive(Debug)]
pub(crate) struct Trace {
    pub(crate) hash: u64,
    pub(crate) lines: VecDeque<String>,
    keep: usize,
}

impl Trace {
    fn new(keep: usize) -> Trace {
        Trace { hash: 0xcbf2_9ce4_8422_2325, lines: VecDeque::new(), keep }
    }

    fn add(&mut self, line: String) {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        if self.keep > 0 {
            if self.lines.len() >= self.keep {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
        }
    }
}

/// What happened in a run, for the report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Calls made.
    pub calls: u64,
    /// Connection resets injected (keepalive expiries included).
    pub resets: u64,
    /// Partitions.
    pub partitions: u64,
    /// Freezes.
    pub freezes: u64,
    /// Crashes.
    pub crashes: u64,
    /// Slow spells.
    pub slow: u64,
    /// Streams whose path died.
    pub blackholes: u64,
    /// Answers sent twice by workers.
    pub duplicates: u64,
    /// Provisions the provisioner failed.
    pub provision_failures: u64,
    /// Worker processes started.
    pub processes: u64,
    /// Admin operations.
    pub admin: u64,
}

/// The world.
#[derive(Debug)]
pub struct World {
    /// What this run is made of.
    pub plan: Plan,
    /// The run's origin on the virtual clock.
    pub t0: Instant,
    /// Now.
    pub now: Instant,
    pub(crate) rng: SimRng,
    /// The system under test.
    pub rt: Runtime,
    agenda: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    pub(crate) nodes: Vec<Node>,
    /// Worker id → its latest process.
    pub(crate) by_id: BTreeMap<String, usize>,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) next_conn: u64,
    pub(crate) next_call: u64,
    /// The tap on the runtime's inputs and outputs.
    pub obs: Observer,
    /// After the heal: faults are off, the workload has stopped.
    pub healed: bool,
    /// Steps taken.
    pub steps: u64,
    pub(crate) trace: Option<Trace>,
    /// What happened.
    pub stats: Stats,
    pub(crate) apps: BTreeMap<String, crate::driver::Deployed>,
    /// When set, every message the runtime writes is kept here (fuzz corpus seeds).
    pub sent: Option<Vec<(ConnId, StreamingMessage)>>,
}

/// Which clock fires next.
enum Next {
    Runtime,
    Worker(usize),
    Agenda,
}

impl World {
    /// A world for this plan: the runtime, its pools' first provisions, external workers
    /// booting, the apps deployed. With `trace`, the last `trace` lines of the runtime's
    /// inputs and outputs are kept (and everything is hashed).
    pub fn new(plan: Plan, trace: Option<usize>) -> World {
        let t0 = switchboard_core::testkit::epoch();
        let mut rng = SimRng::new(plan.seed ^ 0xa5a5_0000_5a5a);
        let rt = Runtime::new(plan.config.clone(), t0);
        let _ = rng.u64();
        let mut w = World {
            t0,
            now: t0,
            rng,
            rt,
            agenda: BTreeMap::new(),
            seq: 0,
            nodes: Vec::new(),
            by_id: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            next_call: 1,
            obs: Observer::new(t0),
            healed: false,
            steps: 0,
            trace: trace.map(Trace::new),
            stats: Stats::default(),
            apps: BTreeMap::new(),
            sent: None,
            plan,
        };
        w.pump_rt();
        w.start_external_workers();
        w.deploy_initial_apps();
        w
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The first broken promise, if any.
    pub fn violation(&self) -> Option<&str> {
        self.obs.violation.as_deref()
    }

    /// The hash of the runtime's inputs and outputs so far (with tracing on).
    pub fn trace_hash(&self) -> Option<u64> {
        self.trace.as_ref().map(|t| t.hash)
    }

    /// The last traced lines.
    pub fn trace_tail(&self) -> Vec<String> {
        self.trace.as_ref().map(|t| t.lines.iter().cloned().collect()).unwrap_or_default()
    }

    pub(crate) fn note(&mut self, what: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let line = format!("{:>12.6} {}", (self.now - self.t0).as_secs_f64(), what());
            trace.add(line);
        }
    }

    /// Reports a broken promise seen outside the runtime's outputs (by a worker).
    pub(crate) fn violate(&mut self, what: String) {
        if self.obs.violation.is_none() {
            self.obs.violation = Some(what);
        }
    }

    // ---- the agenda ----

    pub(crate) fn at(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.agenda.insert((at.max(self.now), self.seq), ev);
    }

    pub(crate) fn after(&mut self, d: Duration, ev: Ev) {
        self.at(self.now + d, ev);
    }

    /// When the next thing happens.
    pub fn next_event(&self) -> Option<Instant> {
        self.next().map(|(t, _)| t)
    }

    fn next(&self) -> Option<(Instant, Next)> {
        let mut best: Option<(Instant, Next)> = self.rt.poll_timeout().map(|t| (t, Next::Runtime));
        for (i, node) in self.nodes.iter().enumerate() {
            if node.frozen {
                continue;
            }
            if let Proc::Conn(p) = &node.proc
                && let Some(t) = p.w.poll_timeout()
                && best.as_ref().is_none_or(|(b, _)| t < *b)
            {
                best = Some((t, Next::Worker(i)));
            }
        }
        if let Some(((t, _), _)) = self.agenda.first_key_value()
            && best.as_ref().is_none_or(|(b, _)| *t < *b)
        {
            best = Some((*t, Next::Agenda));
        }
        best
    }

    /// Does the next thing, if it is due by `limit`; then checks the invariants. False when
    /// nothing is due by then (the clock moves to `limit`).
    pub fn step(&mut self, limit: Instant) -> bool {
        let Some((at, next)) = self.next().filter(|(t, _)| *t <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        self.now = self.now.max(at);
        match next {
            Next::Runtime => {
                self.rt.handle_timeout(self.now);
                self.pump_rt();
            }
            Next::Worker(i) => {
                if let Proc::Conn(p) = &mut self.nodes[i].proc {
                    p.w.handle_timeout(self.now);
                }
                self.pump_conn(i);
            }
            Next::Agenda => {
                let (_, ev) = self.agenda.pop_first().expect("the agenda has a first entry");
                self.handle(ev);
            }
        }
        self.steps += 1;
        self.obs.check_step(self.now, &self.rt);
        true
    }

    /// Steps until `d` of virtual time has passed or a promise is broken.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.violation().is_none() && self.step(end) {}
    }

    pub(crate) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ToRuntime { conn, .. } | Ev::ClosedByWorker { conn } | Ev::RstToRuntime { conn }
                if self.partitioned(conn) =>
            {
                self.hold(conn, ev)
            }
            Ev::ToWorker { conn, .. } | Ev::DialDone { conn } | Ev::ClosedByRuntime { conn, .. }
                if self.partitioned(conn) =>
            {
                self.hold(conn, ev)
            }
            Ev::ToWorker { conn, .. }
            | Ev::DialDone { conn }
            | Ev::ClosedByRuntime { conn, .. }
            | Ev::WorkerReset { conn, .. }
                if self.conns.get(&conn).is_some_and(|c| self.nodes[c.node].frozen) =>
            {
                let node = self.conns[&conn].node;
                self.nodes[node].held.push(ev);
            }
            Ev::Proc { node, .. } if self.nodes[node].frozen => self.nodes[node].held.push(ev),
            Ev::ToRuntime { conn, msg } => {
                if self.conns.get(&conn).is_some_and(|c| c.rt_open) {
                    self.rt_input(Input::Message { conn, msg });
                }
            }
            Ev::ClosedByWorker { conn } => self.end_runtime_side(conn, "stream closed by the worker"),
            Ev::RstToRuntime { conn } => self.end_runtime_side(conn, "connection reset by peer"),
            Ev::ToWorker { conn, msg } => {
                if let Some(node) = self.worker_side(conn) {
                    self.worker_message(node, msg);
                }
            }
            Ev::DialDone { conn } => {
                if let Some(node) = self.worker_side(conn) {
                    self.worker_connected(node);
                }
            }
            Ev::ClosedByRuntime { conn, reason } | Ev::WorkerReset { conn, reason } => {
                if let Some(node) = self.worker_side(conn) {
                    self.conns.get_mut(&conn).expect("checked").wk_open = false;
                    self.nodes[node].conn = None;
                    self.worker_disconnected(node, reason);
                }
            }
            Ev::Keepalive { node, epoch } => self.on_keepalive(node, epoch),
            Ev::StreamKeepalive { conn } => {
                if self.conns.get(&conn).is_some_and(|c| c.blackholed) {
                    self.reset_conn(conn, "keepalive timeout");
                }
            }
            Ev::Proc { node, life, job } => {
                if self.nodes[node].life == life {
                    self.run_job(node, job);
                }
            }
            Ev::Boot { node, life } => self.boot(node, life),
            Ev::Sigterm { node, life } => self.sigterm(node, life),
            Ev::Kill { node, life } => {
                if self.nodes[node].life == life && self.nodes[node].alive() {
                    self.process_died(node, "killed after its grace".into(), true);
                }
            }
            Ev::Report(input) => self.rt_input(*input),
            Ev::Restart { node } => self.restart(node),
            Ev::HealPartition { node, epoch, reset } => {
                if self.nodes[node].part_epoch == epoch && self.nodes[node].partitioned {
                    self.heal_partition(node, reset);
                }
            }
            Ev::Thaw { node, epoch } => {
                if self.nodes[node].freeze_epoch == epoch && self.nodes[node].frozen {
                    self.thaw(node);
                }
            }
            Ev::Unslow { node, epoch } => {
                if self.nodes[node].slow_epoch == epoch {
                    self.nodes[node].slow = 1;
                }
            }
            Ev::CancelCall { call } => {
                if self.obs.call(call).is_some() {
                    self.rt_input(Input::Cancel { call });
                }
            }
            Ev::Call => self.workload_call(),
            Ev::Admin => self.workload_admin(),
            Ev::Restore { app } => {
                let name = self.plan.apps[app].name.clone();
                if self.apps.get(&name).is_some_and(|d| d.removed) && !self.rt.is_shutting_down() {
                    let (scale, timeout) = self.random_scale(app);
                    self.deploy(app, scale, timeout);
                }
            }
            Ev::Fault(kind) => self.fault(kind),
            Ev::Heal => self.heal(),
            Ev::Shutdown => self.begin_shutdown(),
        }
    }

    // ---- the runtime's side ----

    /// Gives the runtime an input and takes its outputs.
    pub(crate) fn rt_input(&mut self, input: Input) {
        self.obs.on_input(&input);
        self.note(|| format!("rt< {input:?}"));
        self.rt.handle_input(self.now, input);
        self.pump_rt();
    }

    /// Takes every output of the runtime and does what it asks, as a shell would.
    pub(crate) fn pump_rt(&mut self) {
        while let Some(out) = self.rt.poll_output() {
            self.obs.on_output(self.now, &out);
            self.note(|| format!("rt> {out:?}"));
            match out {
                Output::Send { conn, msg } => {
                    if let Some(sent) = &mut self.sent {
                        sent.push((conn, (*msg).clone()));
                    }
                    self.runtime_send(conn, msg)
                }
                Output::Close { conn, reason } => {
                    if let Some(c) = self.conns.get_mut(&conn)
                        && c.rt_open
                    {
                        c.rt_open = false;
                        let reason = format!("closed by the runtime: {}", reason.message());
                        self.send_to_worker(conn, |conn| Ev::ClosedByRuntime { conn, reason });
                    }
                }
                Output::Provision(req) => self.provision(req),
                Output::Release { worker, .. } => self.release(&worker.0),
                Output::Event(Event::ResponseDropped { invocation, .. })
                    if self.plan.bugs.forward_late_response =>
                {
                    // Planted bug: a shell that forwards a late duplicate (a second answer to
                    // a call a worker already answered) instead of letting the core drop it.
                    use switchboard_core::OutcomeKind::{Failure, Success};
                    if let Some(&call) = self.obs.inv_calls.get(&invocation)
                        && matches!(self.obs.outcome_of(call), Some(Success | Failure))
                    {
                        self.obs.on_reply(self.now, call, &switchboard_core::Outcome::Timeout);
                    }
                }
                _ => {}
            }
        }
    }

    fn runtime_send(&mut self, conn: ConnId, msg: Box<StreamingMessage>) {
        let Some(c) = self.conns.get(&conn) else { return };
        if !c.rt_open {
            return;
        }
        let mut conn = conn;
        if self.plan.bugs.crossed_streams
            && matches!(msg.content, Some(switchboard_core::proto::Content::InvocationRequest(_)))
            && self.rng.chance(0.002)
        {
            // Planted bug: the shell's stream table hands this message to another stream.
            let others: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(k, c)| **k != conn && c.rt_open && c.wk_open)
                .map(|(k, _)| *k)
                .collect();
            if !others.is_empty() {
                conn = others[self.rng.index(others.len())];
            }
        }
        self.send_to_worker(conn, |conn| Ev::ToWorker { conn, msg });
    }

    /// The runtime's shell learns that a stream ended.
    pub(crate) fn end_runtime_side(&mut self, conn: ConnId, reason: &str) {
        if let Some(c) = self.conns.get_mut(&conn)
            && c.rt_open
        {
            c.rt_open = false;
            self.rt_input(Input::Disconnected { conn, reason: reason.to_owned() });
        }
    }

    /// Lets the harness feed the worker core of `node` (tests).
    pub(crate) fn tell_conn_worker(&mut self, node: usize, input: WorkerInput) {
        if let Proc::Conn(p) = &mut self.nodes[node].proc {
            p.w.handle_input(self.now, input);
        }
        self.pump_conn(node);
    }

    /// A description of where things stand, for failure reports.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "open calls: {} [{}]", self.obs.open_calls(), self.obs.describe_open());
        for p in self.rt.pools() {
            let _ = write!(
                s,
                "\npool {}: idle {} members {} provisioning {} initializing {} failures {}",
                p.key, p.idle, p.members, p.provisioning, p.initializing, p.failures
            );
        }
        for a in self.rt.apps() {
            let _ = write!(
                s,
                "\napp {} v{}: ready {} specializing {} queued {} in flight {} failing {} ({:?})",
                a.name, a.version, a.ready, a.specializing, a.queued, a.in_flight, a.failing, a.last_error
            );
        }
        for w in self.rt.workers(self.now) {
            let _ =
                write!(s, "\nruntime worker {} {} app {:?} in flight {}", w.id, w.state, w.app, w.in_flight);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.alive() || matches!(n.proc, Proc::Booting) {
                let _ = write!(s, "\nprocess {i} {} {}", n.id, n.describe());
            }
        }
        s
    }
}
