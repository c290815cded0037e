//! The API client, API health and the pacing of API calls.
//!
//! - [`ApiClient`] is rebuilt from its source (kubeconfig file or in-cluster) after a transport
//!   failure, so a rotated CA or token is picked up when the API server comes back.
//! - [`Health`] logs "unavailable" and "available again" once per state change, never per retry.
//! - [`Backoff`] (capped exponential, with jitter) paces retries; [`Bucket`] rate-limits creates.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tracing::instrument::WithSubscriber;

/// Longest wait for one create, delete or list.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kubernetes client that can be rebuilt.
pub(super) struct ApiClient {
    source: Option<PathBuf>,
    /// The client and its generation (bumped on each rebuild).
    current: Mutex<(u64, Client)>,
    /// The namespace of the kubeconfig context or of the service account.
    pub(super) default_namespace: String,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("source", &self.source).finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client from `kubeconfig`, or else from `KUBECONFIG`, `~/.kube/config` or the in-cluster
    /// service account.
    pub(super) async fn connect(kubeconfig: Option<PathBuf>) -> Result<Arc<ApiClient>, String> {
        let (client, default_namespace) = build(kubeconfig.as_ref()).await?;
        Ok(Arc::new(ApiClient { source: kubeconfig, current: Mutex::new((0, client)), default_namespace }))
    }

    /// The pods of a namespace, with the generation of the client used.
    pub(super) fn pods(&self, namespace: &str) -> (u64, Api<Pod>) {
        let current = self.current.lock().expect("never poisoned: no code panics while holding it");
        (current.0, Api::namespaced(current.1.clone(), namespace))
    }

    /// Rebuilds the client after a call with client `generation` failed in transport, unless
    /// someone already did.
    pub(super) async fn refresh(&self, generation: u64) {
        if self.current.lock().expect("never poisoned").0 != generation {
            return;
        }
        match build(self.source.as_ref()).await {
            Ok((client, _)) => {
                let mut current = self.current.lock().expect("never poisoned");
                if current.0 == generation {
                    *current = (generation + 1, client);
                }
            }
            Err(error) => tracing::debug!(%error, "cannot rebuild the kubernetes client yet"),
        }
    }
}

async fn build(source: Option<&PathBuf>) -> Result<(Client, String), String> {
    let mut config = match source {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| format!("no kubernetes configuration: {e}"))?,
    };
    // Fail fast when the API server is down: the caller retries with backoff.
    config.connect_timeout = Some(Duration::from_secs(5));
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| format!("kubernetes client: {e}"))?;
    Ok((client, namespace))
}

/// How a failed call failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// The API server answered with an error status.
    Api(Box<kube::core::Status>),
    /// No answer: connection refused or reset, TLS failure, timeout.
    Transport(String),
}

impl CallError {
    /// Worth retrying: no answer, or the server is overloaded or failing.
    pub(super) fn transient(&self) -> bool {
        match self {
            CallError::Api(s) => s.code >= 500 || s.code == 429 || s.code == 408,
            CallError::Transport(_) => true,
        }
    }

    pub(super) fn not_found(&self) -> bool {
        matches!(self, CallError::Api(s) if s.code == 404)
    }

    pub(super) fn already_exists(&self) -> bool {
        matches!(self, CallError::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Api(s) => write!(f, "{} {}: {}", s.code, s.reason, s.message),
            CallError::Transport(e) => f.write_str(e),
        }
    }
}

impl From<kube::Error> for CallError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => CallError::Api(status),
            other => CallError::Transport(other.to_string()),
        }
    }
}

/// Runs a kube-rs future with kube-rs's own logging off. kube-client logs every failed request
/// at ERROR (its tower trace layer), which during an outage means once per retry; the
/// provisioner reports the API server's health itself, once per change ([`Health`]).
pub(super) fn quiet<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    fut.with_subscriber(tracing::subscriber::NoSubscriber::default())
}

/// Runs one API call with [`CALL_TIMEOUT`]; on a transport failure, rebuilds the client
/// before returning so the retry uses a fresh one.
pub(super) async fn call<T>(
    api: &ApiClient,
    generation: u64,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    let result = match quiet(tokio::time::timeout(CALL_TIMEOUT, fut)).await {
        Ok(result) => result.map_err(CallError::from),
        Err(_) => Err(CallError::Transport(format!("no answer within {CALL_TIMEOUT:?}"))),
    };
    if let Err(CallError::Transport(_)) = &result {
        api.refresh(generation).await;
    }
    result
}

/// Whether the API server answers, logged once per change.
#[derive(Debug)]
pub(super) struct Health {
    runtime: String,
    down_since: Option<Instant>,
    /// When a call last succeeded, and with which client generation.
    last_ok: Option<(Instant, u64)>,
}

impl Health {
    pub(super) fn new(runtime: &str) -> Self {
        Health { runtime: runtime.to_owned(), down_since: None, last_ok: None }
    }

    /// A call with client `generation` succeeded.
    pub(super) fn ok(&mut self, generation: u64) {
        let now = Instant::now();
        let generation = self.last_ok.map_or(generation, |(_, g)| g.max(generation));
        self.last_ok = Some((now, generation));
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                runtime = %self.runtime,
                after = ?now.duration_since(since),
                "kubernetes API available again: provisioning resumes"
            );
        }
    }

    /// A call that began at `started` with client `generation` failed with a transient error.
    /// A call that began before the last success, or used an older client than the last
    /// success did (one since rebuilt), says nothing new.
    pub(super) fn failed(&mut self, started: Instant, generation: u64, what: &str, error: &str) {
        let stale = self.last_ok.is_some_and(|(at, g)| started < at || generation < g);
        if self.down_since.is_some() || stale {
            tracing::debug!(runtime = %self.runtime, what, error, "kubernetes API call failed; retrying");
            return;
        }
        self.down_since = Some(Instant::now());
        tracing::warn!(
            runtime = %self.runtime,
            what,
            error,
            "kubernetes API unavailable: serving with the workers we have, retrying with backoff"
        );
    }
}

/// Capped exponential backoff with ±20% jitter (runtimes sharing an API server do not retry
/// in lockstep).
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    failures: u32,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        Backoff { failures: 0, initial, max }
    }

    /// Records a failure and returns the delay before the next try.
    pub(super) fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let base = self.initial.saturating_mul(1 << (self.failures - 1).min(16)).min(self.max);
        let jitter = 0.8 + f64::from(getrandom::u32().unwrap_or(0) % 401) / 1000.0;
        base.mul_f64(jitter)
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Bucket { rate: f64::from(rate.max(1)), burst, tokens: burst, at: now }
    }

    /// Takes a token, or says when the next one is due.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let delays: Vec<Duration> = (0..8).map(|_| b.fail()).collect();
        assert!(delays[0] >= Duration::from_millis(160) && delays[0] <= Duration::from_millis(240));
        assert!(delays[2] >= Duration::from_millis(640) && delays[2] <= Duration::from_millis(960));
        assert!(delays[7] <= Duration::from_secs(6) && delays[7] >= Duration::from_secs(4));
        b.reset();
        assert!(b.fail() <= Duration::from_millis(240));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(10, 3, t0);
        assert!((0..3).all(|_| bucket.take(t0).is_ok()));
        let next = bucket.take(t0).unwrap_err();
        assert!(next > t0 && next <= t0 + Duration::from_millis(101), "{:?}", next - t0);
        assert!(bucket.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(bucket.take(t0 + Duration::from_millis(100)).is_err());
    }
}
