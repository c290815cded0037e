//! The connection-mode worker (`switchboard-worker`, release build) against a runtime in this
//! process: how long from a dropped connection until the worker serves again, and how long the
//! runtime takes to notice a worker that went silent (SIGSTOP).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_tests::proxy::Proxy;
use switchboard_tests::worker_process::{WorkerProcess, custom_config, deploy, wait_state, worker};
use switchboard_tests::{TestRuntime, wait_for};

use crate::report::Section;
use crate::stats::{Summary, fmt, ms, percentile};

/// The release `switchboard-worker` binary, built if needed.
pub fn binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "switchboard-tokio", "--bin", "switchboard-worker"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the switchboard-worker binary failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/switchboard-worker")
}

/// Cut → the next call answered, `reps` times. Returns the proxy and the worker too: they must
/// outlive the rest of the benchmark (a killed worker's slot would linger).
async fn reconnects(
    rt: &Arc<TestRuntime>,
    binary: &Path,
    reps: usize,
) -> (Vec<f64>, usize, Proxy, WorkerProcess) {
    let proxy = Proxy::start(rt.started.workers).await;
    let w = WorkerProcess::start(binary, &proxy.url(), "bench-reconnect", &[]);
    wait_state(rt, "bench-reconnect", "placeholder", Duration::from_secs(30)).await;
    deploy(rt, "custom-echo", 1, 1).await;
    for _ in 0..20 {
        assert_eq!(rt.get("custom-echo/api/hello").await.status, 200);
    }
    let mut samples = Vec::with_capacity(reps);
    for i in 0..reps {
        let cut = Instant::now();
        assert!(proxy.cut() >= 1, "the worker's connection goes through the proxy");
        // Sent right after the cut: waits in the runtime until the worker is back.
        let r = rt.get(&format!("custom-echo/api/hello?name=r{i}")).await;
        samples.push(ms(cut.elapsed()));
        assert_eq!((r.status.as_u16(), r.text()), (200, format!("Hello, r{i}!")));
        // Let the resumed stream settle (first heartbeat echoed) before the next cut.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let resumes = w.lines_with("resumed").len();
    (samples, resumes, proxy, w)
}

/// SIGSTOP → the admin API no longer lists the worker, `reps` times. The worker is a
/// placeholder or, when the app takes it, ready: either way only its heartbeats count.
async fn silent_detection(rt: &Arc<TestRuntime>, binary: &Path, reps: usize) -> Vec<f64> {
    let url = format!("http://{}", rt.started.workers);
    let w = WorkerProcess::start(binary, &url, "bench-silent", &[]);
    let mut samples = Vec::with_capacity(reps);
    for i in 0..reps {
        wait_for(Duration::from_secs(30), "bench-silent registered", || async {
            worker(rt, "bench-silent").await.filter(|w| w["state"] == "placeholder" || w["state"] == "ready")
        })
        .await;
        // Freeze at points spread over the 500 ms heartbeat cycle.
        tokio::time::sleep(Duration::from_millis(100 + (i as u64 * 197) % 500)).await;
        let frozen = Instant::now();
        w.freeze();
        loop {
            if worker(rt, "bench-silent").await.is_none() {
                break;
            }
            assert!(frozen.elapsed() < Duration::from_secs(30), "never evicted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(ms(frozen.elapsed()));
        w.thaw();
    }
    wait_for(Duration::from_secs(30), "the thawed worker back", || async {
        worker(rt, "bench-silent").await.map(|_| ())
    })
    .await;
    samples
}

/// Runs the benchmark and publishes its section.
pub async fn bench(binary: &Path, quick: bool) {
    let (reps, freezes) = if quick { (10, 2) } else { (200, 12) };
    let rt = Arc::new(TestRuntime::start(custom_config("bench-reconnect"), &[]).await);
    let (reconnect, resumes, _proxy, _worker) = reconnects(&rt, binary, reps).await;
    let silent = silent_detection(&rt, binary, freezes).await;

    let mut section = Section {
        name: "reconnect",
        title: "Connection-mode worker: reconnect and silent-worker detection",
        command: "cargo run --release -p switchboard-bench -- reconnect".into(),
        intro: "`switchboard-worker` (release) serving the `custom-echo` example (a Python \
                standard-library custom handler) for a runtime in the benchmark process, with \
                default settings (worker heartbeat 500 ms, runtime heartbeat timeout 2 s, \
                redial backoff 10 ms doubling to 5 s, ± 20 % jitter). *Reconnect → serving \
                again*: a TCP proxy between worker and runtime drops the connection (both ends \
                see it close); a call sent right after is timed until it is answered: the \
                worker notices, redials, resumes its slot (app and functions kept, no \
                specialization) and the queued call runs. *Silent-worker detection*: the worker \
                process is frozen with SIGSTOP at points spread over its heartbeat cycle; timed \
                until the admin API no longer lists it (polled every 5 ms). Goals: reconnect \
                ≤ 100 ms p50/p99 (seed target < 1 s); detection ≤ 3 s (the seed document \
                suggests 15–30 s health intervals)."
            .into(),
        header: vec!["measure", "p50 ms", "p99 ms", "min–max ms", "n"],
        ..Section::default()
    };
    for (label, samples) in
        [("reconnect → serving again", &reconnect), ("silent worker (SIGSTOP) → evicted", &silent)]
    {
        let s = Summary::of(samples);
        section.rows.push(vec![
            label.to_owned(),
            fmt(percentile(samples, 50.0)),
            fmt(percentile(samples, 99.0)),
            format!("{}–{}", fmt(s.min), fmt(s.max)),
            s.n.to_string(),
        ]);
    }
    let (r50, r99) = (percentile(&reconnect, 50.0), percentile(&reconnect, 99.0));
    section.notes.push(format!(
        "Reconnect p50 {} ms, p99 {} ms: {} ({resumes} resumes logged by the worker for {} cuts: \
         every reconnect got its slot back).",
        fmt(r50),
        fmt(r99),
        if r99 <= 100.0 {
            "goal met"
        } else if r50 <= 100.0 {
            "p50 goal met, p99 missed"
        } else {
            "goal missed"
        },
        reconnect.len()
    ));
    let worst = silent.iter().copied().fold(0.0, f64::max);
    section.notes.push(format!(
        "Detection p50 {} ms, worst {} ms: {}. The bound is the runtime's `heartbeat` timeout \
         (2 s, or twice the worker's advertised interval if larger) after the last heartbeat, \
         which left at most one interval (500 ms) before the freeze: 1.5–2 s, plus the timer \
         and the 5 ms poll.",
        fmt(percentile(&silent, 50.0)),
        fmt(worst),
        if worst <= 3000.0 { "goal met" } else { "goal missed" },
    ));
    section.publish();
    if let Ok(rt) = Arc::try_unwrap(rt) {
        rt.shutdown().await;
    }
}
