//! The `kubernetes` provisioner: workers run as pods, and the runtime asks the Kubernetes API
//! server for them instead of starting processes.
//!
//! - [`Factory`] builds it when the runtime starts: it reads each pool's pod template, makes a
//!   client (the config's kubeconfig, else `KUBECONFIG`, `~/.kube/config` or the in-cluster
//!   service account) and reconciles the pods an earlier incarnation of this runtime left
//!   (`reconcile.rs`): it adopts those whose worker may come back, deletes the rest.
//! - [`KubeProvisioner`] is the shell's synchronous, non-blocking face: each call is a message
//!   to one task (`pods.rs`) that owns every pod of this runtime. It creates pods (rate
//!   limited, never more than the pool's `max` in existence), deletes them on release, and
//!   follows the pod watch (`watch.rs`).
//! - A pod that fails, is evicted or is deleted behind the runtime's back means its worker is
//!   gone: the core gets `WorkerExited`, settles the worker like a lost one, and provisions a
//!   replacement (backing off while workers keep failing).
//! - When the API server is unreachable the runtime keeps serving with the workers it has;
//!   calls are retried with capped exponential backoff and the state change is logged once.
//!
//! Pods carry `app.kubernetes.io/managed-by=switchboard` and `switchboard.io/runtime=<id>`;
//! a runtime lists, watches and deletes only pods with its own id.

mod api;
mod pods;
mod reconcile;
mod template;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use switchboard_core::{ProvisionRequest, WorkerId};
use switchboard_shell::config::{Kubernetes, ProvisionerKind};
use switchboard_shell::provision::Provisioner;
use switchboard_shell::server::{Built, FactoryContext, ProvisionerFactory};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use api::ApiClient;
use pods::{Msg, Pods, Setup};
use template::{Identity, PoolPods, WorkerArgs};

/// Builds the kubernetes provisioner at start (see [`switchboard_shell::start_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ProvisionerFactory for Factory {
    fn kind(&self) -> ProvisionerKind {
        ProvisionerKind::Kubernetes
    }

    fn build(
        self: Box<Self>,
        ctx: FactoryContext,
    ) -> Pin<Box<dyn Future<Output = Result<Built, String>> + Send>> {
        Box::pin(build(ctx))
    }
}

async fn build(ctx: FactoryContext) -> Result<Built, String> {
    let k = &ctx.config.kubernetes;
    let runtime_id = runtime_id(k)?;
    let api = ApiClient::connect(k.kubeconfig.clone()).await?;
    let default_namespace = k.namespace.clone().unwrap_or_else(|| api.default_namespace.clone());
    let mut pools = HashMap::new();
    for pool in &ctx.pools {
        let pods = PoolPods::from_config(pool, &default_namespace)?;
        pools.insert(pods.key.clone(), pods);
    }
    let host = k
        .worker_host
        .clone()
        .or_else(|| ctx.config.listen.advertise_host.clone())
        .unwrap_or_else(|| ctx.workers.ip().to_string());
    let args = WorkerArgs {
        host,
        port: k.worker_port.unwrap_or(ctx.workers.port()),
        max_message: ctx.config.limits.max_message_bytes,
    };
    let identity = Identity { owner: owner(k, &runtime_id), runtime_id };
    let selector = template::selector(&identity.runtime_id);
    let namespaces: BTreeSet<String> = pools.values().map(|p| p.namespace.clone()).collect();
    let found = reconcile::on_start(&api, &namespaces, &selector, &pools, k.adopt_grace).await;
    tracing::info!(
        runtime = %identity.runtime_id,
        namespaces = ?namespaces,
        workers_dial = %format!("{}:{}", args.host, args.port),
        adopting = found.adopt.len(),
        "kubernetes provisioner ready"
    );

    let (tx, rx) = mpsc::unbounded_channel();
    let setup = Setup {
        api: api.clone(),
        handle: ctx.handle.clone(),
        pools,
        args,
        identity,
        creates_per_second: k.creates_per_second,
        create_burst: k.create_burst,
        found: found.entries,
    };
    let span = tracing::info_span!("kubernetes", runtime = %setup.identity.runtime_id);
    let owner = Pods::new(setup, rx, &tx);
    let mut watches = Vec::new();
    for namespace in namespaces {
        let task = watch::watch_pods(api.clone(), namespace, selector.clone(), tx.downgrade());
        watches.push(tokio::spawn(task.instrument(span.clone())));
    }
    let owner = async move {
        owner.run().await;
        for watch in watches {
            watch.abort();
        }
    };
    tokio::spawn(owner.instrument(span));
    Ok(Built { provisioner: Box::new(KubeProvisioner { tx }), adopt: found.adopt })
}

/// The configured runtime id, else `POD_NAME`, else the host name; it must be a label value.
fn runtime_id(k: &Kubernetes) -> Result<String, String> {
    let id = k
        .runtime_id
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok().filter(|v| !v.is_empty()))
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|id| !id.is_empty())
        .ok_or("no runtime id: set kubernetes.runtime_id or POD_NAME")?;
    template::check_label_value(&id).map_err(|e| format!("runtime id: {e} (set kubernetes.runtime_id)"))?;
    Ok(id)
}

/// The runtime's own pod as the owner of its worker pods, when its UID is known.
fn owner(k: &Kubernetes, runtime_id: &str) -> Option<OwnerReference> {
    let uid = k.owner_uid.clone().or_else(|| std::env::var("POD_UID").ok()).filter(|u| !u.is_empty())?;
    let name =
        std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| runtime_id.to_owned());
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name,
        uid,
        ..OwnerReference::default()
    })
}

/// The provisioner the driver calls: every call is a message to the pod owner task, so none
/// blocks.
#[derive(Debug)]
pub struct KubeProvisioner {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Provisioner for KubeProvisioner {
    fn provision(&mut self, request: ProvisionRequest) {
        let _ = self.tx.send(Msg::Provision(request));
    }

    fn release(&mut self, worker: &WorkerId, reason: &str) {
        tracing::debug!(%worker, reason, "releasing worker pod");
        let _ = self.tx.send(Msg::Release(worker.clone()));
    }

    fn forget(&mut self, worker: &WorkerId) {
        let _ = self.tx.send(Msg::Forget(worker.clone()));
    }

    fn shutdown(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Shutdown(done));
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
