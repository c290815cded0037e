//! Security and bad input, end to end: real sockets, real Python workers, and a raw gRPC client
//! that sends what no real worker would. Each case ends in a specific error, nothing panics,
//! and the other tenants (a real app, served by a real worker) are not affected.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use switchboard_core::proto::rpc::{RpcLog, StreamingMessage, WorkerInitResponse};
use switchboard_core::proto::{Content, Message};
use switchboard_core::testkit::{http_response, init_response, msg, ok, python_capabilities, start_stream};
use switchboard_shell::config::{Config, Pool, ProvisionerKind, TlsListener};
use switchboard_tests::grpc::{Got, RawStream, code, connect_from, frame};
use switchboard_tests::tls::{TestCa, connector, dial};
use switchboard_tests::{Shell, TestRuntime, examples, kill, pids_with_arg, test_config, wait_for};

switchboard_tests::on_both_shells!(
    garbage_truncated_and_invalid_frames_end_the_stream_with_a_status,
    admission_refuses_what_the_runtime_did_not_issue,
    oversized_messages_and_maps_evict_and_unknown_answers_are_dropped,
    a_flood_from_one_address_does_not_starve_the_others,
    tls_front_door_and_mutual_tls_for_workers,
);

const JOIN: &str = "raw-client-join-token";
const WAIT: Duration = Duration::from_secs(15);

/// The test config, plus an external pool `custom` that the raw client joins with [`JOIN`].
fn joinable(min_idle: u32, custom_max: u32) -> Config {
    let mut config = test_config(min_idle, 8);
    config.pools.push(Pool {
        language: "custom".into(),
        provisioner: ProvisionerKind::External,
        join_token: Some(JOIN.into()),
        min_idle: 0,
        max: custom_max,
        inherit_env: Vec::new(),
        ..Pool::default()
    });
    config
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A raw worker that joined the `custom` pool and finished its init handshake.
async fn joined(addr: SocketAddr) -> (RawStream, String) {
    let id = unique("raw");
    let mut s = RawStream::open(addr, &[("x-switchboard-join-token", JOIN)]).await;
    s.send(&start_stream(&id));
    let init = s.message(WAIT).await;
    assert!(matches!(init.content, Some(Content::WorkerInitRequest(_))), "{init:?}");
    s.send(&init_response(python_capabilities()));
    (s, id)
}

/// A metric's value (`name{labels}` exactly as exposed), 0 when absent.
async fn metric(rt: &TestRuntime, series: &str) -> f64 {
    let r = rt.admin(Method::GET, "/metrics", None).await;
    assert_eq!(r.status, 200);
    r.text().lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

async fn hello_still_answers(rt: &TestRuntime) {
    let r = rt.get("hello/api/hello?name=still").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, still!".to_owned()));
}

#[track_caller]
fn assert_status(got: (i32, String), code: i32, starts_with: &str) {
    assert_eq!(got.0, code, "{got:?}");
    assert!(got.1.starts_with(starts_with), "{:?} does not start with {starts_with:?}", got.1);
}

async fn garbage_truncated_and_invalid_frames_end_the_stream_with_a_status(shell: Shell) {
    let rt = TestRuntime::start_on(shell, joinable(1, 4), &[examples().join("hello")]).await;
    hello_still_answers(&rt).await;
    let addr = rt.started.workers;

    // Garbage where StartStream belongs.
    let mut s = RawStream::open(addr, &[]).await;
    s.send_raw(frame(&[0xff; 32]));
    assert_status(
        s.status(WAIT).await,
        code::FAILED_PRECONDITION,
        "malformed frame: failed to decode Protobuf message",
    );

    // A frame that promises 100 bytes and brings 3, then the end of the stream.
    let mut s = RawStream::open(addr, &[]).await;
    s.send_raw(Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]));
    s.finish();
    assert_status(s.status(WAIT).await, code::FAILED_PRECONDITION, "malformed frame: Unexpected EOF");

    // A compression flag that does not exist.
    let mut s = RawStream::open(addr, &[]).await;
    s.send_raw(Bytes::from_static(&[7, 0, 0, 0, 1, 0]));
    assert_status(
        s.status(WAIT).await,
        code::FAILED_PRECONDITION,
        "malformed frame: protocol error: received message with invalid compression flag: 7",
    );

    // Invalid UTF-8 in a string field (the worker id): prost refuses it while decoding.
    let mut bytes = start_stream("AAAA").encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"AAAA").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    let mut s = RawStream::open(addr, &[]).await;
    s.send_raw(frame(&bytes));
    let (code, message) = s.status(WAIT).await;
    assert_eq!(code, code::FAILED_PRECONDITION, "{message}");
    assert!(message.contains("worker_id") && message.contains("UTF-8"), "{message}");

    // An admitted worker that sends garbage is evicted, with the decoder's reason.
    let evicted = "switchboard_worker_evictions_total{language=\"custom\",reason=\"malformed\"}";
    let (mut w, id) = joined(addr).await;
    wait_for(WAIT, "the raw worker to be a placeholder", || async {
        rt.workers().await.iter().any(|x| x["id"] == id.as_str() && x["state"] == "placeholder").then_some(())
    })
    .await;
    w.send_raw(frame(&[0x0a, 0xff, 0xff, 0xff]));
    assert_status(w.status(WAIT).await, code::FAILED_PRECONDITION, "failed to decode Protobuf message");
    assert_eq!(metric(&rt, evicted).await, 1.0);
    assert!(!rt.workers().await.iter().any(|x| x["id"] == id.as_str()), "the evicted worker is gone");
    assert_eq!(metric(&rt, "switchboard_worker_rejections_total").await, 4.0);

    hello_still_answers(&rt).await;
    rt.shutdown().await;
}

async fn admission_refuses_what_the_runtime_did_not_issue(shell: Shell) {
    let rt = TestRuntime::start_on(shell, joinable(1, 1), &[examples().join("hello")]).await;
    hello_still_answers(&rt).await;
    let addr = rt.started.workers;

    // Anything before StartStream.
    let mut s = RawStream::open(addr, &[]).await;
    s.send(&init_response(python_capabilities()));
    assert_status(s.status(WAIT).await, code::FAILED_PRECONDITION, "WorkerInitResponse before StartStream");

    // An id nobody issued.
    let mut s = RawStream::open(addr, &[]).await;
    s.send(&start_stream("made-up-worker-id"));
    assert_status(s.status(WAIT).await, code::UNAUTHENTICATED, "unknown worker id");

    // A wrong join token.
    let mut s = RawStream::open(addr, &[("x-switchboard-join-token", "not-the-token")]).await;
    s.send(&start_stream("joiner"));
    assert_status(s.status(WAIT).await, code::PERMISSION_DENIED, "join token not valid");

    // StartStream twice.
    let (mut w, _) = joined(addr).await;
    w.send(&start_stream("again"));
    assert_status(w.status(WAIT).await, code::FAILED_PRECONDITION, "StartStream sent by a worker");

    // Workers per pool: `custom` holds one.
    let (mut first, _) = joined(addr).await;
    let mut s = RawStream::open(addr, &[("x-switchboard-join-token", JOIN)]).await;
    s.send(&start_stream(&unique("second")));
    assert_status(s.status(WAIT).await, code::PERMISSION_DENIED, "pool custom is full");
    assert!(first.quiet_for(Duration::from_millis(200)).await.is_none(), "the first one stays");

    // A real worker's id, replayed while it is live, then after it is gone.
    let placeholder = wait_for(WAIT, "a python placeholder", || async {
        rt.workers()
            .await
            .into_iter()
            .find(|w| w["state"] == "placeholder" && w["pool"] == "python")
            .map(|w| w["id"].as_str().unwrap().to_owned())
    })
    .await;
    let mut s = RawStream::open(addr, &[]).await;
    s.send(&start_stream(&placeholder));
    assert_status(
        s.status(WAIT).await,
        code::PERMISSION_DENIED,
        "a stream with this worker id is already live",
    );
    assert!(rt.workers().await.iter().any(|w| w["id"] == placeholder.as_str()), "the real one is untouched");
    kill(pids_with_arg(&placeholder)[0], libc::SIGKILL);
    wait_for(WAIT, "the killed placeholder to be gone", || async {
        (!rt.workers().await.iter().any(|w| w["id"] == placeholder.as_str())).then_some(())
    })
    .await;
    let mut s = RawStream::open(addr, &[]).await;
    s.send(&start_stream(&placeholder));
    assert_status(s.status(WAIT).await, code::UNAUTHENTICATED, "unknown worker id");

    hello_still_answers(&rt).await;
    rt.shutdown().await;
}

async fn oversized_messages_and_maps_evict_and_unknown_answers_are_dropped(shell: Shell) {
    let mut config = joinable(1, 8);
    config.limits.max_message_bytes = 64 << 10;
    let rt = TestRuntime::start_on(shell, config, &[examples().join("hello")]).await;
    hello_still_answers(&rt).await;
    let addr = rt.started.workers;

    // A message over the limit: the decoder's status, and the worker is evicted.
    let (mut w, _) = joined(addr).await;
    let big = msg(Content::RpcLog(RpcLog { message: "x".repeat(100_000), ..Default::default() }));
    w.send(&big);
    let (code, message) = w.status(WAIT).await;
    assert_eq!(code, code::OUT_OF_RANGE, "{message}");
    assert!(message.contains("the limit is: 65536 bytes"), "{message}");
    // A frame that claims 4 GiB is refused from its header, without waiting for (or reserving) it.
    let (mut w, _) = joined(addr).await;
    w.send_raw(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
    assert_eq!(w.status(WAIT).await.0, code::OUT_OF_RANGE);
    let evicted = "switchboard_worker_evictions_total{language=\"custom\",reason=\"malformed\"}";
    assert_eq!(metric(&rt, evicted).await, 2.0);

    // An oversized map.
    let mut s = RawStream::open(addr, &[("x-switchboard-join-token", JOIN)]).await;
    s.send(&start_stream(&unique("caps")));
    let _init = s.message(WAIT).await;
    let capabilities = (0..5000).map(|i| (format!("c{i}"), String::new())).collect();
    s.send(&msg(Content::WorkerInitResponse(WorkerInitResponse {
        capabilities,
        result: ok(),
        ..Default::default()
    })));
    assert_status(s.status(WAIT).await, code::FAILED_PRECONDITION, "5000 capabilities (limit 1024)");

    // Answers for invocations it was never given: dropped and counted, the worker stays.
    let (mut w, id) = joined(addr).await;
    for invocation in ["", "not-given", "00000000-0000-4000-8000-000000000000"] {
        w.send(&http_response(invocation, 200, "forged"));
    }
    wait_for(WAIT, "three unknown responses counted", || async {
        (metric(&rt, "switchboard_unknown_responses_total").await == 3.0).then_some(())
    })
    .await;
    assert!(w.quiet_for(Duration::from_millis(200)).await.is_none(), "not evicted");
    assert!(rt.workers().await.iter().any(|x| x["id"] == id.as_str()));

    hello_still_answers(&rt).await;
    rt.shutdown().await;
}

/// Resident memory of this test process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether the peer closed `stream` (EOF or reset) within `bound`.
async fn closed_within(stream: &mut tokio::net::TcpStream, bound: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // an HTTP/2 preface or the like; keep reading
        }
    }
}

async fn a_flood_from_one_address_does_not_starve_the_others(shell: Shell) {
    let mut config = joinable(1, 8);
    config.timeouts.handshake = Duration::from_secs(2);
    config.timeouts.start_stream = Duration::from_secs(4);
    config.limits.max_connections_per_address = 300;
    let rt = TestRuntime::start_on(shell, config, &[examples().join("hello")]).await;
    hello_still_answers(&rt).await;
    let rss_before = rss_kib();
    // The flood comes from 127.0.0.2; everyone else (this test's calls, the real workers) from
    // 127.0.0.1.
    let flood: IpAddr = "127.0.0.2".parse().unwrap();
    let (workers, front_door) = (rt.started.workers, rt.started.front_door);

    // 200 streams that never send StartStream: the newest 64 wait, older ones make room at once.
    let opening = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(RawStream::open_from(flood, workers, &[]).await);
    }
    let opened_in = opening.elapsed();
    let (mut made_room, mut timed_out) = (0, 0);
    let mut count = |got: Got| {
        let Got::Status(code, message) = got else { panic!("{got:?}") };
        assert_eq!(code, code::DEADLINE_EXCEEDED, "{message}");
        if message.contains("newer streams from 127.0.0.2 waited") {
            made_room += 1;
        } else {
            assert!(message.starts_with("no StartStream within the deadline"), "{message}");
            timed_out += 1;
        }
    };
    let mut waiting = Vec::new();
    for mut s in silent {
        match s.quiet_for(Duration::from_millis(10)).await {
            Some(got) => count(got),
            None => waiting.push(s),
        }
    }

    // Too many failures from 127.0.0.2: it is limited, even with the right token ...
    let mut s = RawStream::open_from(flood, workers, &[("x-switchboard-join-token", JOIN)]).await;
    s.send(&start_stream(&unique("flooder")));
    assert_status(
        s.status(WAIT).await,
        code::RESOURCE_EXHAUSTED,
        "too many failed admissions from 127.0.0.2; retry after",
    );
    // 400 connections that never speak, to the worker endpoint and to the front door.
    let mut idle = Vec::new();
    for target in [workers, front_door] {
        for _ in 0..400 {
            if let Ok(tcp) = connect_from(flood, target).await {
                idle.push(tcp);
            }
        }
    }

    // Meanwhile everyone else is served, promptly.
    let started = Instant::now();
    hello_still_answers(&rt).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let r = rt.admin(Method::GET, "/v1/apps/hello", None).await;
    assert_eq!(r.status, 200);
    // 127.0.0.1 is not limited, and a worker the runtime starts still gets in: kill hello's
    // worker, and hello is served by a fresh one.
    let (_w, _) = joined(workers).await;
    let hello = rt.workers().await.into_iter().find(|w| w["app"] == "hello").unwrap();
    kill(pids_with_arg(hello["id"].as_str().unwrap())[0], libc::SIGKILL);
    wait_for(WAIT, "hello on a new worker", || async {
        let r = rt.get("hello/api/hello").await;
        (r.status == 200).then_some(())
    })
    .await;
    wait_for(WAIT, "the pool refilled", || async {
        let pools = rt.admin(Method::GET, "/v1/pools", None).await.json();
        let python = pools.as_array().unwrap().iter().find(|p| p["pool"] == "python").cloned().unwrap();
        (python["idle"].as_u64() == Some(1)).then_some(())
    })
    .await;

    // The silent and the idle are closed by their deadlines.
    for s in &mut waiting {
        count(s.next(WAIT).await);
    }
    assert_eq!(made_room + timed_out, 200);
    if opened_in < Duration::from_secs(3) {
        // The limited stream above waited too (for its StartStream) and made room for itself.
        assert_eq!((made_room, timed_out), (137, 63), "at most 64 waited at once");
    }
    for tcp in &mut idle {
        assert!(closed_within(tcp, Duration::from_secs(10)).await, "an idle connection was left open");
    }
    let refused = |listener: &str, reason: &str| {
        format!("switchboard_connections_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}}")
    };
    assert!(metric(&rt, &refused("workers", "too_many_from_address")).await >= 1.0);
    assert!(metric(&rt, &refused("front_door", "no_request_in_time")).await >= 1.0);
    assert!(metric(&rt, "switchboard_admission_rate_limited_total").await >= 1.0);
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB during the flood");

    hello_still_answers(&rt).await;
    rt.shutdown().await;
}

/// An HTTPS GET through `tls` (HTTP/1.1).
async fn https_get(tls: &tokio_rustls::TlsConnector, addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = dial(tls, addr).await.expect("TLS handshake with the front door");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn tls_dir() -> PathBuf {
    std::env::temp_dir().join(unique("switchboard-tls"))
}

/// A raw stream over TLS to the worker endpoint, or why it could not be opened or admitted.
async fn tls_worker(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> Result<(RawStream, StreamingMessage), String> {
    let stream = dial(tls, addr).await.map_err(|e| format!("handshake: {e}"))?;
    let mut s = RawStream::open_on(TokioIo::new(stream), &[("x-switchboard-join-token", JOIN)]).await?;
    s.send(&start_stream(&unique("tls")));
    match s.next(WAIT).await {
        Got::Message(m) => Ok((s, *m)),
        other => Err(format!("{other:?}")),
    }
}

async fn tls_front_door_and_mutual_tls_for_workers(shell: Shell) {
    let dir = tls_dir();
    let ca = TestCa::new("switchboard test CA");
    let (cert, key) = ca.server().write(&dir, "server");
    let client_ca = ca.write(&dir, "ca");
    let mut config = joinable(1, 8);
    config.tls.front_door = Some(TlsListener { cert: cert.clone(), key: key.clone(), client_ca: None });
    config.tls.workers = Some(TlsListener { cert, key, client_ca: Some(client_ca) });
    let rt = TestRuntime::start_on(shell, config, &[examples().join("hello")]).await;
    let local = rt.started.local_workers.expect("a loopback listener for the local pool");
    assert!(local.ip().is_loopback() && local != rt.started.workers);

    // HTTPS on the front door, served by a real worker that came in through the local listener.
    let https = connector(&ca.pem, &[b"http/1.1"], None);
    let (status, body) = https_get(&https, rt.started.front_door, "/hello/api/hello?name=tls").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "Hello, tls!"));
    let hello = rt.workers().await.into_iter().find(|w| w["app"] == "hello").unwrap();
    assert!(hello["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{hello}");
    // Plain HTTP to the TLS front door gets nowhere (and is counted).
    let mut plain = tokio::net::TcpStream::connect(rt.started.front_door).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /hello/api/hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut plain, WAIT).await);

    // Workers: no client certificate, or one from another CA, is refused in the handshake ...
    let h2 = [b"h2".as_slice()];
    let anonymous = connector(&ca.pem, &h2, None);
    let stranger = TestCa::new("someone else").client("stranger");
    let stranger = connector(&ca.pem, &h2, Some(&stranger));
    for (who, tls) in [("no certificate", &anonymous), ("a foreign certificate", &stranger)] {
        let refused = tls_worker(tls, rt.started.workers).await;
        assert!(refused.is_err(), "{who}: admitted: {:?}", refused.map(|r| r.1));
    }
    let failed =
        "switchboard_connections_refused_total{listener=\"workers\",reason=\"tls_handshake_failed\"}";
    wait_for(WAIT, "the failed handshakes counted", || async {
        (metric(&rt, failed).await >= 2.0).then_some(())
    })
    .await;
    // ... and a certificate from the configured CA (with the join token) is admitted.
    let trusted = connector(&ca.pem, &h2, Some(&ca.client("worker-1")));
    let (_s, init) =
        tls_worker(&trusted, rt.started.workers).await.expect("admitted with a client certificate");
    assert!(matches!(init.content, Some(Content::WorkerInitRequest(_))), "{init:?}");
    // Plaintext to the TLS worker endpoint fails; the loopback listener refuses tokens.
    let plain = tokio::time::timeout(WAIT, async {
        let tcp = tokio::net::TcpStream::connect(rt.started.workers).await.unwrap();
        RawStream::open_on(TokioIo::new(tcp), &[]).await
    })
    .await
    .expect("the plaintext attempt ends");
    if let Ok(mut s) = plain {
        s.send(&start_stream("plain"));
        assert!(matches!(s.next(WAIT).await, Got::Ended(_)), "plaintext on the TLS endpoint");
    }
    let mut s = RawStream::open(local, &[("x-switchboard-join-token", JOIN)]).await;
    s.send(&start_stream(&unique("local")));
    assert_status(
        s.status(WAIT).await,
        code::PERMISSION_DENIED,
        "this listener admits only workers the runtime started",
    );

    let (status, _) = https_get(&https, rt.started.front_door, "/hello/api/hello").await;
    assert_eq!(status, 200);
    rt.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

// ----- one shell is enough below: shared code, no runtime-specific IO --------------------------

/// An app folder under a fresh temp dir: `host.json` and one function.
fn app_folder(name: &str, host_json: &[u8], function: &str, function_json: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("switchboard-badapp")).join(name);
    std::fs::create_dir_all(dir.join(function)).unwrap();
    std::fs::write(dir.join("host.json"), host_json).unwrap();
    std::fs::write(dir.join(function).join("function.json"), function_json).unwrap();
    std::fs::write(dir.join(function).join("__init__.py"), "def main(req): return 'x'\n").unwrap();
    dir
}

async fn deploy_error(rt: &TestRuntime, body: serde_json::Value) -> String {
    let r = rt.admin(Method::POST, "/v1/apps", Some(body)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    r.json()["error"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_apps_names_paths_and_headers_get_precise_errors() {
    let rt = TestRuntime::start(test_config(1, 4), &[examples().join("hello")]).await;
    hello_still_answers(&rt).await;
    let hello = examples().join("hello").canonicalize().unwrap();
    let path = hello.display().to_string();

    // App names.
    let e = deploy_error(&rt, json!({"path": path, "name": "../etc"})).await;
    assert_eq!(e, "app name \"../etc\": only letters, digits, '-' and '_' are allowed");
    let e = deploy_error(&rt, json!({"path": path, "name": "a\u{0}b"})).await;
    assert!(e.starts_with("app name \"a\\0b\": only letters"), "{e}");
    let e = deploy_error(&rt, json!({"path": path, "name": "a".repeat(100_000)})).await;
    assert!(e.contains("at most 64 characters (this one has 100000)"), "{}", &e[e.len() - 80..]);
    // App folders.
    let e = deploy_error(&rt, json!({"path": "/nonexistent/../x\u{0}y"})).await;
    assert!(e.contains("nul byte") || e.contains("NUL"), "{e}");
    let e = deploy_error(&rt, json!({"path": "/definitely/not/here"})).await;
    assert!(e.starts_with("/definitely/not/here: No such file"), "{e}");
    // Garbage function.json and host.json.
    let good_host = br#"{"version": "2.0"}"#;
    let app = app_folder("garbage", good_host, "f", b"{\"bindings\": [\xff\xfe");
    let e = deploy_error(&rt, json!({"path": app})).await;
    assert!(e.starts_with("f/function.json: invalid JSON at line 1"), "{e}");
    let app = app_folder("garbage", b"\x00\x01 not json", "f", b"{}");
    let e = deploy_error(&rt, json!({"path": app})).await;
    assert!(e.starts_with("host.json: invalid JSON"), "{e}");
    let app = app_folder("garbage", br#"{"version": "1.0"}"#, "f", b"{}");
    let e = deploy_error(&rt, json!({"path": app})).await;
    assert!(e.starts_with("host.json: "), "{e}");
    let bindings =
        br#"{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req", "route": "a/../{x"}]}"#;
    let app = app_folder("garbage", good_host, "f", bindings);
    let e = deploy_error(&rt, json!({"path": app})).await;
    assert!(e.starts_with("f/function.json: "), "{e}");
    let e = deploy_error(&rt, json!({"path": path, "settings": {"K": "a\u{0}b"}})).await;
    assert_eq!(e, "deploy settings: setting \"K\": values cannot contain NUL");
    let e = deploy_error(&rt, json!({"path": path, "settings": {"AzureWebJobs.hello.Disabled": "hunter2"}}))
        .await;
    assert!(e.contains("AzureWebJobs.hello.Disabled") && !e.contains("hunter2"), "values stay secret: {e}");
    let r = rt.admin(Method::POST, "/v1/apps", None).await;
    assert_eq!(r.status, 400, "an empty deploy body");
    let r = rt.admin(Method::GET, "/v1/apps/..%2F..%2Fetc", None).await;
    assert_eq!(r.status, 404);

    // The front door: paths that try to escape, NUL, absurd lengths, huge headers and bodies.
    for path in [
        "/..%2F/api/x",
        "/%00/api/x",
        "/hello/api/..%2F..%2Fhello",
        "/hello/api/%00",
        "/hello/../hello/api/hello",
    ] {
        let r = rt.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    let head = format!("GET /hello/api/{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100_000));
    assert_eq!(raw_http(rt.started.front_door, &head).await, 414, "a 100 KB path");
    let long = "v".repeat(100_000);
    let r = rt.request(Method::GET, "hello/api/hello", &[("x-long", &long)], b"").await;
    assert_eq!(r.status, 431, "{}", r.text());
    let names: Vec<String> = (0..150).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let r = rt.request(Method::GET, "hello/api/hello", &many, b"").await;
    assert_eq!(r.status, 431);
    let head = format!("POST /hello/api/echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", 11 << 20);
    assert_eq!(raw_http(rt.started.front_door, &head).await, 413, "a body over the limit");
    let head = "GET /hello/api/hello HTTP/1.1\r\nhost: x\r\nx-bad: a\u{1}b\r\n\r\n";
    assert_eq!(raw_http(rt.started.front_door, head).await, 400, "a control character in a header");

    hello_still_answers(&rt).await;
    rt.shutdown().await;
}

/// Writes `head` on a fresh connection and returns the response's status code.
async fn raw_http(addr: SocketAddr, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await.expect("a response").unwrap();
        assert!(n > 0, "closed without a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf).into_owned();
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// A copy of `examples/hello` with this host.json.
fn hello_with_host_json(host_json: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "__pycache__" {
                    copy(&entry.path(), &target);
                }
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = std::env::temp_dir().join(unique("switchboard-limits")).join("hello");
    copy(&examples().join("hello"), &dir);
    std::fs::write(dir.join("host.json"), host_json).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_a_503_with_retry_after_and_a_slow_function_a_504() {
    let rt = TestRuntime::start(test_config(1, 4), &[]).await;
    let app = hello_with_host_json(r#"{"version": "2.0", "functionTimeout": "00:00:01"}"#);
    let body = json!({"path": app, "scale": {"max_workers": 1, "concurrency": 1, "queue_limit": 1}});
    let r = rt.admin(Method::POST, "/v1/apps", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    hello_still_answers(&rt).await;

    // One running, one queued, the third refused at once.
    let running = rt.get("hello/api/slow?ms=800");
    let queued = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        rt.get("hello/api/slow?ms=10").await
    };
    let refused = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        rt.get("hello/api/hello").await
    };
    let (running, queued, refused) = tokio::join!(running, queued, refused);
    assert_eq!((running.status.as_u16(), queued.status.as_u16()), (200, 200));
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "the app's queue is full");
    assert!(refused.headers["retry-after"].parse::<u64>().unwrap() >= 1);

    // Past the function timeout: 504.
    let started = Instant::now();
    let r = rt.get("hello/api/slow?ms=5000").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(4));
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_on_loopback_and_its_token_is_made_once_and_kept_private() {
    let defaults = Config::default();
    for addr in [defaults.listen.admin, defaults.listen.front_door, defaults.listen.workers] {
        assert!(addr.ip().is_loopback(), "{addr}");
    }
    let state = std::env::temp_dir().join(unique("switchboard-state"));
    let mut config = test_config(0, 1);
    config.admin.token = None;
    config.state_dir = state.clone();
    let rt = TestRuntime::start(config.clone(), &[]).await;
    let token = rt.started.admin_token.clone();
    assert_eq!(token.len(), 48, "24 random bytes in hex");
    let file = state.join("admin-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!format!("{:?}", rt.started).contains(&token), "Debug leaves the token out");

    let url = format!("http://{}/v1/apps", rt.started.admin);
    assert_eq!(switchboard_tests::http_get(&url, None).await.status, 401);
    assert_eq!(switchboard_tests::http_get(&url, Some("wrong")).await.status, 401);
    assert_eq!(switchboard_tests::http_get(&url, Some(&token[..47])).await.status, 401);
    assert_eq!(switchboard_tests::http_get(&url, Some(&token)).await.status, 200);
    rt.shutdown().await;

    let rt = TestRuntime::start(config, &[]).await;
    assert_eq!(rt.started.admin_token, token, "kept across restarts");
    rt.shutdown().await;
    let _ = std::fs::remove_dir_all(state);
}
