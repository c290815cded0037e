//! The connection-mode worker on tokio (`switchboard-worker`): [`core::worker`] decides the
//! protocol, this shell does the I/O. It dials the runtime's `EventStream` with the pool's join
//! token, registers, heartbeats, redials with capped exponential backoff and jitter when the
//! stream drops and resumes its slot with its resume token; on specialization it starts the
//! app's Azure Functions custom handler (host.json `customHandler`) and forwards each invocation
//! to it over HTTP; SIGTERM drains it.
//!
//! One task owns the core. Dials, stream readers, the handler start and the invocations run as
//! tasks that report back on one channel; the loop turns their reports into inputs (dropping
//! those that no longer apply, which is how it keeps the core's contract: `Connected` only for
//! the dial in progress, nothing about a stream after `CloseStream`, no `EnvReloaded` or
//! `FunctionLoaded` for requests made before a `ResetApp`), drains the outputs, and re-arms one
//! timer from `poll_timeout`, reading the clock itself on every wake.
//!
//! [`core::worker`]: switchboard_core::worker

mod cli;
mod client;
mod forward;
mod handler;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::Backoff;
use switchboard_core::worker::{Worker, WorkerConfig, WorkerEvent, WorkerInput, WorkerOutput};
use switchboard_proto::rpc::StreamingMessage;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use cli::WorkerArgs;
use client::{Dialer, Keepalive};
use forward::{Function, HttpClient};
use handler::{AppConfig, Handler, Spec};

/// How a worker runs. [`WorkerOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The runtime's worker endpoint, `http://HOST:PORT`.
    pub runtime: String,
    /// The pool's join token (`join_token` of an `external` pool).
    pub join_token: Option<String>,
    /// `StartStream.worker_id`, kept for the life of the process.
    pub worker_id: String,
    /// Heartbeat period (default 500 ms); the runtime evicts after `max(its heartbeat
    /// timeout, 2 × this)` of silence.
    pub heartbeat: Duration,
    /// Silence from the runtime that means a dead stream (default 2 s).
    pub runtime_silence: Duration,
    /// Longest dial (default 5 s).
    pub connect_timeout: Duration,
    /// Redial delays: `initial` doubling per consecutive failure up to `max`, reset by a
    /// registration (default 10 ms to 5 s).
    pub reconnect: Backoff,
    /// Each delay spread over ± this percentage (default 20).
    pub jitter_percent: u8,
    /// Invocations this worker takes at once, advertised as `SwitchboardConcurrency`; `None`
    /// lets the app's concurrency decide.
    pub concurrency: Option<u32>,
    /// Longest drain after SIGTERM (default 25 s).
    pub drain_grace: Duration,
    /// gRPC message limit, both ways (default 16 MiB, as the runtime's).
    pub max_message_bytes: usize,
    /// HTTP/2 keepalive pings on the stream (default every 1 s, 2 s to answer).
    pub keepalive_interval: Duration,
    /// See `keepalive_interval`.
    pub keepalive_timeout: Duration,
    /// Longest wait for a custom handler to listen on its port (default 20 s).
    pub handler_start_timeout: Duration,
    /// SIGTERM → SIGKILL for the handler process (default 2 s).
    pub kill_grace: Duration,
}

impl WorkerOptions {
    /// Defaults for a worker of the runtime at `runtime`, with a generated id.
    pub fn new(runtime: impl Into<String>) -> Self {
        WorkerOptions {
            runtime: runtime.into(),
            join_token: None,
            worker_id: generated_worker_id(),
            heartbeat: Duration::from_millis(500),
            runtime_silence: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            reconnect: Backoff { initial: Duration::from_millis(10), max: Duration::from_secs(5) },
            jitter_percent: 20,
            concurrency: None,
            drain_grace: Duration::from_secs(25),
            max_message_bytes: 16 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(2),
            handler_start_timeout: Duration::from_secs(20),
            kill_grace: Duration::from_secs(2),
        }
    }

    fn core(&self) -> WorkerConfig {
        let mut seed = [0u8; 32];
        let _ = getrandom::fill(&mut seed);
        let mut capabilities = BTreeMap::new();
        if let Some(n) = self.concurrency {
            capabilities.insert(switchboard_core::worker::cap::CONCURRENCY.to_owned(), n.to_string());
        }
        WorkerConfig {
            seed,
            join_token: self.join_token.clone(),
            heartbeat_interval: self.heartbeat,
            runtime_silence: self.runtime_silence,
            connect_timeout: self.connect_timeout,
            reconnect: self.reconnect,
            jitter_percent: self.jitter_percent,
            capabilities,
            drain_grace: self.drain_grace,
            ..WorkerConfig::new(self.worker_id.clone())
        }
    }
}

/// `worker-` and 16 random hex digits.
pub fn generated_worker_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("worker-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// Runs a worker until it exits: drained (SIGTERM or SIGINT; a second signal exits at once),
/// terminated by the runtime, or unable to start. Returns the process exit code: 0 when
/// everything it took was finished and delivered, else 1.
pub async fn run_worker(options: WorkerOptions) -> i32 {
    let keepalive = Keepalive { interval: options.keepalive_interval, timeout: options.keepalive_timeout };
    let dialer =
        match Dialer::new(&options.runtime, options.connect_timeout, keepalive, options.max_message_bytes) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                tracing::error!("{e}");
                return 2;
            }
        };
    let (tx, rx) = mpsc::unbounded_channel();
    let core = Worker::new(options.core(), Instant::now());
    tracing::info!(worker = %options.worker_id, runtime = %options.runtime, "switchboard worker starting");
    let shell = Shell {
        core,
        dialer,
        opts: options,
        tx,
        rx,
        dial: 0,
        dialing: None,
        streams: 0,
        link: None,
        app_gen: 0,
        app: None,
        reloading: None,
        running: HashMap::new(),
        client: forward::http_client(),
        pending: VecDeque::new(),
        exit: None,
        signals: 0,
    };
    shell.run().await
}

/// What the tasks report to the loop.
enum Ev {
    /// Dial number `dial` finished.
    Dialed { dial: u64, result: Result<client::Stream, String> },
    /// A message on stream number `stream`.
    Inbound { stream: u64, msg: Box<StreamingMessage> },
    /// Stream number `stream` ended.
    Closed { stream: u64, reason: String },
    /// The handler of app generation `app` started (or not).
    Reloaded { app: u64, result: Result<App, String> },
    /// An invocation of app generation `app` finished.
    Done { app: u64, done: forward::Done },
}

/// The app this worker is specialized for.
struct App {
    handler: Arc<Handler>,
    config: AppConfig,
    functions: HashMap<String, Arc<Function>>,
}

/// The open stream.
struct Link {
    id: u64,
    tx: mpsc::UnboundedSender<StreamingMessage>,
    reader: JoinHandle<()>,
}

struct Shell {
    core: Worker,
    dialer: Arc<Dialer>,
    opts: WorkerOptions,
    tx: mpsc::UnboundedSender<Ev>,
    rx: mpsc::UnboundedReceiver<Ev>,
    /// Number of the latest dial; a report from an older one is stale.
    dial: u64,
    dialing: Option<JoinHandle<()>>,
    /// Streams opened so far (numbers the link).
    streams: u64,
    link: Option<Link>,
    /// Bumped by `ResetApp`: reports from before it are stale.
    app_gen: u64,
    app: Option<App>,
    reloading: Option<JoinHandle<()>>,
    running: HashMap<String, JoinHandle<()>>,
    client: HttpClient,
    /// Inputs the loop itself produced while carrying out outputs.
    pending: VecDeque<WorkerInput>,
    exit: Option<(i32, String)>,
    signals: u32,
}

impl Shell {
    async fn run(mut self) -> i32 {
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::error!("cannot install signal handlers");
                return 2;
            }
        };
        loop {
            self.pump();
            if let Some((code, reason)) = self.exit.take() {
                return self.finish(code, reason).await;
            }
            let deadline = self.core.poll_timeout();
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(ev) = self.rx.recv() => self.on_event(ev),
                _ = timer => {}
                _ = term.recv() => self.on_signal("SIGTERM"),
                _ = int.recv() => self.on_signal("SIGINT"),
            }
            // The clock is read here, not trusted from the sleep; early calls do nothing.
            self.core.handle_timeout(Instant::now());
        }
    }

    /// Drains the core's outputs, feeding back the inputs that carrying them out produced.
    fn pump(&mut self) {
        loop {
            while let Some(out) = self.core.poll_output() {
                self.carry_out(out);
            }
            match self.pending.pop_front() {
                Some(input) => self.core.handle_input(Instant::now(), input),
                None => break,
            }
        }
    }

    fn on_signal(&mut self, name: &str) {
        self.signals += 1;
        if self.signals == 1 {
            tracing::info!(
                signal = name,
                "draining: finishing what is in flight (a second signal exits at once)"
            );
            self.pending.push_back(WorkerInput::Drain);
        } else {
            self.exit = Some((1, format!("{name} received again while draining")));
        }
    }

    fn carry_out(&mut self, out: WorkerOutput) {
        match out {
            WorkerOutput::Connect { meta } => {
                self.dial += 1;
                if let Some(old) = self.dialing.take() {
                    old.abort();
                }
                let (dial, dialer, tx) = (self.dial, Arc::clone(&self.dialer), self.tx.clone());
                self.dialing = Some(tokio::spawn(async move {
                    let result = dialer.dial(&meta).await;
                    let _ = tx.send(Ev::Dialed { dial, result });
                }));
            }
            WorkerOutput::Send(msg) => match &self.link {
                // A failed send means the stream is ending; its reader reports that.
                Some(link) => {
                    let _ = link.tx.send(*msg);
                }
                None => tracing::debug!("a message for a stream that is gone"),
            },
            WorkerOutput::CloseStream => {
                if let Some(dialing) = self.dialing.take() {
                    dialing.abort();
                    self.dial += 1;
                }
                if let Some(link) = self.link.take() {
                    link.reader.abort();
                }
            }
            WorkerOutput::ReloadEnvironment { mut environment, app_directory } => {
                environment.insert("SWITCHBOARD_WORKER_ID".into(), self.opts.worker_id.clone());
                let (app, tx, opts) = (self.app_gen, self.tx.clone(), self.opts.clone());
                self.reloading = Some(tokio::spawn(async move {
                    let result = start_app(PathBuf::from(app_directory), environment, &opts).await;
                    let _ = tx.send(Ev::Reloaded { app, result });
                }));
            }
            WorkerOutput::LoadFunction { function_id, metadata } => {
                let result = match &mut self.app {
                    Some(app) => Function::new(&metadata, &app.config).map(|f| {
                        tracing::info!(function = %metadata.name, forwarded = f.forwards(), "function loaded");
                        app.functions.insert(function_id.clone(), Arc::new(f));
                    }),
                    None => Err("no app environment".to_owned()),
                };
                self.pending.push_back(WorkerInput::FunctionLoaded { function_id, result });
            }
            WorkerOutput::Invoke(req) => {
                let found = self.app.as_ref().and_then(|app| {
                    Some((Arc::clone(&app.handler), Arc::clone(app.functions.get(&req.function_id)?)))
                });
                let Some((handler, function)) = found else {
                    let why = format!("function {:?} is not loaded on this worker", req.function_id);
                    let response = Box::new(forward::failure(req.invocation_id, why));
                    return self.pending.push_back(WorkerInput::InvocationDone { response });
                };
                let id = req.invocation_id.clone();
                let (app, tx, client) = (self.app_gen, self.tx.clone(), self.client.clone());
                let task = tokio::spawn(async move {
                    let done = forward::invoke(&client, &handler, &function, *req).await;
                    let _ = tx.send(Ev::Done { app, done });
                });
                self.running.insert(id, task);
            }
            WorkerOutput::Cancel { invocation_id } => {
                if let Some(task) = self.running.remove(&invocation_id) {
                    task.abort();
                    let response = Box::new(forward::cancelled(invocation_id));
                    self.pending.push_back(WorkerInput::InvocationDone { response });
                }
            }
            WorkerOutput::ResetApp => self.reset_app(),
            WorkerOutput::Exit { code, reason } => self.exit = Some((code, reason)),
            WorkerOutput::Event(event) => log_event(&event),
            other => tracing::debug!(?other, "output not handled by this shell"),
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::Dialed { dial, result } => {
                if dial != self.dial || self.dialing.take().is_none() {
                    return; // aborted or superseded: dropping the stream closes it
                }
                match result {
                    Ok(stream) => {
                        self.streams += 1;
                        let id = self.streams;
                        let client::Stream { tx, inbound, channel } = stream;
                        let reader = tokio::spawn(read(id, inbound, channel, self.tx.clone()));
                        self.link = Some(Link { id, tx, reader });
                        self.pending.push_back(WorkerInput::Connected);
                    }
                    Err(error) => self.pending.push_back(WorkerInput::ConnectFailed { error }),
                }
            }
            Ev::Inbound { stream, msg } => {
                if self.link.as_ref().is_some_and(|l| l.id == stream) {
                    self.pending.push_back(WorkerInput::Message(msg));
                }
            }
            Ev::Closed { stream, reason } => {
                if self.link.as_ref().is_some_and(|l| l.id == stream) {
                    self.link = None;
                    self.pending.push_back(WorkerInput::Disconnected { reason });
                }
            }
            Ev::Reloaded { app, result } => {
                if app != self.app_gen || self.reloading.take().is_none() {
                    if let Ok(stale) = result {
                        tokio::spawn(async move { stale.handler.stop().await });
                    }
                    return;
                }
                let result = result.map(|a| self.app = Some(a));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "the app's custom handler did not start");
                }
                self.pending.push_back(WorkerInput::EnvReloaded { result });
            }
            Ev::Done { app, done } => {
                if app != self.app_gen || self.running.remove(&done.response.invocation_id).is_none() {
                    return; // cancelled, or from before a reset
                }
                for log in done.logs {
                    self.pending.push_back(WorkerInput::Log(Box::new(log)));
                }
                let response = Box::new(done.response);
                self.pending.push_back(WorkerInput::InvocationDone { response });
            }
        }
    }

    /// The slot is gone: stop the handler and forget the app and its work.
    fn reset_app(&mut self) {
        self.app_gen += 1;
        if let Some(task) = self.reloading.take() {
            task.abort();
        }
        for (_, task) in self.running.drain() {
            task.abort();
        }
        if let Some(app) = self.app.take() {
            tokio::spawn(async move { app.handler.stop().await });
        }
    }

    /// Flushes and closes the stream, stops the handler, returns the exit code.
    async fn finish(mut self, code: i32, reason: String) -> i32 {
        if code == 0 {
            tracing::info!(code, %reason, "worker exiting");
        } else {
            tracing::warn!(code, %reason, "worker exiting");
        }
        if let Some(dialing) = self.dialing.take() {
            dialing.abort();
        }
        if let Some(Link { tx, mut reader, .. }) = self.link.take() {
            // Ending our half sends what is queued, then END_STREAM; the runtime then ends its
            // half. Give that a moment, no more.
            drop(tx);
            if tokio::time::timeout(Duration::from_secs(1), &mut reader).await.is_err() {
                reader.abort();
            }
        }
        for (_, task) in self.running.drain() {
            task.abort();
        }
        if let Some(app) = self.app.take() {
            let bound = self.opts.kill_grace + Duration::from_secs(1);
            let _ = tokio::time::timeout(bound, app.handler.stop()).await;
        }
        code
    }
}

/// Reads stream `id` until it ends, then reports why.
async fn read(
    id: u64,
    mut inbound: tonic::Streaming<StreamingMessage>,
    _channel: tonic::transport::Channel,
    tx: mpsc::UnboundedSender<Ev>,
) {
    let reason = loop {
        match inbound.message().await {
            Ok(Some(msg)) => {
                if tx.send(Ev::Inbound { stream: id, msg: Box::new(msg) }).is_err() {
                    return;
                }
            }
            Ok(None) => break "stream ended by the runtime".to_owned(),
            Err(status) => break format!("{:?}: {}", status.code(), status.message()),
        }
    };
    let _ = tx.send(Ev::Closed { stream: id, reason });
}

/// Specialization: read the app's host.json and start its custom handler.
async fn start_app(dir: PathBuf, env: BTreeMap<String, String>, opts: &WorkerOptions) -> Result<App, String> {
    let config = handler::read_app(&dir)?;
    let spec = Spec::new(&dir, &config.handler, env, opts.handler_start_timeout, opts.kill_grace);
    let label =
        dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let handler = Handler::start(spec, label).await?;
    Ok(App { handler, config, functions: HashMap::new() })
}

fn log_event(event: &WorkerEvent) {
    match event {
        WorkerEvent::Connected => tracing::debug!("connected"),
        WorkerEvent::Registered => tracing::info!("registered"),
        WorkerEvent::Resumed { flushed } => tracing::info!(flushed, "resumed"),
        WorkerEvent::SlotLost { running, dropped_responses } => {
            tracing::warn!(
                running,
                dropped_responses,
                "the runtime did not keep this worker's slot: app reset"
            )
        }
        WorkerEvent::Disconnected { reason } => tracing::warn!(%reason, "disconnected"),
        WorkerEvent::ConnectFailed { error } => tracing::warn!(%error, "connect failed"),
        WorkerEvent::Reconnecting { attempt, after } => {
            tracing::info!(attempt, after_ms = after.as_millis() as u64, "reconnecting")
        }
        WorkerEvent::Draining { cause, grace, running, undelivered } => {
            tracing::info!(?cause, grace_ms = grace.as_millis() as u64, running, undelivered, "draining")
        }
        WorkerEvent::RequestRefused { invocation, reason } => {
            tracing::warn!(%invocation, %reason, "invocation refused")
        }
        WorkerEvent::Unexpected { what } => tracing::warn!(%what, "unexpected"),
        other => tracing::debug!(?other, "worker event"),
    }
}
