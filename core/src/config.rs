//! Runtime configuration: timeouts, limits, pools and the randomness seed.
//!
//! Every field has a default that suits a local setup; the shell maps its TOML file onto this.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::PoolKey;

/// Configuration of [`crate::Runtime`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of all randomness (ids, tokens, jitter). Shells draw it from the OS; simulations
    /// from their run seed.
    pub seed: [u8; 32],
    /// `host_version` sent in `WorkerInitRequest`.
    pub host_version: String,
    /// Phase and liveness deadlines.
    pub timeouts: Timeouts,
    /// Bounds on what one worker or caller may cost.
    pub limits: Limits,
    /// Backoff between provisions of a pool whose workers keep failing.
    pub provision_backoff: Backoff,
    /// Placeholder pools, at most one per key.
    pub pools: Vec<PoolSpec>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: [0; 32],
            host_version: concat!("switchboard/", env!("CARGO_PKG_VERSION")).to_owned(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            provision_backoff: Backoff::default(),
            pools: Vec::new(),
        }
    }
}

/// Deadlines. Defaults follow the Azure host where it has one (init 10 s, env reload 30 s,
/// function load 60 s, terminate grace 5 s) and are tighter where we promise more.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From stream open to `StartStream`.
    pub start_stream: Duration,
    /// From `WorkerInitRequest` to its response.
    pub init: Duration,
    /// From `FunctionEnvironmentReloadRequest` to its response.
    pub env_reload: Duration,
    /// From `FunctionsMetadataRequest` to its response.
    pub metadata: Duration,
    /// From the first `FunctionLoadRequest` to the last response.
    pub function_load: Duration,
    /// How long a provisioned worker id stays valid (single use).
    pub provision_ticket: Duration,
    /// Longest wait in an app's queue for a ready worker (then "unavailable", HTTP 503).
    pub queue: Duration,
    /// Silence after which a worker that advertised heartbeats is evicted.
    pub heartbeat: Duration,
    /// Silence after which a worker that advertised `WorkerStatus` is probed.
    pub status_probe_after: Duration,
    /// How long a probed worker has to answer before eviction.
    pub status_probe_timeout: Duration,
    /// How long a disconnected worker that advertised resume keeps its slot.
    pub resume_grace: Duration,
    /// Longest drain (in-flight work finishing) before a worker is released anyway.
    pub drain: Duration,
    /// Grace given in `WorkerTerminate`.
    pub terminate_grace: Duration,
    /// A ready worker idle this long is released if its app is above `min_workers`.
    pub idle_release: Duration,
    /// Retry-After suggested to callers that were refused.
    pub retry_after: Duration,
    /// After this many consecutive failed specializations an app backs off.
    pub app_failure_threshold: u32,
    /// Backoff of an app whose specializations keep failing.
    pub app_failure_backoff: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            start_stream: Duration::from_secs(10),
            init: Duration::from_secs(10),
            env_reload: Duration::from_secs(30),
            metadata: Duration::from_secs(30),
            function_load: Duration::from_secs(60),
            provision_ticket: Duration::from_secs(60),
            queue: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            status_probe_after: Duration::from_secs(2),
            status_probe_timeout: Duration::from_secs(5),
            resume_grace: Duration::from_secs(15),
            drain: Duration::from_secs(30),
            terminate_grace: Duration::from_secs(5),
            idle_release: Duration::from_secs(600),
            retry_after: Duration::from_secs(1),
            app_failure_threshold: 3,
            app_failure_backoff: Duration::from_secs(5),
        }
    }
}

/// Limits on what a worker, or an address that streams come from, may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries allowed in any map a worker sends (capabilities, metadata); more is a protocol
    /// violation.
    pub max_map_entries: usize,
    /// Late responses remembered per worker to tell "late" from "never given".
    pub remembered_abandoned: usize,
    /// Functions a worker may report through indexing.
    pub max_indexed_functions: usize,
    /// Failed admissions (unknown id, wrong token, garbage or silence before `StartStream`) from
    /// one address within [`Limits::admission_window`] before that address is limited for
    /// [`Limits::admission_cooldown`]: its streams are then refused at once unless they present
    /// a credential the runtime issued (a provisioned worker id, a resume token). An address is
    /// an IPv4 address or an IPv6 /64. 0 turns the limit off.
    pub max_admission_failures: u32,
    /// The window failed admissions are counted in.
    pub admission_window: Duration,
    /// How long a limited address stays limited.
    pub admission_cooldown: Duration,
    /// Addresses whose failures are remembered at once; beyond, the record that would expire
    /// first is dropped (bounded memory whatever the number of attacking addresses).
    pub max_tracked_addresses: usize,
    /// Streams from one address that may wait for their `StartStream` at once; one more closes
    /// the oldest waiting one (a failed admission). 0 means no limit.
    pub max_unadmitted_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_map_entries: 1024,
            remembered_abandoned: 1024,
            max_indexed_functions: 1000,
            max_admission_failures: 20,
            admission_window: Duration::from_secs(60),
            admission_cooldown: Duration::from_secs(60),
            max_tracked_addresses: 4096,
            max_unadmitted_per_address: 64,
        }
    }
}

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(200), max: Duration::from_secs(10) }
    }
}

impl Backoff {
    /// Delay after `failures` consecutive failures (0 means none).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let shift = (failures - 1).min(20);
        self.initial.saturating_mul(1 << shift).min(self.max)
    }
}

/// A placeholder pool. `Debug` hides the join token and the environment's values.
#[derive(Clone)]
pub struct PoolSpec {
    /// Language and version.
    pub key: PoolKey,
    /// Warm placeholders to keep.
    pub min_idle: u32,
    /// Most workers in this pool in any state (provisioning, idle, specialized).
    pub max: u32,
    /// Whether the runtime asks the provisioner for workers (`false` for external pools, whose
    /// workers come on their own with the join token).
    pub provisioned: bool,
    /// Token that admits workers that were not provisioned (compared in constant time).
    pub join_token: Option<String>,
    /// Base environment sent at specialization, before the app's settings. The real Python
    /// worker replaces its whole environment with this map, so it must hold PATH and friends.
    pub environment: BTreeMap<String, String>,
}

impl std::fmt::Debug for PoolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSpec")
            .field("key", &self.key)
            .field("min_idle", &self.min_idle)
            .field("max", &self.max)
            .field("provisioned", &self.provisioned)
            .field("join_token", &crate::redact::Secret(&self.join_token))
            .field("environment", &crate::redact::Keys(&self.environment))
            .finish()
    }
}

impl PoolSpec {
    /// A provisioned pool with these bounds and an empty environment.
    pub fn new(key: PoolKey, min_idle: u32, max: u32) -> Self {
        PoolSpec { key, min_idle, max, provisioned: true, join_token: None, environment: BTreeMap::new() }
    }
}
