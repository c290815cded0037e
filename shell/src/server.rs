//! Starting and stopping a whole runtime on any [`Runtime`]: listeners first (workers may only
//! be started once their endpoint listens), then the driver, provisioners, apps and accept loops.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::app::AppOptions;
use switchboard_core::{PoolKey, WorkerId};
use tokio::sync::{oneshot, watch};

use crate::admin::{AdminApi, AdminParts};
use crate::appdir::{LoadError, load_app};
use crate::config::{Config, ConfigError, ProvisionerKind};
use crate::driver::{self, Driver, Handle};
use crate::front_door::{FrontDoor, FrontDoorLimits};
use crate::grpc::WorkerEndpoint;
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::provision::{LocalPool, LocalProvisioner, Provisioner, Provisioners, python};
use crate::rt::Runtime;
use crate::serve::{self, ConnPolicy};
use crate::telemetry::Telemetry;
use crate::tls;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Python worker could not be installed.
    #[error("cannot prepare the Python worker: {0}")]
    PythonWorker(std::io::Error),
    /// An app given at start could not be deployed.
    #[error("app {path}: {error}")]
    App {
        /// The app folder.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The admin token file could not be read or written.
    #[error("admin token in {path}: {source}")]
    AdminToken {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A provisioner from a [`ProvisionerFactory`] could not be built (its pod template is
    /// invalid, its cluster credentials cannot be read, ...).
    #[error("{kind:?} provisioner: {error}")]
    Provisioner {
        /// The pool kind.
        kind: ProvisionerKind,
        /// Why.
        error: String,
    },
}

/// Builds the provisioner of the pools of one [`ProvisionerKind`] that this runtime-agnostic
/// crate cannot serve itself, because it needs a particular async runtime or client library:
/// `switchboard-tokio` registers one for `kubernetes`. See [`start_with`].
pub trait ProvisionerFactory: Send {
    /// The kind of pool it serves.
    fn kind(&self) -> ProvisionerKind;

    /// Builds the provisioner. Called once at start, when the listeners are bound and before
    /// the core exists, so it may find workers an earlier incarnation of this runtime left
    /// running and ask for them to be adopted ([`Built::adopt`]).
    fn build(
        self: Box<Self>,
        ctx: FactoryContext,
    ) -> Pin<Box<dyn Future<Output = Result<Built, String>> + Send>>;
}

/// What a [`ProvisionerFactory`] is given.
#[derive(Debug)]
pub struct FactoryContext {
    /// The whole configuration.
    pub config: Config,
    /// The pools of its kind.
    pub pools: Vec<crate::config::Pool>,
    /// Reports `ProvisionFailed` / `WorkerExited` to the driver.
    pub handle: Handle,
    /// The bound worker endpoint.
    pub workers: SocketAddr,
}

/// What a [`ProvisionerFactory`] built.
pub struct Built {
    /// The provisioner for its pools.
    pub provisioner: Box<dyn Provisioner>,
    /// Workers already running that may connect with their old id (see
    /// `switchboard_core::Runtime::expect_worker`); those the core does not take are released.
    pub adopt: Vec<Adopt>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built").field("adopt", &self.adopt).finish_non_exhaustive()
    }
}

/// A running worker to adopt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopt {
    /// Its pool.
    pub pool: PoolKey,
    /// The id it was started with.
    pub worker: WorkerId,
    /// How long it has to connect.
    pub within: Duration,
}

/// A running runtime. `Debug` leaves the admin token out.
pub struct Started {
    /// Bound front-door address.
    pub front_door: SocketAddr,
    /// Bound admin address.
    pub admin: SocketAddr,
    /// Bound worker-endpoint address.
    pub workers: SocketAddr,
    /// The plaintext loopback listener of local pools' workers, bound when the worker endpoint
    /// is TLS and there are local pools.
    pub local_workers: Option<SocketAddr>,
    /// Whether the front door speaks TLS (`https://`).
    pub front_door_tls: bool,
    /// Whether the worker endpoint speaks TLS.
    pub workers_tls: bool,
    /// The admin bearer token.
    pub admin_token: String,
    /// A way to reach the driver.
    pub handle: Handle,
    stop: watch::Sender<bool>,
    stopped: oneshot::Receiver<()>,
    shutdown_within: std::time::Duration,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("front_door", &self.front_door)
            .field("admin", &self.admin)
            .field("workers", &self.workers)
            .field("local_workers", &self.local_workers)
            .field("front_door_tls", &self.front_door_tls)
            .field("workers_tls", &self.workers_tls)
            .finish_non_exhaustive()
    }
}

impl Started {
    /// Graceful shutdown: stop accepting, let in-flight calls finish (up to the configured
    /// bound), stop every worker process. Resolves when all of that is done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.handle.shutdown(self.shutdown_within).await;
        let _ = self.stopped.await;
    }
}

/// Starts a runtime with `config` on `rt`; `apps` are deployed in addition to the config's.
/// Serves `local` and `external` pools; see [`start_with`] for other kinds.
pub async fn start<R: Runtime>(rt: R, config: Config, apps: &[PathBuf]) -> Result<Started, StartError> {
    start_with(rt, config, apps, Vec::new()).await
}

/// [`start`], with provisioners for pool kinds this crate does not serve itself (a shell
/// passes one factory per kind it supports). A pool whose kind has no factory is a config
/// error.
pub async fn start_with<R: Runtime>(
    rt: R,
    config: Config,
    apps: &[PathBuf],
    factories: Vec<Box<dyn ProvisionerFactory>>,
) -> Result<Started, StartError> {
    config.validate()?;
    for pool in &config.pools {
        let builtin = matches!(pool.provisioner, ProvisionerKind::Local | ProvisionerKind::External);
        if !builtin && !factories.iter().any(|f| f.kind() == pool.provisioner) {
            return Err(ConfigError::Invalid(format!(
                "pool {}: this build has no {:?} provisioner (use switchboard-tokio)",
                pool.language, pool.provisioner
            ))
            .into());
        }
    }
    let front_tls = config.tls.front_door.as_ref().map(|t| tls::acceptor("front_door", t, tls::ALPN_HTTP));
    let front_tls = front_tls.transpose()?;
    let workers_tls = config.tls.workers.as_ref().map(|t| tls::acceptor("workers", t, tls::ALPN_H2));
    let workers_tls = workers_tls.transpose()?;
    // Workers may be started only once their endpoint listens: bind everything first.
    let (workers_std, workers) = bind("workers", config.listen.workers)?;
    let (front_std, front_door) = bind("front door", config.listen.front_door)?;
    let (admin_std, admin) = bind("admin", config.listen.admin)?;
    let listener =
        |l| rt.listener(l).map_err(|source| StartError::Bind { what: "listener", addr: workers, source });
    let (workers_l, front_l, admin_l) = (listener(workers_std)?, listener(front_std)?, listener(admin_std)?);
    // Local workers (the real Python worker) cannot speak TLS: with a TLS worker endpoint they
    // dial a plaintext listener on loopback that admits only the ids the runtime issued.
    let has_local = config.pools.iter().any(|p| p.provisioner == ProvisionerKind::Local);
    let local = if workers_tls.is_some() && has_local {
        let addr = config.listen.local_workers.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let (std, addr) = bind("local workers", addr)?;
        Some((listener(std)?, addr))
    } else {
        None
    };
    let local_workers = local.as_ref().map(|(_, addr)| *addr);

    let admin_token = admin_token(&config)?;
    let local_pools = local_pools(&config).await?;

    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the OS provides randomness");
    let (handle, rx) = driver::channel();

    let mut provisioners = Provisioners::default();
    if !local_pools.is_empty() {
        let (host, port) = match local_workers {
            Some(addr) => (addr.ip().to_string(), addr.port()),
            None => {
                let host = config.listen.advertise_host.clone().unwrap_or_else(|| workers.ip().to_string());
                (host, workers.port())
            }
        };
        let keys: Vec<PoolKey> = local_pools.iter().map(|p| p.key.clone()).collect();
        let local = LocalProvisioner::new(
            rt.clone(),
            handle.clone(),
            local_pools,
            host,
            port,
            config.limits.max_message_bytes,
            config.timeouts.kill_grace,
        );
        provisioners.add(keys, Box::new(local));
    }
    let mut adopt = Vec::new();
    for factory in factories {
        let kind = factory.kind();
        let pools: Vec<_> = config.pools.iter().filter(|p| p.provisioner == kind).cloned().collect();
        if pools.is_empty() {
            continue;
        }
        let keys: Vec<PoolKey> = pools.iter().map(|p| PoolKey::new(&p.language, &p.version)).collect();
        let ctx = FactoryContext { config: config.clone(), pools, handle: handle.clone(), workers };
        let built = factory.build(ctx).await.map_err(|error| StartError::Provisioner { kind, error })?;
        provisioners.add(keys, built.provisioner);
        adopt.extend(built.adopt);
    }
    let core = new_core(&config, seed, adopt, &mut provisioners);

    let (stopped_tx, stopped) = oneshot::channel();
    let metrics = Metrics::new();
    let metrics_registry = metrics.registry();
    let refused = metrics.connection_refusals();
    let logs = LogHub::default();
    let telemetry = Telemetry::new(metrics, logs.clone());
    let driver = Driver::new(rt.clone(), core, rx, provisioners, telemetry);
    rt.spawn(async move {
        driver.run().await;
        let _ = stopped_tx.send(());
    });

    for app in &config.apps {
        let options = AppOptions {
            name: app.name.clone(),
            settings: app.settings.clone(),
            scale: app.scale(),
            ..AppOptions::default()
        };
        deploy(&handle, &app.path, options).await?;
    }
    for path in apps {
        deploy(&handle, path, AppOptions::default()).await?;
    }

    let (stop, stop_rx) = watch::channel(false);
    let policy = |listener, tls| ConnPolicy {
        listener,
        tls,
        first_request: config.timeouts.handshake,
        max_per_address: config.limits.max_connections_per_address,
        refused: refused.clone(),
    };
    let endpoint = |issued_only| {
        WorkerEndpoint::service_with(
            rt.clone(),
            handle.clone(),
            config.limits.worker_outbound_queue,
            config.limits.max_message_bytes,
            issued_only,
        )
    };
    let keepalive = (config.timeouts.keepalive_interval, config.timeouts.keepalive_timeout);
    let workers_policy = policy("workers", workers_tls.clone());
    rt.spawn(serve::serve_grpc(
        rt.clone(),
        workers_l,
        endpoint(false),
        keepalive,
        workers_policy,
        stop_rx.clone(),
    ));
    if let Some((local_l, _)) = local {
        let local_policy = policy("local_workers", None);
        rt.spawn(serve::serve_grpc(
            rt.clone(),
            local_l,
            endpoint(true),
            keepalive,
            local_policy,
            stop_rx.clone(),
        ));
    }
    let limits = FrontDoorLimits {
        max_body: config.limits.max_body_bytes,
        max_header_bytes: config.limits.max_header_bytes,
        max_headers: config.limits.max_headers,
    };
    let front = FrontDoor::new(handle.clone(), limits);
    let front_handler = move |req, _peer| Arc::clone(&front).serve(req);
    let front_policy = policy("front_door", front_tls.clone());
    rt.spawn(serve::serve_http(rt.clone(), front_l, front_handler, front_policy, stop_rx.clone()));
    let sleep_rt = rt.clone();
    let parts = AdminParts {
        token: admin_token.clone(),
        public_metrics: config.admin.public_metrics,
        metrics: metrics_registry,
        logs,
        stop: stop_rx.clone(),
        sleep: Arc::new(move |at| sleep_rt.sleep_until(at)),
    };
    let api = AdminApi::new(handle.clone(), parts);
    let admin_handler = move |req, _peer| Arc::clone(&api).serve(req);
    rt.spawn(serve::serve_http(rt.clone(), admin_l, admin_handler, policy("admin", None), stop_rx));

    let (front_door_tls, workers_tls) = (front_tls.is_some(), workers_tls.is_some());
    tracing::info!(%front_door, front_door_tls, %admin, %workers, workers_tls, ?local_workers, "switchboard listening");
    Ok(Started {
        front_door,
        admin,
        workers,
        local_workers,
        front_door_tls,
        workers_tls,
        admin_token,
        handle,
        stop,
        stopped,
        shutdown_within: config.timeouts.shutdown,
    })
}

/// The core, with the workers to adopt expected before their pools provision replacements:
/// such pools start with `min_idle` 0 and get their real bounds once the workers are expected.
fn new_core(
    config: &Config,
    seed: [u8; 32],
    adopt: Vec<Adopt>,
    provisioners: &mut Provisioners,
) -> switchboard_core::Runtime {
    let now = Instant::now();
    let mut cfg = config.core(seed);
    let adopting: Vec<switchboard_core::PoolSpec> =
        cfg.pools.iter().filter(|p| adopt.iter().any(|a| a.pool == p.key)).cloned().collect();
    for spec in cfg.pools.iter_mut().filter(|p| adopting.iter().any(|a| a.key == p.key)) {
        spec.min_idle = 0;
    }
    let mut core = switchboard_core::Runtime::new(cfg, now);
    for Adopt { pool, worker, within } in adopt {
        provisioners.claim(&pool, worker.clone());
        match core.expect_worker(now, &pool, worker.clone(), within) {
            Ok(()) => tracing::info!(%worker, %pool, ?within, "adopting a worker left by an earlier run"),
            Err(error) => {
                tracing::info!(%worker, %pool, %error, "not adopting a worker left by an earlier run");
                provisioners.release(&worker, &format!("not adopted: {error}"));
            }
        }
    }
    for spec in adopting {
        // The bounds were valid when the core was built with them.
        let _ = core.upsert_pool(now, spec);
    }
    core
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { what, addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

async fn deploy(handle: &Handle, path: &Path, options: AppOptions) -> Result<(), StartError> {
    let app_err = |error: String| StartError::App { path: path.to_owned(), error };
    let spec = load_app(path, &options).map_err(|e: LoadError| app_err(e.to_string()))?;
    let result = handle.with_core(move |core, now| core.deploy(now, spec)).await;
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(app_err(e.to_string())),
        Err(e) => Err(app_err(e.to_string())),
    }
}

/// The local pools, with the built-in Python worker installed where a python pool has no
/// command. Installing runs on its own thread: it can take a minute on a fresh machine.
async fn local_pools(config: &Config) -> Result<Vec<LocalPool>, StartError> {
    let mut pools = Vec::new();
    for pool in config.pools.iter().filter(|p| p.provisioner == ProvisionerKind::Local) {
        let command = if pool.command.is_empty() {
            let cache = config.cache_dir.clone().unwrap_or_else(python::default_cache_dir);
            let (tx, rx) = oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(python::worker_command(&cache));
            });
            rx.await.expect("the install thread answers").map_err(StartError::PythonWorker)?
        } else {
            pool.command.clone()
        };
        pools.push(LocalPool {
            key: PoolKey::new(&pool.language, &pool.version),
            command,
            env: pool.core().environment,
            cwd: None,
        });
    }
    Ok(pools)
}

/// The configured admin token, or the one stored in the state folder (made on first start).
fn admin_token(config: &Config) -> Result<String, StartError> {
    if let Some(token) = &config.admin.token {
        return Ok(token.clone());
    }
    let path = config.state_dir.join("admin-token");
    let err = |source| StartError::AdminToken { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(&config.state_dir).map_err(err)?;
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        file.write_all(token.as_bytes()).map_err(err)?;
    }
    tracing::info!(path = %path.display(), "generated an admin token");
    Ok(token)
}
