//! The task that owns every pod of this runtime: one entry per worker, from the provision
//! request to the pod's confirmed deletion. API calls run in their own tasks and report back
//! here; the pod watch reports here too. Nothing is shared, nothing is locked.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use switchboard_core::{Input, PoolKey, ProvisionRequest, WorkerId};
use switchboard_shell::driver::{Command, Handle};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::api::{ApiClient, Backoff, Bucket, CallError, Health, call as api_call};
use super::template::{self, Identity, PoolPods, WorkerArgs};

/// Longest wait at shutdown for this runtime's pods to be deleted.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// What the task is told.
#[derive(Debug)]
pub(super) enum Msg {
    /// The core wants a worker.
    Provision(ProvisionRequest),
    /// The core no longer wants this worker.
    Release(WorkerId),
    /// The core knows this worker is gone.
    Forget(WorkerId),
    /// Delete every pod, then answer.
    Shutdown(oneshot::Sender<()>),
    /// A create call (made at `started` with client `generation`) ended.
    Created { worker: WorkerId, call: Call, result: Result<(), CallError> },
    /// A delete call ended: `Ok(true)` when the pod is gone, `Ok(false)` when it terminates
    /// gracefully (gone when the watch says so).
    Deleted { worker: WorkerId, call: Call, result: Result<bool, CallError> },
    /// What the pod watch of a namespace saw.
    Watch { namespace: String, generation: u64, event: Box<watcher::Event<Pod>> },
    /// The pod watch of a namespace failed; it retries with backoff.
    WatchFailed { call: Call, error: String },
}

/// When an API call began and with which client generation (for [`Health`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Call {
    pub(super) started: Instant,
    pub(super) generation: u64,
}

/// Where a worker's pod is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting to be created (rate limit, the pool's `max`, API backoff).
    Queued,
    /// Create call in flight.
    Creating,
    /// The API server has it.
    Live,
    /// To be deleted (waiting for the API backoff).
    Doomed,
    /// Delete call in flight.
    Deleting,
    /// Delete accepted; the pod terminates gracefully.
    Terminating,
}

/// One worker's pod.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) pool: PoolKey,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) phase: Phase,
    /// The core still wants this worker (not released, not reported gone).
    pub(super) wanted: bool,
    /// The pod to create (until it is live).
    pub(super) pod: Option<Box<Pod>>,
}

impl Entry {
    /// A pod found in the API server (adopted or to delete).
    pub(super) fn found(pool: PoolKey, namespace: String, name: String, phase: Phase, wanted: bool) -> Self {
        Entry { pool, namespace, name, phase, wanted, pod: None }
    }

    /// Counts toward the pool's `max`: it exists, or may.
    fn counts(&self) -> bool {
        self.phase != Phase::Queued
    }
}

/// A relist of a namespace in progress: which known pods existed before it began, which it saw.
#[derive(Debug, Default)]
struct Relist {
    before: BTreeSet<WorkerId>,
    seen: BTreeSet<WorkerId>,
}

/// The pod owner task.
pub(super) struct Pods {
    api: Arc<ApiClient>,
    handle: Handle,
    rx: mpsc::UnboundedReceiver<Msg>,
    tx: mpsc::WeakUnboundedSender<Msg>,
    pools: HashMap<PoolKey, PoolPods>,
    args: WorkerArgs,
    identity: Identity,
    entries: HashMap<WorkerId, Entry>,
    queue: VecDeque<WorkerId>,
    bucket: Bucket,
    /// When the rate limit allows the next create.
    bucket_at: Option<Instant>,
    backoff: Backoff,
    /// No API call before this (after a transient failure).
    retry_at: Option<Instant>,
    health: Health,
    relists: HashMap<String, Relist>,
    shutdown: Option<(Instant, oneshot::Sender<()>)>,
}

impl std::fmt::Debug for Pods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pods").field("entries", &self.entries.len()).finish_non_exhaustive()
    }
}

/// How the task is set up.
pub(super) struct Setup {
    pub(super) api: Arc<ApiClient>,
    pub(super) handle: Handle,
    pub(super) pools: HashMap<PoolKey, PoolPods>,
    pub(super) args: WorkerArgs,
    pub(super) identity: Identity,
    pub(super) creates_per_second: u32,
    pub(super) create_burst: u32,
    /// Pods found at start (adopted, or to delete).
    pub(super) found: Vec<(WorkerId, Entry)>,
}

impl Pods {
    pub(super) fn new(
        setup: Setup,
        rx: mpsc::UnboundedReceiver<Msg>,
        tx: &mpsc::UnboundedSender<Msg>,
    ) -> Self {
        let health = Health::new(&setup.identity.runtime_id);
        Pods {
            api: setup.api,
            handle: setup.handle,
            rx,
            tx: tx.downgrade(),
            pools: setup.pools,
            args: setup.args,
            identity: setup.identity,
            entries: setup.found.into_iter().collect(),
            queue: VecDeque::new(),
            bucket: Bucket::new(setup.creates_per_second, setup.create_burst, Instant::now()),
            bucket_at: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            retry_at: None,
            health,
            relists: HashMap::new(),
            shutdown: None,
        }
    }

    /// Runs until shut down, or until the provisioner is dropped.
    pub(super) async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.pump(now);
            if self.finished(now) {
                break;
            }
            let wake = [self.retry_at, self.bucket_at.filter(|_| !self.queue.is_empty()), self.shutdown_at()]
                .into_iter()
                .flatten()
                .min();
            let msg = match wake {
                Some(at) => tokio::select! {
                    msg = self.rx.recv() => msg,
                    () = tokio::time::sleep_until(at.into()) => continue,
                },
                None => self.rx.recv().await,
            };
            match msg {
                Some(msg) => self.on(msg),
                None => return,
            }
        }
        if let Some((_, done)) = self.shutdown.take() {
            let _ = done.send(());
        }
    }

    fn shutdown_at(&self) -> Option<Instant> {
        self.shutdown.as_ref().map(|(at, _)| *at)
    }

    /// Shutting down, and every pod is deleted (or the bound passed).
    fn finished(&self, now: Instant) -> bool {
        let Some((deadline, _)) = &self.shutdown else { return false };
        let left: Vec<&str> = self
            .entries
            .values()
            .filter(|e| e.phase != Phase::Terminating)
            .map(|e| e.name.as_str())
            .collect();
        if left.is_empty() {
            return true;
        }
        if now >= *deadline {
            tracing::warn!(
                runtime = %self.identity.runtime_id,
                pods = ?left,
                "shutdown: some worker pods could not be deleted; this runtime deletes them when it starts again with the same runtime id"
            );
            return true;
        }
        false
    }

    fn on(&mut self, msg: Msg) {
        match msg {
            Msg::Provision(request) => self.on_provision(request),
            Msg::Release(worker) => self.on_release(&worker),
            Msg::Forget(worker) => {
                if let Some(entry) = self.entries.get_mut(&worker) {
                    entry.wanted = false;
                    if entry.phase == Phase::Queued {
                        self.entries.remove(&worker);
                        self.queue.retain(|w| *w != worker);
                    }
                }
            }
            Msg::Shutdown(done) => self.on_shutdown(done),
            Msg::Created { worker, call, result } => self.on_created(worker, call, result),
            Msg::Deleted { worker, call, result } => self.on_deleted(worker, call, result),
            Msg::Watch { namespace, generation, event } => self.on_watch(namespace, generation, *event),
            Msg::WatchFailed { call, error } => {
                self.health.failed(call.started, call.generation, "watch pods", &error);
            }
        }
    }

    fn on_provision(&mut self, request: ProvisionRequest) {
        let Some(pool) = self.pools.get(&request.pool) else {
            let error = format!("no kubernetes pool {}", request.pool);
            self.report(Input::ProvisionFailed { worker: request.worker, error });
            return;
        };
        if self.shutdown.is_some() {
            let error = "the runtime is shutting down".to_owned();
            self.report(Input::ProvisionFailed { worker: request.worker, error });
            return;
        }
        let pod = pool.pod(&request, &self.args, &self.identity);
        let entry = Entry {
            pool: pool.key.clone(),
            namespace: pool.namespace.clone(),
            name: template::name_of(&pod),
            phase: Phase::Queued,
            wanted: true,
            pod: Some(Box::new(pod)),
        };
        self.entries.insert(request.worker.clone(), entry);
        self.queue.push_back(request.worker);
    }

    fn on_release(&mut self, worker: &WorkerId) {
        let Some(entry) = self.entries.get_mut(worker) else { return };
        entry.wanted = false;
        match entry.phase {
            Phase::Queued => {
                self.entries.remove(worker);
                self.queue.retain(|w| w != worker);
            }
            Phase::Live => entry.phase = Phase::Doomed,
            // Creating: deleted once created; the others are on their way out already.
            _ => {}
        }
    }

    fn on_shutdown(&mut self, done: oneshot::Sender<()>) {
        self.shutdown = Some((Instant::now() + SHUTDOWN_BOUND, done));
        self.queue.clear();
        self.entries.retain(|_, e| e.phase != Phase::Queued);
        for entry in self.entries.values_mut() {
            entry.wanted = false;
            if entry.phase == Phase::Live {
                entry.phase = Phase::Doomed;
            }
        }
    }

    /// Starts the API calls that are due: deletes first, then creates within the rate limit
    /// and each pool's `max`.
    fn pump(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at > now) {
            return;
        }
        self.retry_at = None;
        let doomed: Vec<WorkerId> =
            self.entries.iter().filter(|(_, e)| e.phase == Phase::Doomed).map(|(w, _)| w.clone()).collect();
        for worker in doomed {
            self.delete(worker);
        }
        if self.shutdown.is_some() {
            return;
        }
        self.bucket_at = None;
        let mut i = 0;
        while i < self.queue.len() {
            let worker = &self.queue[i];
            let Some(entry) = self.entries.get(worker).filter(|e| e.phase == Phase::Queued) else {
                self.queue.remove(i);
                continue;
            };
            let max = self.pools.get(&entry.pool).map_or(0, |p| p.max);
            let pool = entry.pool.clone();
            if self.pods_of(&pool) >= max as usize {
                i += 1; // this pool is full until one of its pods is gone; others may go ahead
                continue;
            }
            if let Err(next) = self.bucket.take(now) {
                self.bucket_at = Some(next);
                return;
            }
            let worker = self.queue.remove(i).expect("index checked");
            self.create(worker);
        }
    }

    /// Pods of a pool that exist or may exist.
    fn pods_of(&self, pool: &PoolKey) -> usize {
        self.entries.values().filter(|e| &e.pool == pool && e.counts()).count()
    }

    fn create(&mut self, worker: WorkerId) {
        let Some(entry) = self.entries.get_mut(&worker) else { return };
        let Some(pod) = entry.pod.clone() else { return };
        entry.phase = Phase::Creating;
        let (generation, api) = self.api.pods(&entry.namespace);
        let client = Arc::clone(&self.api);
        let Some(tx) = self.tx.upgrade() else { return };
        tracing::debug!(pod = %entry.name, %worker, pool = %entry.pool, "creating worker pod");
        tokio::spawn(
            async move {
                let call = Call { started: Instant::now(), generation };
                let result =
                    api_call(&client, generation, api.create(&PostParams::default(), &pod)).await.map(|_| ());
                let _ = tx.send(Msg::Created { worker, call, result });
            }
            .in_current_span(),
        );
    }

    fn delete(&mut self, worker: WorkerId) {
        let Some(entry) = self.entries.get_mut(&worker) else { return };
        entry.phase = Phase::Deleting;
        let (generation, api) = self.api.pods(&entry.namespace);
        let client = Arc::clone(&self.api);
        let name = entry.name.clone();
        let Some(tx) = self.tx.upgrade() else { return };
        tracing::debug!(pod = %name, %worker, "deleting worker pod");
        tokio::spawn(
            async move {
                let call = Call { started: Instant::now(), generation };
                let result = api_call(&client, generation, api.delete(&name, &DeleteParams::default())).await;
                // Deleted at once (the API answers with the final object or a Status), or
                // terminating gracefully (the object now has a deletionTimestamp).
                let result = result.map(|either| either.left().is_none_or(|pod| !template::deleting(&pod)));
                let _ = tx.send(Msg::Deleted { worker, call, result });
            }
            .in_current_span(),
        );
    }

    fn on_created(&mut self, worker: WorkerId, call: Call, result: Result<(), CallError>) {
        let Some(entry) = self.entries.get_mut(&worker).filter(|e| e.phase == Phase::Creating) else {
            return;
        };
        match result {
            Ok(()) => {}
            // An earlier try that timed out on our side went through.
            Err(e) if e.already_exists() => {}
            Err(e) if e.transient() => {
                self.health.failed(call.started, call.generation, "create pod", &e.to_string());
                self.retry_at = Some(Instant::now() + self.backoff.fail());
                if entry.wanted {
                    entry.phase = Phase::Queued;
                    self.queue.push_front(worker);
                } else {
                    // It may exist even so: make sure.
                    entry.phase = Phase::Doomed;
                }
                return;
            }
            Err(e) => {
                // The API server refused the pod (invalid template, forbidden, no namespace):
                // the core backs the pool off; trying again as is would fail again.
                self.health.ok(call.generation);
                tracing::error!(pod = %entry.name, %worker, pool = %entry.pool, error = %e, "worker pod refused");
                let wanted = entry.wanted;
                self.entries.remove(&worker);
                if wanted {
                    let error = format!("the API server refused the pod: {e}");
                    self.report(Input::ProvisionFailed { worker, error });
                }
                return;
            }
        }
        self.health.ok(call.generation);
        self.backoff.reset();
        entry.pod = None;
        entry.phase = if entry.wanted { Phase::Live } else { Phase::Doomed };
    }

    fn on_deleted(&mut self, worker: WorkerId, call: Call, result: Result<bool, CallError>) {
        let Some(entry) = self.entries.get_mut(&worker).filter(|e| e.phase == Phase::Deleting) else {
            return;
        };
        match result {
            Ok(gone) => {
                self.health.ok(call.generation);
                self.backoff.reset();
                if gone {
                    self.entries.remove(&worker);
                } else {
                    entry.phase = Phase::Terminating;
                }
            }
            Err(e) if e.not_found() => {
                self.entries.remove(&worker);
            }
            Err(e) => {
                if e.transient() {
                    self.health.failed(call.started, call.generation, "delete pod", &e.to_string());
                } else {
                    tracing::warn!(pod = %entry.name, error = %e, "cannot delete worker pod; retrying");
                }
                entry.phase = Phase::Doomed;
                self.retry_at = Some(Instant::now() + self.backoff.fail());
            }
        }
    }

    fn on_watch(&mut self, namespace: String, generation: u64, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                let before = self
                    .entries
                    .iter()
                    .filter(|(_, e)| {
                        e.namespace == namespace && !matches!(e.phase, Phase::Queued | Phase::Creating)
                    })
                    .map(|(w, _)| w.clone())
                    .collect();
                self.relists.insert(namespace, Relist { before, seen: BTreeSet::new() });
            }
            watcher::Event::InitApply(pod) => {
                self.health.ok(generation);
                if let (Some(relist), Some(worker)) =
                    (self.relists.get_mut(&namespace), template::worker_of(&pod))
                {
                    relist.seen.insert(worker);
                }
                self.on_pod(&namespace, pod);
            }
            watcher::Event::InitDone => {
                self.health.ok(generation);
                // Pods that existed before the list began and are not in it were deleted while
                // the watch was down (or the API server lost them): their workers are gone, as
                // the kubelet stops containers whose pods are gone.
                let Some(relist) = self.relists.remove(&namespace) else { return };
                for worker in relist.before.difference(&relist.seen) {
                    self.pod_gone(worker, "pod no longer exists in the API server");
                }
            }
            watcher::Event::Apply(pod) => {
                self.health.ok(generation);
                self.on_pod(&namespace, pod);
            }
            watcher::Event::Delete(pod) => {
                self.health.ok(generation);
                let worker = template::worker_of(&pod).unwrap_or_else(|| unlabelled(&pod));
                self.pod_gone(&worker, "pod deleted");
            }
        }
    }

    /// A pod of this runtime was added or changed.
    fn on_pod(&mut self, namespace: &str, pod: Pod) {
        let worker = template::worker_of(&pod).unwrap_or_else(|| unlabelled(&pod));
        let Some(entry) = self.entries.get_mut(&worker) else {
            // It carries this runtime's id, yet no worker of ours has it: a create given up on,
            // or a pod of an earlier incarnation that was not adopted. Nobody wants it.
            let name = template::name_of(&pod);
            let pool = template::pool_of(&pod).unwrap_or_else(|| PoolKey::new("", ""));
            let phase = if template::deleting(&pod) { Phase::Terminating } else { Phase::Doomed };
            tracing::info!(pod = %name, %worker, "deleting a pod of this runtime that no worker needs");
            self.entries.insert(worker, Entry::found(pool, namespace.to_owned(), name, phase, false));
            return;
        };
        if entry.phase == Phase::Creating {
            // The watch saw the pod before the create call returned.
            entry.pod = None;
            entry.phase = if entry.wanted { Phase::Live } else { Phase::Doomed };
        }
        if let Some(why) = template::ended(&pod) {
            let report = entry.wanted;
            entry.wanted = false;
            if entry.phase == Phase::Live {
                entry.phase = Phase::Doomed; // a failed pod stays in the API until deleted
            }
            tracing::info!(pod = %entry.name, %worker, reason = %why, "worker pod ended");
            if report {
                self.report(Input::WorkerExited { worker, status: why });
            }
        } else if template::deleting(&pod) && entry.phase == Phase::Live {
            // Deleted behind our back (kubectl, eviction, a node drain): the worker is going.
            let report = entry.wanted;
            entry.wanted = false;
            entry.phase = Phase::Terminating;
            tracing::info!(pod = %entry.name, %worker, "worker pod is being deleted by someone else");
            if report {
                self.report(Input::WorkerExited { worker, status: "pod is being deleted".into() });
            }
        }
    }

    /// The pod is gone from the API server.
    fn pod_gone(&mut self, worker: &WorkerId, why: &str) {
        let Some(entry) = self.entries.get(worker) else { return };
        if matches!(entry.phase, Phase::Queued) {
            return;
        }
        let entry = self.entries.remove(worker).expect("just found");
        if entry.wanted {
            tracing::info!(pod = %entry.name, %worker, reason = why, "worker pod gone");
            self.report(Input::WorkerExited { worker: worker.clone(), status: why.to_owned() });
        }
    }

    fn report(&self, input: Input) {
        let _ = self.handle.send(Command::Input(input));
    }
}

/// A made-up key for a pod of this runtime without a worker id label.
fn unlabelled(pod: &Pod) -> WorkerId {
    WorkerId(format!("pod/{}", template::name_of(pod)))
}
