//! The runtime (host side of FunctionRpc): admission, pools, apps, specialization, routing,
//! liveness and settling, as one deterministic state machine.

mod admission;
mod apps;
mod info;
mod liveness;
mod messages;
mod peers;
mod pool;
mod registry;
mod router;
mod shutdown;
mod specialize;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use rustc_hash::FxHashMap;
use switchboard_proto::rpc::StreamingMessage;

use crate::config::Config;
use crate::event::Event;
use crate::ids::{CallId, ConnId};
use crate::io::{Input, Output};
use crate::rng::Rng;
use crate::timer::Timers;

pub use info::{AppInfo, Counters, PoolInfo, WorkerInfo};
/// Shared with the connection-mode worker (`crate::worker`), the other end of the protocol.
pub(crate) use messages::content_name;
pub use registry::cap;

use apps::App;
use pool::Pool;
use registry::{Conn, Worker};
use router::Inv;

/// Internal key of a worker (never reused within a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct WKey(u64);

/// Internal key of an app (never reused within a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct AKey(u64);

/// Internal key of an invocation (never reused within a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct IKey(u64);

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// A stream must send `StartStream`.
    ConnStart(ConnId),
    /// A provisioned worker id expires.
    Ticket(u64),
    /// The worker's current init or specialization phase must finish.
    Phase(WKey),
    /// Heartbeat or status-probe check (lazy: re-armed from `last_seen` when it fires).
    Liveness(WKey),
    /// A disconnected worker's resume grace ends.
    Resume(WKey),
    /// A draining worker must be done.
    Drain(WKey),
    /// An idle ready worker may be released.
    Idle(WKey),
    /// An invocation's deadline (queue wait while queued, function timeout once sent).
    Deadline(IKey),
    /// An invocation waiting to be retried.
    Retry(IKey),
    /// A pool's provisioning backoff ends.
    Pool(usize),
    /// An app's failure backoff ends.
    App(AKey),
    /// The earliest per-address admission record expires.
    Peers,
}

/// The Switchboard runtime core.
///
/// Call protocol: construct with [`Runtime::new`]; feed events with [`Runtime::handle_input`]
/// and expired deadlines with [`Runtime::handle_timeout`]; after any `handle_*` (or admin
/// method), drain [`Runtime::poll_output`] until `None`, then re-arm one timer from
/// [`Runtime::poll_timeout`]. `now` never goes backwards. Calling `handle_timeout` early does
/// nothing, so shells may call it freely. The same inputs in the same order (with the same
/// seed) give the same outputs.
///
/// `Debug` shows sizes only: the runtime holds app settings, join and resume tokens.
pub struct Runtime {
    cfg: Config,
    rng: Rng,
    now: Instant,
    out: VecDeque<Output>,
    timers: Timers<Timer>,
    conns: FxHashMap<ConnId, Conn>,
    workers: FxHashMap<WKey, Worker>,
    worker_ids: FxHashMap<String, WKey>,
    tickets: FxHashMap<String, admission::Ticket>,
    ticket_ids: BTreeMap<u64, String>,
    peers: peers::Peers,
    pools: Vec<Pool>,
    apps: FxHashMap<AKey, App>,
    app_names: FxHashMap<String, AKey>,
    invs: FxHashMap<IKey, Inv>,
    calls: FxHashMap<CallId, IKey>,
    next_key: u64,
    id_prefix: u64,
    shutting_down: bool,
    shutdown_reported: bool,
    counters: Counters,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("now", &self.now)
            .field("streams", &self.conns.len())
            .field("workers", &self.workers.len())
            .field("tickets", &self.tickets.len())
            .field("pools", &self.pools.len())
            .field("apps", &self.apps.len())
            .field("invocations", &self.invs.len())
            .field("outputs", &self.out.len())
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the configured pools and no apps. Pools below `min_idle` ask for
    /// provisions right away (see [`Runtime::poll_output`]).
    pub fn new(cfg: Config, now: Instant) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let id_prefix = rng.u64();
        let pools = Vec::new();
        let mut rt = Runtime {
            rng,
            now,
            out: VecDeque::new(),
            timers: Timers::new(),
            conns: FxHashMap::default(),
            workers: FxHashMap::default(),
            worker_ids: FxHashMap::default(),
            tickets: FxHashMap::default(),
            ticket_ids: BTreeMap::new(),
            peers: peers::Peers::default(),
            pools,
            apps: FxHashMap::default(),
            app_names: FxHashMap::default(),
            invs: FxHashMap::default(),
            calls: FxHashMap::default(),
            next_key: 1,
            id_prefix,
            shutting_down: false,
            shutdown_reported: false,
            counters: Counters::default(),
            cfg,
        };
        for spec in rt.cfg.pools.clone() {
            // Config pools are validated by `upsert_pool`; a bad one is skipped with an event-free
            // error because the shell validates its config before building the core.
            let _ = rt.upsert_pool(now, spec);
        }
        rt
    }

    /// Feeds one event from outside.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.advance(now);
        match input {
            Input::Connected { conn, peer, meta } => self.on_connected(conn, peer, meta),
            Input::Message { conn, msg } => self.on_message(conn, *msg),
            Input::Malformed { conn, error } => self.on_malformed(conn, error),
            Input::Disconnected { conn, reason } => self.on_disconnected(conn, reason),
            Input::Invoke(invoke) => self.on_invoke(invoke),
            Input::Cancel { call } => self.on_cancel(call),
            Input::ProvisionFailed { worker, error } => self.on_provision_failed(worker, error),
            Input::WorkerExited { worker, status } => self.on_worker_exited(worker, status),
        }
        self.check_shutdown();
    }

    /// Processes every deadline due at `now`. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while let Some(timer) = self.timers.pop_due(self.now) {
            match timer {
                Timer::ConnStart(conn) => self.on_conn_start_timeout(conn),
                Timer::Ticket(seq) => self.on_ticket_expired(seq),
                Timer::Phase(w) => self.on_phase_timeout(w),
                Timer::Liveness(w) => self.on_liveness_timer(w),
                Timer::Resume(w) => self.on_resume_expired(w),
                Timer::Drain(w) => self.on_drain_timeout(w),
                Timer::Idle(w) => self.on_idle_timer(w),
                Timer::Deadline(i) => self.on_deadline(i),
                Timer::Retry(i) => self.on_retry_timer(i),
                Timer::Pool(p) => self.reconcile_pool(p),
                Timer::App(a) => self.on_app_backoff_over(a),
                Timer::Peers => self.on_peers_timer(),
            }
        }
        self.check_shutdown();
    }

    /// The next thing for the shell to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Runtime::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn advance(&mut self, now: Instant) {
        // Time never goes backwards; a shell that passes an older instant gets the newer one.
        if now > self.now {
            self.now = now;
        }
    }

    fn key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    fn emit(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn send(&mut self, conn: ConnId, msg: StreamingMessage) {
        self.out.push_back(Output::Send { conn, msg: Box::new(msg) });
    }
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_security;
#[cfg(test)]
mod tests_worker_mode;
