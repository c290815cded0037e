//! Configuration of the connection-mode worker.
//!
//! Every field has a default that suits a local setup; the shell maps its flags and file onto
//! this.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Backoff;

/// Configuration of [`super::Worker`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Seed of the reconnect jitter, the worker's only randomness. Shells draw it from the OS;
    /// simulations from their run seed.
    pub seed: [u8; 32],
    /// `StartStream.worker_id`. Keep it for the life of the process: the runtime binds the
    /// resume token to it.
    pub worker_id: String,
    /// The pool's join token, presented as request metadata on every dial (except while a
    /// local drain reconnects only to deliver what it owes, when a fresh admission is useless).
    pub join_token: Option<String>,
    /// Period of `WorkerHeartbeat` while registered, advertised as `SwitchboardHeartbeatMs`.
    /// Default 500 ms; zero counts as 1 ms.
    pub heartbeat_interval: Duration,
    /// While connected to a runtime that speaks connection mode (it echoes heartbeats), no
    /// message from it for this long means the stream is presumed dead: the worker closes it
    /// and reconnects. Must exceed `heartbeat_interval` plus a round trip. Default 2 s.
    pub runtime_silence: Duration,
    /// Longest wait from [`super::WorkerOutput::Connect`] to `Connected`/`ConnectFailed`.
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// Delay before each redial: capped exponential in the number of consecutive failures,
    /// reset by a successful registration. Default 100 ms doubling up to 5 s.
    pub reconnect: Backoff,
    /// Each redial delay is spread uniformly over ± this percentage of itself (seeded), so
    /// workers cut off together do not redial together. 0..=100; default 20.
    pub jitter_percent: u8,
    /// Extra capabilities for `WorkerInitResponse` (e.g. `SwitchboardConcurrency`); they
    /// override the built-in ones on a clash.
    pub capabilities: BTreeMap<String, String>,
    /// Bound on responses held in each of: completed while disconnected, and sent but not yet
    /// confirmed by a heartbeat echo; also how many answered invocation ids are remembered so
    /// that the runtime's re-sends after a resume are not run twice. Default 10 000.
    pub max_buffered_responses: usize,
    /// Grace of a local drain ([`super::WorkerInput::Drain`]); `WorkerTerminate` carries its
    /// own. Keep it below the orchestrator's kill grace. Default 25 s.
    pub drain_grace: Duration,
    /// `worker_version` reported in `WorkerInitResponse`.
    pub worker_version: String,
}

impl WorkerConfig {
    /// Defaults for a worker with this id.
    pub fn new(worker_id: impl Into<String>) -> Self {
        WorkerConfig { worker_id: worker_id.into(), ..WorkerConfig::default() }
    }
}

impl Default for WorkerConfig {
    /// Defaults with an empty worker id, which the runtime refuses: set one.
    fn default() -> Self {
        WorkerConfig {
            seed: [0; 32],
            worker_id: String::new(),
            join_token: None,
            heartbeat_interval: Duration::from_millis(500),
            runtime_silence: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            reconnect: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
            jitter_percent: 20,
            capabilities: BTreeMap::new(),
            max_buffered_responses: 10_000,
            drain_grace: Duration::from_secs(25),
            worker_version: concat!("switchboard/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}
