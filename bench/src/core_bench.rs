//! The core's own cost: one invocation routed to a worker and its response settled, with many
//! apps and workers registered. No I/O: the core is driven directly, as a shell would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchboard_core::app::ScaleSpec;
use switchboard_core::proto::Content;
use switchboard_core::proto::rpc::RpcHttp;
use switchboard_core::testkit::{env_reload_ok, http_response, load_response, ok, sample_app, start_stream};
use switchboard_core::{
    CallId, Config, ConnId, ConnMeta, Input, Invoke, Output, Payload, PoolKey, PoolSpec, Runtime, Target,
};

use crate::report::Section;
use crate::stats::Summary;

const TOKEN: &str = "bench-token";

/// A runtime with `apps` apps, each with `workers / apps` ready workers.
struct Setup {
    rt: Runtime,
    now: Instant,
    apps: Vec<String>,
}

fn drain(rt: &mut Runtime) -> Vec<Output> {
    std::iter::from_fn(|| rt.poll_output()).collect()
}

fn setup(apps: usize, workers: usize) -> Setup {
    let now = Instant::now();
    let mut pool = PoolSpec::new(PoolKey::new("python", ""), 0, (workers * 2) as u32);
    pool.join_token = Some(TOKEN.into());
    let cfg = Config { seed: [9; 32], pools: vec![pool], ..Config::default() };
    let mut rt = Runtime::new(cfg, now);
    for i in 0..workers {
        let conn = ConnId(i as u64);
        let meta = ConnMeta { join_token: Some(TOKEN.into()), resume_token: None };
        rt.handle_input(now, Input::Connected { conn, peer: "bench".into(), meta });
        rt.handle_input(now, Input::Message { conn, msg: start_stream(&format!("w{i}")) });
        let caps = switchboard_core::testkit::python_capabilities();
        rt.handle_input(now, Input::Message { conn, msg: switchboard_core::testkit::init_response(caps) });
    }
    drain(&mut rt);
    let per_app = (workers / apps) as u32;
    let names: Vec<String> = (0..apps).map(|i| format!("app{i}")).collect();
    let scale = ScaleSpec { min_workers: per_app, max_workers: per_app, concurrency: 16, queue_limit: 256 };
    for name in &names {
        rt.deploy(now, sample_app(name, &["f"], &[("K", "v")], scale)).expect("deploy");
    }
    // Answer every specialization message until all workers are ready.
    let mut pending = drain(&mut rt);
    while !pending.is_empty() {
        let mut next = Vec::new();
        for out in pending {
            if let Output::Send { conn, msg } = out {
                let reply = match msg.content {
                    Some(Content::FunctionEnvironmentReloadRequest(_)) => env_reload_ok(),
                    Some(Content::FunctionLoadRequest(r)) => load_response(&r.function_id, ok()),
                    _ => continue,
                };
                rt.handle_input(now, Input::Message { conn, msg: reply });
                next.extend(drain(&mut rt));
            }
        }
        pending = next;
    }
    let ready: usize = rt.apps().iter().map(|a| a.ready).sum();
    assert_eq!(ready, workers, "every worker specialized");
    Setup { rt, now, apps: names }
}

/// Builds the call and the worker's answer, as a shell would per invocation.
fn invoke(call: u64, app: &str) -> Input {
    Input::Invoke(Invoke {
        call: CallId(call),
        app: app.to_owned(),
        target: Target::Route { method: "GET".into(), path: "api/f".into() },
        payload: Payload::Http(Box::new(RpcHttp {
            method: "GET".into(),
            url: "http://bench/app/api/f".into(),
            headers: BTreeMap::from([("host".into(), "bench".into())]),
            ..Default::default()
        })),
        trace: None,
        timeout: None,
    })
}

/// Nanoseconds per invocation: route, send, answer, settle.
fn run(s: &mut Setup, n: usize, first_call: u64) -> (f64, f64) {
    let mut core = Duration::ZERO;
    let mut building = Duration::ZERO;
    let now = s.now;
    for i in 0..n {
        let t0 = Instant::now();
        let input = invoke(first_call + i as u64, &s.apps[i % s.apps.len()]);
        let t1 = Instant::now();
        s.rt.handle_input(now, input);
        let mut sent = None;
        while let Some(out) = s.rt.poll_output() {
            if let Output::Send { conn, msg } = out
                && let Some(Content::InvocationRequest(req)) = msg.content
            {
                sent = Some((conn, req.invocation_id));
            }
        }
        let (conn, id) = sent.expect("the call was sent to a worker");
        let t2 = Instant::now();
        let answer = http_response(&id, 200, "ok");
        let t3 = Instant::now();
        s.rt.handle_input(now, Input::Message { conn, msg: answer });
        let mut replied = false;
        while let Some(out) = s.rt.poll_output() {
            replied |= matches!(out, Output::Reply { .. });
        }
        assert!(replied);
        let t4 = Instant::now();
        core += (t2 - t1) + (t4 - t3);
        building += (t1 - t0) + (t3 - t2);
    }
    (core.as_nanos() as f64 / n as f64, building.as_nanos() as f64 / n as f64)
}

/// Runs the benchmark and publishes its section.
pub fn bench(quick: bool, only: &[String]) {
    let mut shapes = vec![(1, 10), (10, 100), (100, 1_000), (1_000, 10_000)];
    if !only.is_empty() {
        shapes = only
            .iter()
            .map(|s| {
                let (a, w) = s.split_once('x').expect("APPSxWORKERS");
                (a.parse().expect("apps"), w.parse().expect("workers"))
            })
            .collect();
        crate::report::set_dry_run(true);
    }
    let (reps, n) = if quick { (3, 2_000) } else { (7, 100_000) };
    let mut section = Section {
        name: "core",
        title: "Core: one invocation routed and settled",
        command: "cargo run --release -p switchboard-bench -- core".into(),
        intro: format!(
            "The core driven directly (no I/O): an HTTP call is routed by URL to the least busy \
             ready worker, its `InvocationRequest` built, the worker's `InvocationResponse` \
             matched and settled into one reply. Time inside `handle_input` + `poll_output` only; \
             building the caller's request and the worker's answer is timed apart. Median of {reps} \
             runs of {n} invocations (min–max). Goal: ≤ 1 µs per invocation, flat from 10 to \
             10,000 workers."
        ),
        header: vec!["apps", "workers", "core ns/invocation", "message building ns (not core)"],
        ..Section::default()
    };
    let mut medians = Vec::new();
    for &(apps, workers) in &shapes {
        let mut s = setup(apps, workers);
        run(&mut s, n / 10, 1); // warm up
        let mut core = Vec::new();
        let mut build = Vec::new();
        for r in 0..reps {
            let (c, b) = run(&mut s, n, 1_000_000 * (r as u64 + 1));
            core.push(c);
            build.push(b);
        }
        let c = Summary::of(&core);
        medians.push(c.median);
        section.row(&[&apps, &workers, &c.show("ns"), &Summary::of(&build).show("ns")]);
    }
    let worst = medians.iter().copied().fold(0.0, f64::max);
    let flat = worst / medians[0];
    section.notes.push(format!(
        "Worst median {:.0} ns ({}); 10,000 workers vs 10: {:.2}× ({}).",
        worst,
        if worst <= 1000.0 { "goal met" } else { "goal missed" },
        medians[medians.len() - 1] / medians[0],
        if flat <= 1.5 { "flat" } else { "not flat" }
    ));
    section.publish();
}
