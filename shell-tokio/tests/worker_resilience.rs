//! `switchboard-worker` under faults, end to end: real runtime, real worker processes, the
//! `custom-echo` example's Python handler.
//!
//! 1. The connection is cut (a TCP proxy in between stops) with 20 invocations in flight: each
//!    gets exactly one correct answer after the worker resumes, and none runs twice.
//! 2. The runtime dies: the worker keeps redialing with capped backoff; a new runtime on the
//!    same address gets it registered and serving again.
//! 3. SIGSTOP: the runtime evicts the silent worker within 3 s and settles its calls once; after
//!    SIGCONT the worker delivers nothing twice and registers again cleanly.
//! 4. SIGTERM drains: in-flight calls complete, new ones go to the other worker, exit code 0.

mod worker_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::proxy::Proxy;
use switchboard_tests::{Resp, TestRuntime, wait_for};
use tokio::task::JoinHandle;
use worker_support::{config, deploy, runtime, wait_state, worker, workers_url};

/// Starts `n` calls of `custom-echo/api/slow` (tag `{prefix}{i}`, sleeping `ms(i)`).
fn slow_calls(
    rt: &Arc<TestRuntime>,
    prefix: &str,
    n: usize,
    ms: impl Fn(usize) -> u64,
) -> Vec<JoinHandle<Resp>> {
    (0..n)
        .map(|i| {
            let (rt, path) = (Arc::clone(rt), format!("custom-echo/api/slow?id={prefix}{i}&ms={}", ms(i)));
            tokio::spawn(async move { rt.get(&path).await })
        })
        .collect()
}

/// Waits until the worker has `n` calls in flight.
async fn in_flight(rt: &TestRuntime, id: &str, n: u64) {
    wait_for(Duration::from_secs(10), &format!("{n} calls in flight on {id}"), || async {
        worker(rt, id).await.filter(|w| w["in_flight"].as_u64() == Some(n)).map(|_| ())
    })
    .await;
}

/// How many times the handler started each tag.
async fn started(rt: &TestRuntime) -> serde_json::Map<String, Value> {
    let r = rt.get("custom-echo/api/runs").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["started"].as_object().cloned().unwrap_or_default()
}

/// (late, unknown) responses the runtime dropped: a duplicate delivery would show here.
async fn dropped_responses(rt: &TestRuntime) -> (u64, u64) {
    rt.started
        .handle
        .with_core(|core, _| {
            let c = core.counters();
            (c.late_responses, c.unknown_responses)
        })
        .await
        .expect("runtime running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_with_20_in_flight_resumes_and_answers_each_call_exactly_once() {
    let rt = Arc::new(runtime("cut").await);
    let mut proxy = Proxy::start(rt.started.workers).await;
    let w = worker_support::start(&proxy.url(), "w-cut", &[]);
    wait_state(&rt, "w-cut", "placeholder", Duration::from_secs(20)).await;
    deploy(&rt, "custom-echo", 1, 1).await;
    wait_state(&rt, "w-cut", "ready", Duration::from_secs(20)).await;

    // 20 calls that finish between 0.3 s and 1.5 s from now: some while the connection is
    // down (kept by the worker, sent on resume), the rest after it is back.
    let calls = slow_calls(&rt, "c", 20, |i| 300 + 60 * i as u64);
    in_flight(&rt, "w-cut", 20).await;
    let cut_at = Instant::now();
    proxy.stop(); // every connection through it drops; redials are refused...
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.resume(); // ...until now

    let mut pids = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.await.unwrap();
        assert_eq!(r.status, 200, "call {i}: {}", r.text());
        assert_eq!(r.json()["id"], format!("c{i}"), "call {i} got its own answer");
        pids.push(r.json()["pid"].clone());
    }
    let took = cut_at.elapsed();
    pids.dedup();
    assert_eq!(pids.len(), 1, "one handler process served them all (no reset): {pids:?}");
    let started = started(&rt).await;
    assert_eq!(started.len(), 20, "{started:?}");
    assert!(started.values().all(|n| n == 1), "each ran once: {started:?}");
    assert_eq!(dropped_responses(&rt).await, (0, 0), "no response reached the runtime twice");
    assert!(!w.lines_with("resumed").is_empty(), "the worker resumed its slot");
    assert!(w.lines_with("app reset").is_empty(), "its slot was never lost");
    assert_eq!(worker(&rt, "w-cut").await.unwrap()["state"], "ready");
    eprintln!("cut → all 20 answered in {took:?}");
}

/// A runtime on its own tokio runtime, so the test can kill it abruptly (as a crash would).
struct Killable {
    tokio: Option<tokio::runtime::Runtime>,
    rt: Option<TestRuntime>,
}

impl Killable {
    fn start(workers: SocketAddr, name: &str) -> Killable {
        let mut config = config(name);
        config.listen.workers = workers;
        let (tokio, rt) = std::thread::spawn(move || {
            let tokio =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let rt = tokio.block_on(TestRuntime::start(config, &[]));
            (tokio, rt)
        })
        .join()
        .unwrap();
        Killable { tokio: Some(tokio), rt: Some(rt) }
    }

    fn rt(&self) -> &TestRuntime {
        self.rt.as_ref().unwrap()
    }

    /// Every task, listener and connection of the runtime goes at once.
    fn kill(&mut self) {
        if let Some(tokio) = self.tokio.take() {
            tokio.shutdown_background();
        }
        self.rt = None;
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_outlives_its_runtime_and_serves_the_next_one_on_the_same_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut first = Killable::start(addr, "restart-1");
    let mut w = worker_support::start(&format!("http://{addr}"), "w-restart", &["--reconnect-max", "400ms"]);
    wait_state(first.rt(), "w-restart", "placeholder", Duration::from_secs(20)).await;
    deploy(first.rt(), "custom-echo", 1, 1).await;
    assert_eq!(first.rt().get("custom-echo/api/hello?name=one").await.text(), "Hello, one!");

    first.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.child.try_wait().unwrap().is_none(), "the worker keeps running");
    let delays: Vec<u64> = w
        .lines_with("reconnecting")
        .iter()
        .filter_map(|l| l.split("after_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(delays.len() >= 6, "kept redialing: {delays:?}");
    assert!(delays.iter().all(|d| *d <= 480), "capped at 400 ms + 20 % jitter: {delays:?}");
    assert!(delays.iter().filter(|d| **d >= 320).count() >= 3, "reached the cap: {delays:?}");
    assert!(delays[0] <= 12, "the first redial is quick: {delays:?}");

    let second = Killable::start(addr, "restart-2");
    wait_state(second.rt(), "w-restart", "placeholder", Duration::from_secs(5)).await;
    deploy(second.rt(), "custom-echo", 1, 1).await;
    let r = second.rt().get("custom-echo/api/hello?name=two").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, two!".to_owned()));
    assert!(!w.lines_with("app reset").is_empty(), "the new runtime did not know the old slot");
    drop(second);
    let _ = w.child.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_evicted_in_bound_and_rejoins_without_duplicates() {
    let rt = Arc::new(runtime("sigstop").await);
    let w = worker_support::start(&workers_url(&rt), "w-stop", &[]);
    wait_state(&rt, "w-stop", "placeholder", Duration::from_secs(20)).await;
    deploy(&rt, "custom-echo", 0, 1).await;
    assert_eq!(rt.get("custom-echo/api/hello").await.status, 200);
    let calls = slow_calls(&rt, "s", 3, |_| 2500);
    in_flight(&rt, "w-stop", 3).await;

    let stopped_at = Instant::now();
    w.freeze();
    wait_for(Duration::from_secs(10), "the eviction", || async {
        worker(&rt, "w-stop").await.is_none().then_some(())
    })
    .await;
    let evicted_after = stopped_at.elapsed();
    assert!(evicted_after <= Duration::from_secs(3), "evicted after {evicted_after:?}");
    for call in calls {
        let r = call.await.unwrap();
        assert_eq!(r.status, 502, "settled once: {}", r.text());
        assert!(r.text().contains("the worker running it was lost"), "{}", r.text());
    }
    // The handler (not stopped: it has its own process group) finishes meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    w.thaw();
    wait_state(&rt, "w-stop", "placeholder", Duration::from_secs(10)).await;
    assert_eq!(dropped_responses(&rt).await, (0, 0), "nothing was delivered twice or late");
    assert!(!w.lines_with("app reset").is_empty(), "it knows it lost its slot");
    let r = rt.get("custom-echo/api/hello?name=back").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, back!".to_owned()));
    assert_eq!(started(&rt).await.len(), 0, "a fresh handler: the old one was stopped");
    eprintln!("SIGSTOP → evicted in {evicted_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_sends_new_work_elsewhere_and_exits_0() {
    let rt = Arc::new(runtime("drain").await);
    let url = workers_url(&rt);
    let mut leaving = worker_support::start(&url, "w-leaving", &[]);
    let _staying = worker_support::start(&url, "w-staying", &[]);
    wait_state(&rt, "w-leaving", "placeholder", Duration::from_secs(20)).await;
    wait_state(&rt, "w-staying", "placeholder", Duration::from_secs(20)).await;
    deploy(&rt, "custom-echo", 2, 2).await;
    wait_state(&rt, "w-leaving", "ready", Duration::from_secs(20)).await;
    wait_state(&rt, "w-staying", "ready", Duration::from_secs(20)).await;

    // Least-in-flight routing spreads these over both workers.
    let calls = slow_calls(&rt, "d", 8, |_| 1500);
    wait_for(Duration::from_secs(10), "8 calls in flight on 2 workers", || async {
        let workers = rt.workers().await;
        let n: Vec<u64> = workers.iter().map(|w| w["in_flight"].as_u64().unwrap_or(0)).collect();
        (n.iter().sum::<u64>() == 8 && n.iter().all(|x| *x > 0)).then_some(())
    })
    .await;
    leaving.terminate();
    wait_state(&rt, "w-leaving", "draining", Duration::from_secs(5)).await;
    for i in 0..6 {
        let r = rt.get("custom-echo/api/setting").await;
        assert_eq!(r.status, 200, "call {i}: {}", r.text());
        assert_eq!(r.json()["worker"], "w-staying", "new work goes to the other worker");
    }
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.await.unwrap();
        assert_eq!(r.status, 200, "in-flight call {i} completes: {}", r.text());
    }
    let status = leaving.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{:?}", leaving.lines_with("exiting"));
    wait_for(Duration::from_secs(5), "the drained worker to leave the list", || async {
        worker(&rt, "w-leaving").await.is_none().then_some(())
    })
    .await;
    assert_eq!(worker(&rt, "w-staying").await.unwrap()["state"], "ready");
}
