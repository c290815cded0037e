//! Provisioners: how a pool gets worker processes. The core decides when a worker is needed
//! or no longer wanted; a provisioner starts or stops one, and reports back what happened.

mod local;
pub mod python;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use switchboard_core::{PoolKey, ProvisionRequest, WorkerId};

pub use local::{LocalPool, LocalProvisioner, die_with_parent, signal_group};

/// Starts and stops workers for one or more pools.
pub trait Provisioner: Send {
    /// Start a worker that will connect with `request.worker` as its id. Failures are reported
    /// to the driver as `Input::ProvisionFailed`, exits as `Input::WorkerExited`.
    fn provision(&mut self, request: ProvisionRequest);
    /// Stop a worker (it is no longer wanted, or misbehaved).
    fn release(&mut self, worker: &WorkerId, reason: &str);
    /// The worker's process is gone (its exit was reported): drop what is kept about it.
    fn forget(&mut self, worker: &WorkerId);
    /// Stop everything this provisioner started; resolves when it is gone.
    fn shutdown(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// The process id of a worker this provisioner started on this machine, for operators.
    fn pid(&self, _worker: &WorkerId) -> Option<u32> {
        None
    }
}

/// Routes provision and release requests to each pool's provisioner.
#[derive(Default)]
pub struct Provisioners {
    by_pool: HashMap<PoolKey, usize>,
    all: Vec<Box<dyn Provisioner>>,
    owner: HashMap<WorkerId, usize>,
}

impl std::fmt::Debug for Provisioners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioners").field("pools", &self.by_pool.len()).finish()
    }
}

impl Provisioners {
    /// Registers a provisioner for these pools.
    pub fn add(&mut self, pools: impl IntoIterator<Item = PoolKey>, provisioner: Box<dyn Provisioner>) {
        let index = self.all.len();
        self.all.push(provisioner);
        for pool in pools {
            self.by_pool.insert(pool, index);
        }
    }

    pub(crate) fn provision(&mut self, request: ProvisionRequest) {
        match self.by_pool.get(&request.pool) {
            Some(&i) => {
                self.owner.insert(request.worker.clone(), i);
                self.all[i].provision(request);
            }
            None => tracing::error!(pool = %request.pool, "no provisioner for this pool"),
        }
    }

    /// Routes a worker this run did not provision (one an earlier incarnation of the runtime
    /// started, being adopted) to its pool's provisioner, so that releasing it reaches that
    /// provisioner.
    pub fn claim(&mut self, pool: &PoolKey, worker: WorkerId) {
        if let Some(&i) = self.by_pool.get(pool) {
            self.owner.insert(worker, i);
        }
    }

    pub(crate) fn release(&mut self, worker: &WorkerId, reason: &str) {
        if let Some(i) = self.owner.remove(worker) {
            self.all[i].release(worker, reason);
        }
    }

    pub(crate) fn forget(&mut self, worker: &WorkerId) {
        if let Some(i) = self.owner.remove(worker) {
            self.all[i].forget(worker);
        }
    }

    pub(crate) fn pid(&self, worker: &WorkerId) -> Option<u32> {
        self.owner.get(worker).and_then(|&i| self.all[i].pid(worker))
    }

    pub(crate) fn shutdown(&mut self) -> impl Future<Output = ()> + Send + use<> {
        let all: Vec<_> = self.all.iter_mut().map(|p| p.shutdown()).collect();
        async move {
            for done in all {
                done.await;
            }
        }
    }
}
