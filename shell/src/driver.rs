//! The driver: one task owns the core. Handlers send [`Command`]s on a channel; the loop feeds
//! them to the core, carries out its outputs (frames to workers, replies to callers, provision
//! and release requests, events), and re-arms a single timer from `poll_timeout`, reading the
//! clock itself on wake rather than trusting the sleep.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::future::{Either, select};
use switchboard_core::proto::rpc::StreamingMessage;
use switchboard_core::{
    CallId, CloseReason, ConnId, ConnMeta, Event, Input, Invoke, Outcome, Output, Runtime as Core, WorkerId,
    WorkerInfo,
};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::provision::Provisioners;
use crate::rt::Runtime;
use crate::telemetry::Telemetry;

/// Frames to one worker stream (the gRPC response stream).
pub type WorkerTx = mpsc::Sender<Result<StreamingMessage, Status>>;

/// A closure run on the driver with the core, for admin operations and queries.
pub type CoreFn = Box<dyn FnOnce(&mut Core, Instant) + Send>;

/// What handlers ask of the driver.
pub enum Command {
    /// A worker stream opened; frames for it go to `tx`.
    Connected {
        /// The stream's number.
        conn: ConnId,
        /// Peer address.
        peer: String,
        /// Extension metadata.
        meta: ConnMeta,
        /// Where its frames go.
        tx: WorkerTx,
    },
    /// Any other input for the core.
    Input(Input),
    /// Run a function; the outcome goes to `reply`.
    Invoke {
        /// The call (its `call` id comes from [`Handle::next_call`]).
        invoke: Invoke,
        /// Where the outcome goes.
        reply: oneshot::Sender<Outcome>,
    },
    /// Run a closure with the core (admin operations, queries).
    WithCore(CoreFn),
    /// List the workers, each with its process id when a provisioner started it locally.
    Workers {
        /// Where the list goes.
        reply: oneshot::Sender<Vec<(WorkerInfo, Option<u32>)>>,
    },
    /// Shut down gracefully; `done` fires when every worker is gone.
    Shutdown {
        /// Longest wait for in-flight calls.
        within: std::time::Duration,
        /// Fires when finished.
        done: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Connected { conn, peer, .. } => write!(f, "Connected({conn}, {peer})"),
            Command::Input(input) => write!(f, "Input({input:?})"),
            Command::Invoke { invoke, .. } => write!(f, "Invoke({})", invoke.call),
            Command::WithCore(_) => f.write_str("WithCore"),
            Command::Workers { .. } => f.write_str("Workers"),
            Command::Shutdown { .. } => f.write_str("Shutdown"),
        }
    }
}

/// A cheap, clonable way to reach the driver.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Command>,
    ids: Arc<Ids>,
}

#[derive(Debug, Default)]
struct Ids {
    conn: AtomicU64,
    call: AtomicU64,
}

/// The driver has stopped (shut down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the runtime is stopped")]
pub struct Stopped;

impl Handle {
    /// Sends a command; fails only once the driver has stopped.
    pub fn send(&self, cmd: Command) -> Result<(), Stopped> {
        self.tx.send(cmd).map_err(|_| Stopped)
    }

    /// A fresh stream number.
    pub fn next_conn(&self) -> ConnId {
        ConnId(self.ids.conn.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A fresh call number.
    pub fn next_call(&self) -> CallId {
        CallId(self.ids.call.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Runs `f` with the core on the driver and returns its result.
    pub async fn with_core<T, F>(&self, f: F) -> Result<T, Stopped>
    where
        T: Send + 'static,
        F: FnOnce(&mut Core, Instant) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Command::WithCore(Box::new(move |core, now| {
            let _ = tx.send(f(core, now));
        })))?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every worker, oldest first, with the pid of its process when it was started locally.
    pub async fn workers(&self) -> Result<Vec<(WorkerInfo, Option<u32>)>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Workers { reply })?;
        rx.await.map_err(|_| Stopped)
    }

    /// Runs a call and waits for its outcome. If this future is dropped before the outcome
    /// arrives (the HTTP client went away), the call is cancelled.
    pub async fn invoke(&self, mut invoke: Invoke) -> Result<Outcome, Stopped> {
        let call = self.next_call();
        invoke.call = call;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Invoke { invoke, reply })?;
        let mut guard = CancelOnDrop { handle: self, call: Some(call) };
        let outcome = rx.await.map_err(|_| Stopped);
        guard.call = None;
        outcome
    }

    /// Starts a graceful shutdown and waits until it is done.
    pub async fn shutdown(&self, within: std::time::Duration) {
        let (done, rx) = oneshot::channel();
        if self.send(Command::Shutdown { within, done }).is_ok() {
            let _ = rx.await;
        }
    }
}

struct CancelOnDrop<'a> {
    handle: &'a Handle,
    call: Option<CallId>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call {
            let _ = self.handle.send(Command::Input(Input::Cancel { call }));
        }
    }
}

/// Creates a driver handle and its command receiver.
pub fn channel() -> (Handle, mpsc::UnboundedReceiver<Command>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Handle { tx, ids: Arc::new(Ids::default()) }, rx)
}

/// The task that owns the core.
pub struct Driver<R: Runtime> {
    rt: R,
    core: Core,
    rx: mpsc::UnboundedReceiver<Command>,
    conns: HashMap<ConnId, WorkerTx>,
    calls: HashMap<CallId, oneshot::Sender<Outcome>>,
    provisioners: Provisioners,
    telemetry: Telemetry,
    /// Inputs the driver itself produced while carrying out outputs.
    pending: VecDeque<Input>,
    shutdown: Option<(Instant, oneshot::Sender<()>)>,
    shutdown_complete: bool,
}

impl<R: Runtime> std::fmt::Debug for Driver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("conns", &self.conns.len()).field("calls", &self.calls.len()).finish()
    }
}

/// Commands handled per wake before outputs are flushed.
const BATCH: usize = 256;

impl<R: Runtime> Driver<R> {
    /// A driver for `core`.
    pub fn new(
        rt: R,
        core: Core,
        rx: mpsc::UnboundedReceiver<Command>,
        provisioners: Provisioners,
        telemetry: Telemetry,
    ) -> Self {
        Driver {
            rt,
            core,
            rx,
            conns: HashMap::new(),
            calls: HashMap::new(),
            provisioners,
            telemetry,
            pending: VecDeque::new(),
            shutdown: None,
            shutdown_complete: false,
        }
    }

    /// Runs until shut down (or until every handle is dropped).
    pub async fn run(mut self) {
        self.flush();
        let mut sleep: Option<(Instant, Pin<Box<dyn hyper::rt::Sleep>>)> = None;
        loop {
            while let Some(input) = self.pending.pop_front() {
                self.core.handle_input(Instant::now(), input);
                self.flush();
            }
            if self.shutdown_complete {
                break;
            }
            let deadline = match (self.core.poll_timeout(), self.shutdown.as_ref().map(|s| s.0)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let woke = match deadline {
                None => Either::Left(self.rx.recv().await),
                Some(at) => {
                    if sleep.as_ref().is_none_or(|(t, _)| *t != at) {
                        sleep = Some((at, self.rt.sleep_until(at)));
                    }
                    let timer = &mut sleep.as_mut().expect("just set").1;
                    match select(pin!(self.rx.recv()), timer).await {
                        Either::Left((cmd, _)) => Either::Left(cmd),
                        Either::Right(((), _)) => Either::Right(()),
                    }
                }
            };
            match woke {
                Either::Left(None) => break,
                Either::Left(Some(cmd)) => {
                    self.handle(cmd);
                    for _ in 1..BATCH {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Either::Right(()) => sleep = None,
            }
            let now = Instant::now();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.flush();
            if self.shutdown.as_ref().is_some_and(|(t, _)| *t <= now) {
                tracing::warn!(
                    open_calls = self.core.open_calls(),
                    "shutdown deadline passed; stopping workers"
                );
                self.shutdown_complete = true;
            }
        }
        self.finish().await;
    }

    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Connected { conn, peer, meta, tx } => {
                self.conns.insert(conn, tx);
                self.core.handle_input(now, Input::Connected { conn, peer, meta });
            }
            Command::Input(input) => {
                if let Input::WorkerExited { worker, .. } = &input {
                    self.provisioners.forget(worker);
                }
                self.core.handle_input(now, input);
            }
            Command::Invoke { invoke, reply } => {
                self.calls.insert(invoke.call, reply);
                self.core.handle_input(now, Input::Invoke(invoke));
            }
            Command::WithCore(f) => f(&mut self.core, now),
            Command::Workers { reply } => {
                let workers = self.core.workers(now);
                let listed = workers
                    .into_iter()
                    .map(|w| {
                        let pid = self.provisioners.pid(&WorkerId(w.id.clone()));
                        (w, pid)
                    })
                    .collect();
                let _ = reply.send(listed);
            }
            Command::Shutdown { within, done } => {
                tracing::info!(open_calls = self.core.open_calls(), "shutting down");
                self.shutdown = Some((now + within, done));
                self.core.begin_shutdown(now);
            }
        }
    }

    /// Carries out everything the core asked for.
    fn flush(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send { conn, msg } => self.send(conn, *msg),
                Output::Close { conn, reason } => {
                    if let Some(tx) = self.conns.remove(&conn) {
                        let _ = tx.try_send(Err(status(&reason)));
                    }
                }
                Output::Reply { call, outcome } => {
                    if let Some(reply) = self.calls.remove(&call) {
                        let _ = reply.send(outcome);
                    }
                }
                Output::Provision(request) => self.provisioners.provision(request),
                Output::Release { worker, reason } => self.provisioners.release(&worker, &reason),
                Output::Event(event) => {
                    if event == Event::ShutdownComplete && self.shutdown.is_some() {
                        self.shutdown_complete = true;
                    }
                    self.telemetry.event(&event);
                }
                Output::Log(log) => self.telemetry.log(&log),
                // Not printed: a future output may carry what must not reach a log (settings).
                _ => tracing::debug!("unhandled output of a newer core"),
            }
        }
    }

    fn send(&mut self, conn: ConnId, msg: StreamingMessage) {
        let Some(tx) = self.conns.get(&conn) else { return };
        match tx.try_send(Ok(msg)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The worker is not reading: waiting would stall every other worker and app.
                self.conns.remove(&conn);
                let reason = "outbound queue full: the worker is not reading its stream".into();
                self.pending.push_back(Input::Disconnected { conn, reason });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The stream task is gone; its Disconnected input is on its way.
            }
        }
    }

    async fn finish(mut self) {
        for (_, tx) in self.conns.drain() {
            let _ = tx.try_send(Err(Status::unavailable("the runtime is shutting down")));
        }
        for (_, reply) in self.calls.drain() {
            // Only reachable when the shutdown deadline cut calls short: they still get an answer.
            let _ = reply.send(Outcome::Unavailable {
                reason: switchboard_core::Unavailable::ShuttingDown,
                retry_after: std::time::Duration::from_secs(1),
            });
        }
        self.provisioners.shutdown().await;
        if let Some((_, done)) = self.shutdown.take() {
            let _ = done.send(());
        }
        tracing::info!("runtime stopped");
    }
}

/// The gRPC status that ends a stream for a close reason.
fn status(reason: &CloseReason) -> Status {
    match reason {
        CloseReason::Unauthenticated(m) => Status::unauthenticated(m.clone()),
        CloseReason::PermissionDenied(m) => Status::permission_denied(m.clone()),
        CloseReason::ProtocolViolation(m) => Status::failed_precondition(m.clone()),
        CloseReason::Timeout(m) => Status::deadline_exceeded(m.clone()),
        CloseReason::Released(m) => Status::ok(m.clone()),
        CloseReason::RateLimited(m) => Status::resource_exhausted(m.clone()),
    }
}

/// Spawns a task that reports a provisioned process's exit to the driver.
pub fn report_exit<R: Runtime>(
    rt: &R,
    handle: Handle,
    worker: WorkerId,
    exit: impl Future<Output = String> + Send + 'static,
) {
    rt.spawn(async move {
        let status = exit.await;
        let _ = handle.send(Command::Input(Input::WorkerExited { worker, status }));
    });
}
