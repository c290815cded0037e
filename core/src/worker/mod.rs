//! The connection-mode worker (the other end of FunctionRpc), as one deterministic state
//! machine with no I/O, no clock, no threads and no ambient randomness.
//!
//! A `switchboard worker` process dials the runtime, presents its pool's join token, registers,
//! heartbeats, notices a dead stream, redials with capped exponential backoff and seeded
//! jitter, and resumes its slot with the resume token the runtime gave it. Invocations keep
//! running while it is disconnected; their responses are kept and delivered after the resume.
//! The functions themselves run outside the core (the shell forwards them to an Azure Functions
//! custom handler); this core only decides protocol.
//!
//! Delivery: the runtime echoes each `WorkerHeartbeat` in order, so an echo confirms every
//! response written before that heartbeat. Responses not yet confirmed when a stream dies are
//! kept; if the runtime re-sends their invocation after a resume (it re-sends all it still
//! holds), the response was lost and is sent again; the function is never run twice.
//!
//! Leaving: a local drain (SIGTERM) tells a runtime that speaks connection mode with
//! `WorkerActionResponse{Restart}`, reason [`cap::LEAVE_DRAINING`] (again after each resume),
//! so it routes no more work here and releases the slot once what it sent is answered; work
//! that crossed the signal on the wire is run, not refused. A drain that runs out of grace says
//! [`cap::LEAVE_EXITING`] before exiting, so the runtime settles what is left at once instead
//! of keeping the slot for a resume. A slot is not resumed mid-specialization: a stream lost
//! during the env reload or the loads costs the slot (the runtime specializes another worker).

mod app;
mod config;
mod connection;
mod drain;
mod invocations;
mod io;
mod ledger;
mod messages;

use std::collections::VecDeque;
use std::time::Instant;

use switchboard_proto::Content;
use switchboard_proto::rpc::StreamingMessage;

use crate::rng::Rng;
use crate::timer::Timers;

/// Capability keys and leave reasons both ends of connection mode use.
pub use crate::runtime::cap;
pub use config::WorkerConfig;
pub use io::{DrainCause, ResponseDropReason, WorkerEvent, WorkerInput, WorkerOutput};

use app::AppState;
use drain::Drain;
use ledger::Ledger;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// The dial in progress must finish.
    Dial,
    /// The backoff before the next dial ends.
    Redial,
    /// The next heartbeat is due.
    Heartbeat,
    /// The runtime may have gone silent (lazy: re-armed from `last_heard`).
    Silence,
    /// The drain grace ends.
    Drain,
}

/// Where the connection to the runtime stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No stream; a redial may be scheduled.
    Down,
    /// `Connect` issued; waiting for `Connected` or `ConnectFailed`.
    Dialing,
    /// Stream open, `StartStream` sent; waiting for `WorkerInitRequest`.
    Handshaking,
    /// Init answered: the runtime holds a slot for this worker.
    Registered,
    /// `Exit` was issued; nothing more happens.
    Exited,
}

/// The connection-mode worker core.
///
/// Call protocol (the same as [`crate::Runtime`]): construct with [`Worker::new`], which asks
/// for the first dial; feed events with [`Worker::handle_input`] and expired deadlines with
/// [`Worker::handle_timeout`]; after any `handle_*`, drain [`Worker::poll_output`] until `None`,
/// then re-arm one timer from [`Worker::poll_timeout`]. `now` never goes backwards. Calling
/// `handle_timeout` early does nothing, so shells may call it freely. The same inputs in the
/// same order (with the same seed) give the same outputs. After [`WorkerOutput::Exit`] every
/// input is ignored.
#[derive(Debug)]
pub struct Worker {
    cfg: WorkerConfig,
    rng: Rng,
    now: Instant,
    out: VecDeque<WorkerOutput>,
    timers: Timers<Timer>,
    link: Link,
    /// Number of the current (or last) stream; replies go only to the stream that asked.
    stream: u64,
    /// Consecutive failed dials and lost streams since the last registration.
    failures: u32,
    /// Given by a runtime that speaks connection mode; presented on every redial.
    resume_token: Option<String>,
    /// Last message from the runtime on the current stream.
    last_heard: Instant,
    /// Heartbeats sent on this stream and not yet echoed: the response sequence number each
    /// one confirms up to (exclusive).
    heartbeats: VecDeque<u64>,
    app: AppState,
    ledger: Ledger,
    drain: Option<Drain>,
}

impl Worker {
    /// A worker that dials right away (see [`Worker::poll_output`]).
    pub fn new(mut cfg: WorkerConfig, now: Instant) -> Self {
        let floor = std::time::Duration::from_millis(1);
        cfg.heartbeat_interval = cfg.heartbeat_interval.max(floor);
        cfg.runtime_silence = cfg.runtime_silence.max(floor);
        cfg.connect_timeout = cfg.connect_timeout.max(floor);
        cfg.jitter_percent = cfg.jitter_percent.min(100);
        let mut w = Worker {
            rng: Rng::new(cfg.seed),
            now,
            out: VecDeque::new(),
            timers: Timers::new(),
            link: Link::Down,
            stream: 0,
            failures: 0,
            resume_token: None,
            last_heard: now,
            heartbeats: VecDeque::new(),
            app: AppState::default(),
            ledger: Ledger::new(cfg.max_buffered_responses),
            drain: None,
            cfg,
        };
        w.dial();
        w
    }

    /// Feeds one event from outside.
    pub fn handle_input(&mut self, now: Instant, input: WorkerInput) {
        self.advance(now);
        if self.link == Link::Exited {
            return;
        }
        match input {
            WorkerInput::Connected => self.on_connected(),
            WorkerInput::ConnectFailed { error } => self.on_connect_failed(error),
            WorkerInput::Message(msg) => self.on_message(*msg),
            WorkerInput::Disconnected { reason } => self.on_disconnected(reason),
            WorkerInput::EnvReloaded { result } => self.on_env_reloaded(result),
            WorkerInput::FunctionLoaded { function_id, result } => {
                self.on_function_loaded(function_id, result)
            }
            WorkerInput::InvocationDone { response } => self.on_invocation_done(*response),
            WorkerInput::Drain => {
                let grace = self.cfg.drain_grace;
                self.start_drain(DrainCause::Local, grace);
            }
            WorkerInput::Log(log) => {
                if self.link == Link::Registered {
                    self.send(String::new(), Content::RpcLog(*log));
                }
            }
        }
    }

    /// Processes every deadline due at `now`. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while self.link != Link::Exited
            && let Some(timer) = self.timers.pop_due(self.now)
        {
            match timer {
                Timer::Dial => self.on_dial_timeout(),
                Timer::Redial => self.on_redial_timer(),
                Timer::Heartbeat => self.on_heartbeat_timer(),
                Timer::Silence => self.on_silence_timer(),
                Timer::Drain => self.on_drain_timeout(),
            }
        }
    }

    /// The next thing for the shell to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<WorkerOutput> {
        self.out.pop_front()
    }

    /// When [`Worker::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The configuration in force (zero durations raised to 1 ms).
    pub fn config(&self) -> &WorkerConfig {
        &self.cfg
    }

    /// Whether the runtime holds a slot for this worker on a live stream.
    pub fn is_registered(&self) -> bool {
        self.link == Link::Registered
    }

    /// Invocations the handler is running.
    pub fn running(&self) -> usize {
        self.ledger.running()
    }

    /// Responses completed while disconnected, waiting for a resume.
    pub fn buffered(&self) -> usize {
        self.ledger.buffered()
    }

    /// Whether a drain is under way.
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Whether [`WorkerOutput::Exit`] was issued.
    pub fn has_exited(&self) -> bool {
        self.link == Link::Exited
    }

    fn advance(&mut self, now: Instant) {
        // Time never goes backwards; a shell that passes an older instant gets the newer one.
        if now > self.now {
            self.now = now;
        }
    }

    fn emit(&mut self, event: WorkerEvent) {
        self.out.push_back(WorkerOutput::Event(event));
    }

    fn unexpected(&mut self, what: impl Into<String>) {
        self.emit(WorkerEvent::Unexpected { what: what.into() });
    }

    /// Writes a message on the current stream (callers check that there is one).
    fn send(&mut self, request_id: String, content: Content) {
        let msg = StreamingMessage { request_id, content: Some(content) };
        self.out.push_back(WorkerOutput::Send(Box::new(msg)));
    }
}

#[cfg(test)]
mod tests;
