//! The pod watch of one namespace: this runtime's pods only (label selector), forwarded to the
//! pod owner task. On failure it backs off, rebuilds the client and starts over with a full
//! list, so pods deleted while it was down are noticed.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use super::api::{ApiClient, Backoff, quiet};
use super::pods::{Call, Msg};

/// Watches `namespace` until the pod owner task is gone.
pub(super) async fn watch_pods(
    api: Arc<ApiClient>,
    namespace: String,
    selector: String,
    tx: mpsc::WeakUnboundedSender<Msg>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let (generation, pods) = api.pods(&namespace);
        let mut events = pin!(watcher(pods, watcher::Config::default().labels(&selector)));
        let error = loop {
            match quiet(events.next()).await {
                Some(Ok(event)) => {
                    if !matches!(event, watcher::Event::Init) {
                        backoff.reset();
                    }
                    let Some(tx) = tx.upgrade() else { return };
                    let event = Box::new(event);
                    if tx.send(Msg::Watch { namespace: namespace.clone(), generation, event }).is_err() {
                        return;
                    }
                }
                // The resource version is too old: the watcher lists again by itself.
                Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => {}
                Some(Err(e)) => break e.to_string(),
                None => break "the watch ended".to_owned(),
            }
        };
        let Some(sender) = tx.upgrade() else { return };
        // A long-lived watch that breaks says the API server is down now: its "call" begins now.
        let call = Call { started: Instant::now(), generation };
        if sender.send(Msg::WatchFailed { call, error }).is_err() {
            return;
        }
        drop(sender);
        tokio::time::sleep(backoff.fail()).await;
        api.refresh(generation).await;
    }
}
