//! The `switchboard` binary as a process: it prints where it listens, stops its workers on
//! SIGTERM, and leaves no worker behind even when it is killed outright.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::ServeProcess;
use switchboard_tests::{alive, http_get, kill, pids_with_arg, wait_for};

/// Starts `switchboard serve` on `shell` with free ports, two placeholders and the hello app.
async fn serve(name: &str, shell: &str) -> ServeProcess {
    ServeProcess::serve(name, &["serve", "--shell", shell], &["hello"], 2).await
}

async fn worker_pids(s: &ServeProcess, n: usize) -> Vec<u32> {
    let url = format!("{}/v1/workers", s.admin);
    let workers: Vec<Value> = wait_for(Duration::from_secs(30), "placeholders", || async {
        let workers =
            http_get(&url, Some(support::TOKEN)).await.json().as_array().cloned().unwrap_or_default();
        (workers.iter().filter(|w| w["state"] == "placeholder").count() >= n).then_some(workers)
    })
    .await;
    let pids: Vec<u32> = workers.iter().flat_map(|w| pids_with_arg(w["id"].as_str().unwrap())).collect();
    assert_eq!(pids.len(), workers.len(), "one process per worker: {workers:?}");
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_stops_every_worker() {
    let mut s = serve("term", "tokio").await;
    let resp = http_get(&format!("{}/hello/api/hello?name=cli", s.front_door), None).await;
    assert_eq!(resp.text(), "Hello, cli!");
    let pids = worker_pids(&s, 2).await;
    kill(s.child.id().unwrap(), libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), s.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "{status}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "workers left after SIGTERM: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runtime_leaves_no_orphans() {
    let mut s = serve("kill", "tokio").await;
    let pids = worker_pids(&s, 2).await;
    kill(s.child.id().unwrap(), libc::SIGKILL);
    let _ = s.child.wait().await;
    wait_for(Duration::from_secs(10), "workers to die with their runtime", || async {
        pids.iter().all(|p| !alive(*p)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smol_shell_serves_and_stops_cleanly_too() {
    let mut s = serve("smol", "smol").await;
    let resp = http_get(&format!("{}/hello/api/hello?name=smol", s.front_door), None).await;
    assert_eq!(resp.text(), "Hello, smol!");
    let pids = worker_pids(&s, 2).await;
    kill(s.child.id().unwrap(), libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), s.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "{status}");
    assert!(pids.into_iter().all(|p| !alive(p)), "workers left after SIGTERM");
}
