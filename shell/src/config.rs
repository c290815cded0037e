//! The TOML configuration of `switchboard serve`. Every field has a default; an empty file (or
//! none) runs a useful local setup: the three listeners on 127.0.0.1 and a warm pool of real
//! Python workers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use switchboard_core::app::ScaleSpec;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which async runtime runs the shell: `tokio` (default) or `smol`; `serve --shell`
    /// overrides it.
    pub shell: ShellKind,
    /// Where to listen.
    pub listen: Listen,
    /// Admin API access.
    pub admin: Admin,
    /// Size limits.
    pub limits: Limits,
    /// Timeouts and intervals.
    pub timeouts: Timeouts,
    /// Placeholder pools. Default: one `python` pool (see [`Pool::default_python`]).
    #[serde(rename = "pool")]
    pub pools: Vec<Pool>,
    /// Apps to deploy at start.
    #[serde(rename = "app")]
    pub apps: Vec<App>,
    /// Where the runtime keeps its state (the generated admin token). Default `.switchboard`.
    pub state_dir: PathBuf,
    /// Where bootstrapped worker environments are cached. Default
    /// `$XDG_CACHE_HOME/switchboard` or `~/.cache/switchboard`.
    pub cache_dir: Option<PathBuf>,
    /// Settings shared by the `kubernetes` pools.
    pub kubernetes: Kubernetes,
    /// TLS for the front door and the worker endpoint (off unless configured).
    pub tls: Tls,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shell: ShellKind::default(),
            listen: Listen::default(),
            admin: Admin::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            pools: vec![Pool::default_python()],
            apps: Vec::new(),
            state_dir: PathBuf::from(".switchboard"),
            cache_dir: None,
            kubernetes: Kubernetes::default(),
            tls: Tls::default(),
        }
    }
}

/// The async runtime under the shell. Both run the same core and the same serving code.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShellKind {
    /// tokio (multi-threaded).
    #[default]
    Tokio,
    /// smol (`async-executor` threads, `async-io`).
    Smol,
}

/// Listener addresses. Port 0 picks a free port (the bound addresses are printed at start).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// HTTP front door: `http://HOST:PORT/<app>/api/<route>`. Default `127.0.0.1:7071`.
    pub front_door: SocketAddr,
    /// Admin API (JSON, bearer token). Default `127.0.0.1:7072`.
    pub admin: SocketAddr,
    /// Worker endpoint (gRPC `FunctionRpc`). Default `127.0.0.1:7073`.
    pub workers: SocketAddr,
    /// Host name workers are told to dial (`--host`). Default: the worker listener's IP.
    pub advertise_host: Option<String>,
    /// With `[tls.workers]`, a second, plaintext worker listener for the workers of `local`
    /// pools (the real Python worker cannot speak TLS). It must be a loopback address, and it
    /// admits only workers the runtime started (join and resume tokens are refused there).
    /// Default `127.0.0.1:0` (any free port); unused without `[tls.workers]` or local pools.
    pub local_workers: Option<SocketAddr>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            front_door: SocketAddr::from(([127, 0, 0, 1], 7071)),
            admin: SocketAddr::from(([127, 0, 0, 1], 7072)),
            workers: SocketAddr::from(([127, 0, 0, 1], 7073)),
            advertise_host: None,
            local_workers: None,
        }
    }
}

/// Admin API access.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// Bearer token. Default: generated on first start and stored in `<state_dir>/admin-token`.
    pub token: Option<String>,
    /// Serve `/metrics` without the bearer token (for scrapers that cannot send one).
    /// Default false.
    pub public_metrics: bool,
}

/// Size limits.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest gRPC message in either direction; passed to workers as
    /// `--grpcMaxMessageLength`. Default 16 MiB.
    pub max_message_bytes: usize,
    /// Largest front-door request body (413 above). Default 10 MiB.
    pub max_body_bytes: usize,
    /// Largest total size of a request's headers (431 above). Default 64 KiB.
    pub max_header_bytes: usize,
    /// Most headers on one request (431 above). Default 100.
    pub max_headers: usize,
    /// Messages queued to one worker before it is presumed stuck and dropped. Default 4096.
    pub worker_outbound_queue: usize,
    /// Open connections from one address (an IPv4 address or an IPv6 /64) on each listener;
    /// more are closed as soon as they are accepted. 0: no limit. Default 256.
    pub max_connections_per_address: usize,
    /// Failed worker admissions (unknown id, wrong token, garbage or silence before
    /// `StartStream`) from one address within `admission_window` before the address is
    /// refused for `admission_cooldown` (gRPC `RESOURCE_EXHAUSTED`; ids the runtime issued
    /// still admit). 0: no limit. Default 20.
    pub max_admission_failures: u32,
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
    pub admission_window: Duration,
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
    pub admission_cooldown: Duration,
    /// Worker streams from one address that may wait for their `StartStream` at once; one
    /// more closes the oldest. 0: no limit. Default 64.
    pub max_unadmitted_streams_per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let core = switchboard_core::Limits::default();
        Limits {
            max_message_bytes: 16 << 20,
            max_body_bytes: 10 << 20,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            worker_outbound_queue: 4096,
            max_connections_per_address: 256,
            max_admission_failures: core.max_admission_failures,
            admission_window: core.admission_window,
            admission_cooldown: core.admission_cooldown,
            max_unadmitted_streams_per_address: core.max_unadmitted_per_address,
        }
    }
}

/// Timeouts and intervals (humantime strings: `"30s"`, `"500ms"`, `"5m"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Longest wait in an app's queue for a ready worker (then 503). Default 30 s.
    #[serde(with = "humantime_serde")]
    pub queue: Duration,
    /// Init handshake. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub init: Duration,
    /// Env reload (specialization). Default 30 s.
    #[serde(with = "humantime_serde")]
    pub env_reload: Duration,
    /// All function loads. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub function_load: Duration,
    /// How long a provisioned worker id stays valid. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub provision: Duration,
    /// Silence after which a heartbeat-advertising worker is evicted. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Silence after which a worker that advertised `WorkerStatus` (the Python worker) is
    /// sent a `WorkerStatusRequest`. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub status_probe_after: Duration,
    /// How long a probed worker has to answer before it is evicted. Generous by default: a
    /// Python worker on a loaded machine answers late, and a dead one is found sooner by its
    /// closed stream or its exited process. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub status_probe_timeout: Duration,
    /// Resume grace for connection-mode workers. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub resume_grace: Duration,
    /// Longest drain of one worker. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// Idle ready workers above an app's minimum are released after this. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub idle_release: Duration,
    /// HTTP/2 keepalive ping interval on worker streams (the liveness of workers that send
    /// nothing of their own). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Longest graceful shutdown (drain in-flight calls) before workers are killed. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub shutdown: Duration,
    /// Grace between SIGTERM and SIGKILL for released worker processes. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub kill_grace: Duration,
    /// From accepting a connection to its first request (TLS handshake included); a
    /// connection that is not that far by then is closed. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub handshake: Duration,
    /// From a worker stream's start to its `StartStream`. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub start_stream: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let core = switchboard_core::Timeouts::default();
        Timeouts {
            queue: core.queue,
            init: core.init,
            env_reload: core.env_reload,
            function_load: core.function_load,
            provision: core.provision_ticket,
            heartbeat: core.heartbeat,
            status_probe_after: core.status_probe_after,
            status_probe_timeout: core.status_probe_timeout,
            resume_grace: core.resume_grace,
            drain: core.drain,
            idle_release: core.idle_release,
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(2),
            shutdown: Duration::from_secs(30),
            kill_grace: Duration::from_secs(2),
            handshake: Duration::from_secs(10),
            start_stream: core.start_stream,
        }
    }
}

/// How a pool gets its workers.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionerKind {
    /// Start worker processes on this machine (the default).
    #[default]
    Local,
    /// Start nothing: workers come on their own with the pool's join token.
    External,
    /// Create worker pods on Kubernetes (`[pool.kubernetes]` holds the pod template). Served
    /// by the tokio shell.
    Kubernetes,
}

/// A placeholder pool.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Pool {
    /// Language (`python`, `custom`, ...).
    pub language: String,
    /// Language version; empty serves apps that ask for none.
    pub version: String,
    /// Warm placeholders to keep. Default 2.
    pub min_idle: u32,
    /// Most workers in the pool. Default 8.
    pub max: u32,
    /// Who starts workers. Default `local`.
    pub provisioner: ProvisionerKind,
    /// Worker command (argv). The host-style arguments (`--host --port --workerId --requestId
    /// --grpcMaxMessageLength`) are appended. For `python` without a command, the real Azure
    /// Functions Python worker is bootstrapped into a cached venv.
    pub command: Vec<String>,
    /// Environment for the worker process and, at specialization, the base of the app's
    /// environment (the Python worker replaces its whole environment then).
    pub env: BTreeMap<String, String>,
    /// Variables copied from the runtime's own environment into `env` (unless set there).
    pub inherit_env: Vec<String>,
    /// Token that admits workers that were not provisioned (connection-mode workers).
    pub join_token: Option<String>,
    /// The pods of a `kubernetes` pool.
    pub kubernetes: Option<KubePool>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            language: String::new(),
            version: String::new(),
            min_idle: 2,
            max: 8,
            provisioner: ProvisionerKind::Local,
            command: Vec::new(),
            env: BTreeMap::new(),
            inherit_env: ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"]
                .map(String::from)
                .to_vec(),
            join_token: None,
            kubernetes: None,
        }
    }
}

impl Pool {
    /// The default pool: real Python workers, two warm.
    pub fn default_python() -> Self {
        Pool { language: "python".into(), ..Pool::default() }
    }
}

/// Settings shared by the `kubernetes` pools (`[kubernetes]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Kubernetes {
    /// The kubeconfig file. Default: `KUBECONFIG`, then `~/.kube/config`, then the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of worker pods when a pool names none. Default: the kubeconfig context's or
    /// the service account's namespace.
    pub namespace: Option<String>,
    /// This runtime's identity, a label on every pod it creates: it adopts or deletes only
    /// pods that carry it, so runtimes sharing a namespace never touch each other's pods. Keep
    /// it stable across restarts to adopt the pods of an earlier incarnation. Default: env
    /// `POD_NAME`, else the host name.
    pub runtime_id: Option<String>,
    /// UID of the runtime's own pod (env `POD_UID` from the downward API): worker pods get an
    /// ownerReference to it, so the cluster deletes them with the runtime pod. Default: env
    /// `POD_UID`, else no owner.
    pub owner_uid: Option<String>,
    /// Host workers dial (`--host`): the DNS name of the runtime's worker Service. Default:
    /// `listen.advertise_host`, else the worker listener's IP.
    pub worker_host: Option<String>,
    /// Port workers dial (`--port`): the worker Service's port. Default: the worker listener's
    /// port.
    pub worker_port: Option<u16>,
    /// Pod creates per second, sustained (token bucket). Default 10.
    pub creates_per_second: u32,
    /// Pod creates allowed in a burst. Default 10.
    pub create_burst: u32,
    /// How long pods left by an earlier incarnation of this runtime wait for their worker to
    /// connect again before they are deleted. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub adopt_grace: Duration,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            kubeconfig: None,
            namespace: None,
            runtime_id: None,
            owner_uid: None,
            worker_host: None,
            worker_port: None,
            creates_per_second: 10,
            create_burst: 10,
            adopt_grace: Duration::from_secs(30),
        }
    }
}

/// TLS (rustls) per listener (`[tls.front_door]`, `[tls.workers]`). The admin API has none:
/// it listens on loopback; put a TLS proxy in front of it to reach it from elsewhere.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// HTTPS on the front door (HTTP/1.1 and HTTP/2 by ALPN).
    pub front_door: Option<TlsListener>,
    /// TLS on the worker endpoint (HTTP/2 by ALPN); with `client_ca`, workers must present a
    /// client certificate signed by it (mTLS). Workers of `local` pools then use the plaintext
    /// loopback listener `listen.local_workers`.
    pub workers: Option<TlsListener>,
}

/// One listener's certificate, key and (optionally) the CA its clients' certificates must chain
/// to. Relative paths are relative to the config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsListener {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s): clients must present a certificate signed by one (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// The pods of a `kubernetes` pool (`[pool.kubernetes]`): a template, inline or in a file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KubePool {
    /// Namespace of this pool's pods. Default: `[kubernetes] namespace`.
    pub namespace: Option<String>,
    /// The pod template inline: a Kubernetes `PodTemplateSpec` (`metadata`, `spec`) written
    /// as a TOML table. The worker container is the one named `worker`, else the first; the
    /// host-style arguments are appended to its `args`.
    pub pod_template: Option<PodTemplate>,
    /// The pod template in a YAML or JSON file (a `PodTemplateSpec`, or a whole Pod manifest).
    /// Relative paths are relative to the config file.
    pub pod_template_file: Option<PathBuf>,
}

/// A pod template as written in the config; the kubernetes provisioner checks it against the
/// Kubernetes schema when it starts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct PodTemplate(pub serde_json::Value);

// Values parsed from TOML; only a NaN float (meaningless in a pod template) is not equal to itself.
impl Eq for PodTemplate {}

/// An app deployed at start.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct App {
    /// The app folder (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Name; default: the folder's name.
    pub name: Option<String>,
    /// Settings over local.settings.json `Values`.
    pub settings: BTreeMap<String, String>,
    /// Workers kept specialized without traffic.
    pub min_workers: Option<u32>,
    /// Most workers for this app.
    pub max_workers: Option<u32>,
    /// In-flight invocations per worker.
    pub concurrency: Option<u32>,
    /// Calls that may wait for a worker.
    pub queue_limit: Option<u32>,
}

impl App {
    /// The scale this entry asks for, over the defaults.
    pub fn scale(&self) -> Option<ScaleSpec> {
        if self.min_workers.is_none()
            && self.max_workers.is_none()
            && self.concurrency.is_none()
            && self.queue_limit.is_none()
        {
            return None;
        }
        let d = ScaleSpec::default();
        Some(ScaleSpec {
            min_workers: self.min_workers.unwrap_or(d.min_workers),
            max_workers: self.max_workers.unwrap_or(d.max_workers),
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            queue_limit: self.queue_limit.unwrap_or(d.queue_limit),
        })
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said (line, column, field).
        message: String,
    },
    /// The values do not make sense together.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads a config file; relative app paths become relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config =
            Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for app in &mut config.apps {
            if app.path.is_relative() {
                app.path = base.join(&app.path);
            }
        }
        for file in config.pools.iter_mut().filter_map(|p| p.kubernetes.as_mut()?.pod_template_file.as_mut())
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        for tls in [&mut config.tls.front_door, &mut config.tls.workers].into_iter().flatten() {
            for file in
                [Some(&mut tls.cert), Some(&mut tls.key), tls.client_ca.as_mut()].into_iter().flatten()
            {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses config text (without validating cross-field rules).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks rules no single field can express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for pool in &self.pools {
            if pool.language.is_empty() {
                return Err(ConfigError::Invalid("a [[pool]] has no language".into()));
            }
            if !seen.insert((pool.language.clone(), pool.version.clone())) {
                return Err(ConfigError::Invalid(format!(
                    "two pools for language {:?} version {:?}",
                    pool.language, pool.version
                )));
            }
            if pool.max == 0 || pool.min_idle > pool.max {
                return Err(ConfigError::Invalid(format!(
                    "pool {}: need 0 < max and min_idle <= max (min_idle {}, max {})",
                    pool.language, pool.min_idle, pool.max
                )));
            }
            pool.validate_kubernetes()?;
            if pool.provisioner == ProvisionerKind::External && pool.join_token.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "pool {}: an external pool needs a join_token, or no worker can join",
                    pool.language
                )));
            }
            if pool.provisioner == ProvisionerKind::Local
                && pool.command.is_empty()
                && pool.language != "python"
            {
                return Err(ConfigError::Invalid(format!(
                    "pool {}: a local pool needs a command (only python has a built-in one)",
                    pool.language
                )));
            }
        }
        if self.kubernetes.creates_per_second == 0 || self.kubernetes.create_burst == 0 {
            return Err(ConfigError::Invalid(
                "kubernetes.creates_per_second and create_burst must be at least 1".into(),
            ));
        }
        if self.limits.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid("limits.max_message_bytes must be at least 1024".into()));
        }
        match (self.listen.local_workers, &self.tls.workers) {
            (Some(addr), Some(_)) if !addr.ip().is_loopback() => {
                return Err(ConfigError::Invalid(format!(
                    "listen.local_workers {addr}: must be a loopback address (it is plaintext, for the \
                     workers of local pools only)"
                )));
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "listen.local_workers is only used with [tls.workers] (without TLS, local workers dial \
                     listen.workers)"
                        .into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The core's configuration for these settings.
    pub fn core(&self, seed: [u8; 32]) -> switchboard_core::Config {
        let t = &self.timeouts;
        let timeouts = switchboard_core::Timeouts {
            queue: t.queue,
            init: t.init,
            env_reload: t.env_reload,
            function_load: t.function_load,
            provision_ticket: t.provision,
            heartbeat: t.heartbeat,
            status_probe_after: t.status_probe_after,
            status_probe_timeout: t.status_probe_timeout,
            resume_grace: t.resume_grace,
            drain: t.drain,
            idle_release: t.idle_release,
            start_stream: t.start_stream,
            ..switchboard_core::Timeouts::default()
        };
        let l = &self.limits;
        let limits = switchboard_core::Limits {
            max_admission_failures: l.max_admission_failures,
            admission_window: l.admission_window,
            admission_cooldown: l.admission_cooldown,
            max_unadmitted_per_address: l.max_unadmitted_streams_per_address,
            ..switchboard_core::Limits::default()
        };
        switchboard_core::Config {
            seed,
            timeouts,
            limits,
            pools: self.pools.iter().map(Pool::core).collect(),
            ..switchboard_core::Config::default()
        }
    }
}

impl Pool {
    /// A `kubernetes` pool has exactly one pod template and takes its command from it; other
    /// pools have no `[pool.kubernetes]`.
    fn validate_kubernetes(&self) -> Result<(), ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(format!("pool {}: {why}", self.language)));
        match (&self.kubernetes, self.provisioner) {
            (None, ProvisionerKind::Kubernetes) => {
                invalid("a kubernetes pool needs [pool.kubernetes] with pod_template or pod_template_file")
            }
            (Some(_), ProvisionerKind::Local | ProvisionerKind::External) => {
                invalid("[pool.kubernetes] is only for provisioner = \"kubernetes\"")
            }
            (Some(k), ProvisionerKind::Kubernetes) => {
                if k.pod_template.is_some() == k.pod_template_file.is_some() {
                    return invalid("give exactly one of pod_template and pod_template_file");
                }
                if !self.command.is_empty() {
                    return invalid("a kubernetes pool takes its command from the pod template");
                }
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }

    /// The core's view of this pool.
    pub fn core(&self) -> switchboard_core::PoolSpec {
        let mut environment = self.env.clone();
        for name in &self.inherit_env {
            if let Ok(value) = std::env::var(name) {
                environment.entry(name.clone()).or_insert(value);
            }
        }
        switchboard_core::PoolSpec {
            key: switchboard_core::PoolKey::new(&self.language, &self.version),
            min_idle: self.min_idle,
            max: self.max,
            provisioned: self.provisioner != ProvisionerKind::External,
            join_token: self.join_token.clone(),
            environment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_local_setup() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.front_door.port(), 7071);
        assert_eq!(c.pools[0].language, "python");
        c.validate().unwrap();
    }

    #[test]
    fn fields_parse_with_units() {
        let c = Config::parse(
            r#"
            [listen]
            front_door = "127.0.0.1:0"
            [timeouts]
            queue = "5s"
            heartbeat = "750ms"
            [[pool]]
            language = "custom"
            provisioner = "external"
            join_token = "t"
            [[app]]
            path = "examples/hello"
            max_workers = 3
            "#,
        )
        .unwrap();
        assert_eq!(c.timeouts.queue, Duration::from_secs(5));
        assert_eq!(c.timeouts.heartbeat, Duration::from_millis(750));
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.apps[0].scale().unwrap().max_workers, 3);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_pools_are_errors() {
        let e = Config::parse("[listen]\nfrontdoor = \"x\"").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let c = Config::parse("[[pool]]\nlanguage = \"node\"").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("needs a command"), "{e}");
    }

    #[test]
    fn tls_and_admission_limits() {
        let c = Config::parse(
            r#"
            [listen]
            workers = "0.0.0.0:7073"
            local_workers = "127.0.0.1:7074"
            [limits]
            max_admission_failures = 5
            admission_window = "10s"
            admission_cooldown = "2m"
            max_unadmitted_streams_per_address = 8
            [timeouts]
            start_stream = "3s"
            [tls.front_door]
            cert = "front.pem"
            key = "front.key"
            [tls.workers]
            cert = "workers.pem"
            key = "workers.key"
            client_ca = "ca.pem"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.tls.workers.as_ref().unwrap().client_ca.as_deref(), Some(Path::new("ca.pem")));
        let core = c.core([0; 32]);
        assert_eq!(core.limits.max_admission_failures, 5);
        assert_eq!(core.limits.admission_cooldown, Duration::from_secs(120));
        assert_eq!(core.limits.max_unadmitted_per_address, 8);
        assert_eq!(core.timeouts.start_stream, Duration::from_secs(3));

        let open = "[listen]\nlocal_workers = \"0.0.0.0:1\"\n[tls.workers]\ncert = \"c\"\nkey = \"k\"";
        let e = Config::parse(open).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("must be a loopback address"), "{e}");
        let e = Config::parse("[listen]\nlocal_workers = \"127.0.0.1:1\"").unwrap().validate().unwrap_err();
        assert!(e.to_string().contains("only used with [tls.workers]"), "{e}");
        let e = Config::parse("[tls.workers]\ncert = \"c\"").unwrap_err();
        assert!(e.contains("missing field `key`"), "{e}");
    }

    #[test]
    fn kubernetes_pools_take_an_inline_or_file_pod_template() {
        let c = Config::parse(
            r#"
            [kubernetes]
            runtime_id = "rt-1"
            worker_host = "switchboard-workers.sb.svc.cluster.local"
            worker_port = 7073
            adopt_grace = "10s"
            [[pool]]
            language = "python"
            provisioner = "kubernetes"
            min_idle = 3
            [pool.kubernetes]
            namespace = "sb"
            [pool.kubernetes.pod_template.metadata.labels]
            team = "a"
            [[pool.kubernetes.pod_template.spec.containers]]
            name = "worker"
            image = "example/python-worker:1.1.9"
            command = ["python", "-m", "azure_functions_worker"]
            resources = { requests = { cpu = "250m", memory = "256Mi" } }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        let k = c.pools[0].kubernetes.as_ref().unwrap();
        let template = &k.pod_template.as_ref().unwrap().0;
        assert_eq!(template["spec"]["containers"][0]["resources"]["requests"]["cpu"], "250m");
        assert_eq!(c.kubernetes.adopt_grace, Duration::from_secs(10));
        assert!(c.pools[0].core().provisioned);

        let both = "[[pool]]\nlanguage = \"python\"\nprovisioner = \"kubernetes\"\n[pool.kubernetes]\npod_template_file = \"p.yaml\"\npod_template = {}";
        let e = Config::parse(both).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("exactly one"), "{e}");
        let none = "[[pool]]\nlanguage = \"python\"\nprovisioner = \"kubernetes\"";
        let e = Config::parse(none).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("needs [pool.kubernetes]"), "{e}");
    }
}
