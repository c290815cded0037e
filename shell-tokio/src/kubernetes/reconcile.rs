//! Reconcile on start: the pods an earlier incarnation of this runtime left behind. Only pods
//! labelled with this runtime's id are listed, so other runtimes' pods are never seen, let
//! alone adopted or deleted.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use kube::api::ListParams;
use switchboard_core::{PoolKey, WorkerId};
use switchboard_shell::server::Adopt;

use super::api::{ApiClient, call};
use super::pods::{Entry, Phase};
use super::template::{self, PoolPods};

/// What was found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Entries for the pod owner task.
    pub(super) entries: Vec<(WorkerId, Entry)>,
    /// Workers the core should expect.
    pub(super) adopt: Vec<Adopt>,
}

/// Lists this runtime's pods in each namespace. A pod of a configured pool that is not ending
/// is adopted: its worker may connect again with its old id within `grace` (a worker that
/// redials), else the core releases it and the pod is deleted. Every other pod of this runtime
/// is deleted. A namespace that cannot be listed now is reconciled by the pod watch once the
/// API server answers (its pods are deleted then: too late to adopt).
pub(super) async fn on_start(
    api: &ApiClient,
    namespaces: &BTreeSet<String>,
    selector: &str,
    pools: &HashMap<PoolKey, PoolPods>,
    grace: Duration,
) -> Found {
    let mut found = Found::default();
    for namespace in namespaces {
        let (generation, pods) = api.pods(namespace);
        let list = match call(api, generation, pods.list(&ListParams::default().labels(selector))).await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(
                    %namespace,
                    %error,
                    "cannot list this runtime's pods at start; those of an earlier run are deleted once the API server answers"
                );
                continue;
            }
        };
        for pod in list.items {
            let name = template::name_of(&pod);
            let Some(worker) = template::worker_of(&pod) else {
                tracing::info!(pod = %name, "deleting a pod of this runtime without a worker id");
                let entry =
                    Entry::found(PoolKey::new("", ""), namespace.clone(), name.clone(), Phase::Doomed, false);
                found.entries.push((WorkerId(format!("pod/{name}")), entry));
                continue;
            };
            let pool =
                template::pool_of(&pod).filter(|p| pools.get(p).is_some_and(|pp| &pp.namespace == namespace));
            let (phase, adopt) = match &pool {
                _ if template::deleting(&pod) => (Phase::Terminating, false),
                _ if template::ended(&pod).is_some() => (Phase::Doomed, false),
                Some(_) => (Phase::Live, true),
                None => (Phase::Doomed, false),
            };
            let pool = pool.or_else(|| template::pool_of(&pod)).unwrap_or_else(|| PoolKey::new("", ""));
            if adopt {
                tracing::info!(pod = %name, %worker, %pool, "found a worker pod of an earlier run: adopting it");
                found.adopt.push(Adopt { pool: pool.clone(), worker: worker.clone(), within: grace });
            } else {
                tracing::info!(pod = %name, %worker, "found a pod of an earlier run that cannot be adopted: deleting it");
            }
            found.entries.push((worker, Entry::found(pool, namespace.clone(), name, phase, adopt)));
        }
    }
    found
}
