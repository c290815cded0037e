//! Routing overhead and the HTTP front door, measured side by side with the baselines in the
//! same run: caller → runtime → echo worker → caller, against caller → raw tonic relay → echo
//! worker → caller (ping-pong latency, pipelined throughput) and against a plain hyper server
//! (64 connections). The runtime, the relay and the plain server each run as their own process;
//! the callers and echo workers run here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use switchboard_tests::ServeProcess;
use tokio::io::AsyncBufReadExt;

use crate::baseline::addr_of;
use crate::report::Section;
use crate::stats::{Summary, fmt, percentile};

const TOKEN: &str = "bench";
const BODY: &[u8] = &[b'x'; 100];

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn post(client: &HttpClient, url: &str) -> Duration {
    let t = Instant::now();
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(url)
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap();
    let resp = client.request(req).await.expect("request");
    assert_eq!(resp.status(), 200, "{url}");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), BODY.len(), "echoed body");
    t.elapsed()
}

/// Sequential requests on one connection: latencies in microseconds.
async fn ping_pong(url: &str, n: usize) -> Vec<f64> {
    let client = client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(post(&client, url).await.as_secs_f64() * 1e6);
    }
    out
}

/// `conns` connections, each sending requests back to back, `total` in all: (req/s, latencies µs).
async fn pipelined(url: &str, conns: usize, total: usize) -> (f64, Vec<f64>) {
    let client = client();
    let per = total / conns;
    let t = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    lat.push(post(&client, &url).await.as_secs_f64() * 1e6);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.expect("caller task"));
    }
    ((per * conns) as f64 / t.elapsed().as_secs_f64(), all)
}

/// CPU time (user + system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A baseline process (`switchboard-bench relay|plain`) and the line it printed.
async fn baseline(kind: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg(kind)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start baseline");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("address line");
    (child, line)
}

/// An app folder for echo workers (language `custom`; the handler is never started).
pub fn echo_app(dir: &Path) -> PathBuf {
    let app = dir.join("echoapp");
    std::fs::create_dir_all(app.join("echo")).unwrap();
    let host = json!({"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "true"}}});
    std::fs::write(app.join("host.json"), host.to_string()).unwrap();
    std::fs::write(app.join("local.settings.json"), r#"{"Values": {"FUNCTIONS_WORKER_RUNTIME": "custom"}}"#)
        .unwrap();
    let function = json!({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req", "methods": ["post"], "authLevel": "anonymous"},
        {"type": "http", "direction": "out", "name": "$return"}]});
    std::fs::write(app.join("echo/function.json"), function.to_string()).unwrap();
    app
}

/// Config for a runtime whose only pool takes echo workers that join with a token.
pub fn echo_config(dir: &Path, shell: &str, max: u32) -> String {
    let head = switchboard_tests::loopback_config(&dir.join("state"), TOKEN);
    format!(
        r#"shell = "{shell}"
{head}# Every bench worker dials from 127.0.0.1: lift the per-address guards against floods.
[limits]
max_connections_per_address = 0
max_unadmitted_streams_per_address = 0
max_admission_failures = 0
[[pool]]
language = "custom"
provisioner = "external"
join_token = "{TOKEN}"
min_idle = 0
max = {max}
"#
    )
}

/// A runtime on `shell` serving the echo app with one echo worker: (process, app URL).
async fn runtime(binary: &Path, dir: &Path, shell: &str) -> (ServeProcess, String) {
    let rt = ServeProcess::start(binary, &dir.join(shell), &echo_config(dir, shell, 16), TOKEN).await;
    let deploy = json!({"path": echo_app(dir), "name": "echo",
        "scale": {"min_workers": 1, "max_workers": 1, "concurrency": 4096, "queue_limit": 4096}});
    let r = rt.admin_send(Method::POST, "/v1/apps", deploy).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let channel = crate::echo::channel(&rt.workers).await;
    tokio::spawn(crate::echo::run(channel, "echo-1".into(), Some(TOKEN.into()), 4096));
    rt.wait_workers("ready", 1, Duration::from_secs(30)).await;
    let url = format!("{}/echo/api/echo", rt.front_door);
    (rt, url)
}

/// Runs the routing and front-door benchmarks and publishes their sections.
pub async fn bench(binary: &Path, quick: bool, shells: &[&str]) {
    let (reps, n, total) = if quick { (1, 200, 2_000) } else { (5, 3_000, 30_000) };
    let dir = std::env::temp_dir().join(format!("switchboard-bench-routing-{}", std::process::id()));

    let (relay_proc, line) = baseline("relay").await;
    let relay_pid = relay_proc.id().expect("relay running");
    let relay_url = format!("http://{}/echo", addr_of(&line, "http"));
    let channel = crate::echo::channel(&format!("http://{}", addr_of(&line, "grpc"))).await;
    tokio::spawn(crate::echo::run(channel, "relay-echo".into(), None, 4096));
    let (_plain_proc, line) = baseline("plain").await;
    let plain_url = format!("http://{}/", addr_of(&line, "http"));
    ping_pong(&relay_url, 200).await; // the relay's worker is connected once a call succeeds

    let mut routing = Section {
        name: "routing",
        title: "Routing overhead: runtime vs a raw tonic relay",
        command: "cargo run --release -p switchboard-bench -- routing".into(),
        intro: format!(
            "caller → front door → core → echo worker (FunctionRpc over gRPC) → caller, against \
             caller → raw tonic relay → the same echo worker → caller: HTTP/1.1 POST of a 100-byte \
             body, echoed. Runtime and relay are separate processes; callers and echo workers run in \
             the bench process. *Ping-pong*: {n} sequential calls on one connection per repetition. \
             *Pipelined*: 64 connections, {total} calls. CPU per call: the runtime's (or the \
             relay's) process user + system time over its pipelined run, all of it: HTTP/1.1 \
             parsing, HTTP/2 and protobuf for gRPC, and (runtime only) the core; the core alone is \
             measured by the `core` benchmark. Median of {reps} alternating repetitions \
             (min–max). Goals: ping-pong p50 ≤ 1.3× the relay, throughput ≥ 0.7× the relay, ≤ 4 µs \
             of runtime CPU per invocation."
        ),
        header: vec![
            "target",
            "ping-pong p50 µs",
            "ping-pong p99 µs",
            "pipelined req/s",
            "pipelined p99 µs",
            "CPU µs/call",
        ],
        ..Section::default()
    };
    let mut front = Section {
        name: "frontdoor",
        title: "HTTP front door: runtime + echo worker vs plain hyper",
        command: "cargo run --release -p switchboard-bench -- routing".into(),
        intro: format!(
            "64 connections, {total} POSTs of 100 bytes: through the runtime's front door to an echo \
             worker and back, against a plain hyper server answering directly (same run). Median of \
             {reps} repetitions. Goal: ≥ 0.5× plain hyper."
        ),
        header: vec!["target", "req/s", "p99 µs", "ratio to plain hyper"],
        ..Section::default()
    };

    let mut relay = Measure::default();
    let mut plain = Measure::default();
    let mut runtimes = Vec::new();
    for shell in shells {
        let (rt, url) = runtime(binary, &dir, shell).await;
        ping_pong(&url, 200).await;
        let mut m = Measure::default();
        for _ in 0..reps {
            m.ping(&url, n).await;
            relay.ping(&relay_url, n).await;
            let pid = rt.child.id().expect("runtime running");
            let before = cpu_seconds(pid);
            m.pipe(&url, total).await;
            m.cpu.push((cpu_seconds(pid) - before) * 1e6 / total as f64);
            let before = cpu_seconds(relay_pid);
            relay.pipe(&relay_url, total).await;
            relay.cpu.push((cpu_seconds(relay_pid) - before) * 1e6 / total as f64);
            plain.pipe(&plain_url, total).await;
        }
        runtimes.push((shell.to_string(), m));
        rt.stop().await;
    }

    let relay_p50 = Summary::of(&relay.p50).median;
    let relay_rps = Summary::of(&relay.rps).median;
    let plain_rps = Summary::of(&plain.rps).median;
    routing.row(&[
        &"raw tonic relay",
        &Summary::of(&relay.p50).show("µs"),
        &fmt(Summary::of(&relay.p99).median),
        &Summary::of(&relay.rps).show("req/s"),
        &fmt(Summary::of(&relay.pp99).median),
        &fmt(Summary::of(&relay.cpu).median),
    ]);
    front.row(&[
        &"plain hyper",
        &Summary::of(&plain.rps).show("req/s"),
        &fmt(Summary::of(&plain.pp99).median),
        &"1.00",
    ]);
    for (shell, m) in &runtimes {
        let label = format!("switchboard ({shell})");
        let cpu = Summary::of(&m.cpu);
        routing.row(&[
            &label,
            &Summary::of(&m.p50).show("µs"),
            &fmt(Summary::of(&m.p99).median),
            &Summary::of(&m.rps).show("req/s"),
            &fmt(Summary::of(&m.pp99).median),
            &fmt(cpu.median),
        ]);
        let rps = Summary::of(&m.rps).median;
        front.row(&[
            &label,
            &Summary::of(&m.rps).show("req/s"),
            &fmt(Summary::of(&m.pp99).median),
            &format!("{:.2}", rps / plain_rps),
        ]);
        let p50 = Summary::of(&m.p50).median;
        let relay_cpu = Summary::of(&relay.cpu).median;
        routing.notes.push(format!(
            "{label}: ping-pong p50 {:.2}× the relay ({}), throughput {:.2}× the relay ({}), {} µs CPU \
             per call ({}; {} µs above the relay's {} µs for the same HTTP and gRPC work).",
            p50 / relay_p50,
            verdict(p50 / relay_p50 <= 1.3),
            rps / relay_rps,
            verdict(rps / relay_rps >= 0.7),
            fmt(cpu.median),
            verdict(cpu.median <= 4.0),
            fmt(cpu.median - relay_cpu),
            fmt(relay_cpu),
        ));
        front.notes.push(format!(
            "{label}: {:.2}× plain hyper ({}).",
            rps / plain_rps,
            verdict(rps / plain_rps >= 0.5)
        ));
    }
    routing.publish();
    front.publish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn verdict(met: bool) -> &'static str {
    if met { "goal met" } else { "goal missed" }
}

/// Repeated measurements of one target.
#[derive(Debug, Default)]
struct Measure {
    p50: Vec<f64>,
    p99: Vec<f64>,
    rps: Vec<f64>,
    pp99: Vec<f64>,
    cpu: Vec<f64>,
}

impl Measure {
    async fn ping(&mut self, url: &str, n: usize) {
        let lat = ping_pong(url, n).await;
        self.p50.push(percentile(&lat, 50.0));
        self.p99.push(percentile(&lat, 99.0));
    }

    async fn pipe(&mut self, url: &str, total: usize) {
        let (rps, lat) = pipelined(url, 64, total).await;
        self.rps.push(rps);
        self.pp99.push(percentile(&lat, 99.0));
    }
}
