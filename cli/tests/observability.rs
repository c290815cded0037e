//! Metrics, trace context and structured logs, against real Python workers: `/metrics`
//! parsed by a strict text-format parser with counters that move by exactly the calls made,
//! the caller's `traceparent` reaching the function, and `--log-format json` lines carrying
//! app, function, invocation and worker ids.

mod support;

use std::time::Duration;

use http::Method;
use support::prom::{self, Exposition};
use support::{ServeProcess, TOKEN, uuid_like};
use switchboard_tests::{TestRuntime, examples, http_get, kill, pids_with_arg, test_config, wait_for};

async fn scrape(rt: &TestRuntime) -> Exposition {
    let r = rt.admin(Method::GET, "/metrics", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"), "{:?}", r.headers);
    prom::parse(&r.text()).unwrap_or_else(|e| panic!("{e}\n{}", r.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_invocations() {
    let rt = TestRuntime::start(test_config(2, 8), &[examples().join("hello")]).await;
    let unauthorized = http_get(&format!("http://{}/metrics", rt.started.admin), None).await;
    assert_eq!(unauthorized.status, 401, "metrics need the token unless [admin] public_metrics");

    let success = [("app", "hello"), ("function", "hello"), ("outcome", "success")];
    let failure = [("app", "hello"), ("function", "fail"), ("outcome", "failure")];
    let before = scrape(&rt).await;
    for family in ["switchboard_workers", "switchboard_app_queue_depth", "switchboard_calls_accepted"] {
        assert!(before.families.contains_key(family), "{family} is exposed");
    }

    for i in 0..5 {
        let r = rt.get(&format!("hello/api/hello?name=m{i}")).await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(rt.get("hello/api/fail").await.status, 500);
    }
    assert_eq!(rt.get("hello/api/nope").await.status, 404, "refused calls are not invocations");

    let after = scrape(&rt).await;
    assert_eq!(after.families["switchboard_invocations"].kind, "counter");
    assert_eq!(after.families["switchboard_invocation_duration_seconds"].kind, "histogram");
    assert_eq!(after.families["switchboard_invocation_duration_seconds"].unit.as_deref(), Some("seconds"));
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value_or_zero(name, labels) - before.value_or_zero(name, labels)
    };
    assert_eq!(delta("switchboard_invocations_total", &success), 5.0);
    assert_eq!(delta("switchboard_invocations_total", &failure), 2.0);
    let hello_fn = [("app", "hello"), ("function", "hello")];
    assert_eq!(delta("switchboard_invocation_duration_seconds_count", &hello_fn), 5.0);
    assert!(after.value("switchboard_invocation_duration_seconds_sum", &hello_fn).unwrap() > 0.0);
    assert_eq!(delta("switchboard_calls_accepted_total", &[]), 7.0);
    assert_eq!(delta("switchboard_calls_refused_total", &[]), 1.0);
    assert!(
        after.samples("switchboard_invocations_total").all(|s| s.labels["app"] == "hello"
            && ["hello", "fail"].contains(&s.labels["function"].as_str())),
        "labels come only from deployed functions, never from raw paths"
    );

    // Specialization and workers, from the core's own view.
    assert_eq!(
        after.value("switchboard_specializations_total", &[("app", "hello"), ("result", "success")]),
        Some(1.0)
    );
    let spec = [("app", "hello"), ("language", "python")];
    assert_eq!(after.value("switchboard_specialization_duration_seconds_count", &spec), Some(1.0));
    assert!(after.sum("switchboard_worker_phase_duration_seconds_count", &[("phase", "env_reload")]) >= 1.0);
    assert_eq!(after.value("switchboard_workers", &[("language", "python"), ("state", "ready")]), Some(1.0));
    assert_eq!(after.value("switchboard_app_ready_workers", &[("app", "hello")]), Some(1.0));
    assert_eq!(after.value("switchboard_app_queue_depth", &[("app", "hello")]), Some(0.0));
    assert_eq!(after.value("switchboard_app_in_flight", &[("app", "hello")]), Some(0.0));
    assert_eq!(after.value("switchboard_pool_min_idle", &[("pool", "python")]), Some(2.0));
    assert!(after.value("switchboard_provisions_total", &[("pool", "python")]).unwrap() >= 3.0);

    // A killed placeholder is an eviction with a reason, and the pool provisions a new one.
    let placeholder = wait_for(Duration::from_secs(30), "a placeholder", || async {
        rt.workers()
            .await
            .into_iter()
            .find(|w| w["state"] == "placeholder")
            .map(|w| w["id"].as_str().unwrap().to_owned())
    })
    .await;
    let provisions = after.value("switchboard_provisions_total", &[("pool", "python")]).unwrap();
    let evictions = after.sum("switchboard_worker_evictions_total", &[("language", "python")]);
    kill(pids_with_arg(&placeholder)[0], libc::SIGKILL);
    wait_for(Duration::from_secs(20), "the eviction and a new provision in /metrics", || async {
        let now = scrape(&rt).await;
        (now.sum("switchboard_worker_evictions_total", &[("language", "python")]) == evictions + 1.0
            && now.value("switchboard_provisions_total", &[("pool", "python")]).unwrap() > provisions)
            .then_some(())
    })
    .await;

    // A removed app's series go away (bounded label sets).
    let r = rt.admin(Method::DELETE, "/v1/apps/hello", None).await;
    assert_eq!(r.status, 200);
    let removed = scrape(&rt).await;
    assert_eq!(removed.samples("switchboard_invocations_total").count(), 0);
    assert_eq!(removed.value("switchboard_app_queue_depth", &[("app", "hello")]), None);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_metrics_need_no_token_but_the_rest_does() {
    let mut config = test_config(0, 1);
    config.admin.public_metrics = true;
    let rt = TestRuntime::start(config, &[]).await;
    let r = http_get(&format!("http://{}/metrics", rt.started.admin), None).await;
    assert_eq!(r.status, 200);
    let exp = prom::parse(&r.text()).unwrap();
    assert_eq!(exp.value("switchboard_pool_max", &[("pool", "python")]), Some(1.0));
    assert_eq!(http_get(&format!("http://{}/v1/apps", rt.started.admin), None).await.status, 401);
    assert_eq!(http_get(&format!("http://{}/healthz", rt.started.admin), None).await.status, 200);
    assert_eq!(http_get(&format!("http://{}/readyz", rt.started.admin), None).await.status, 200);
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_traceparent_reaches_the_function() {
    let rt = TestRuntime::start(test_config(1, 8), &[examples().join("hello")]).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = rt
        .request(Method::GET, "hello/api/trace", &[("traceparent", tp), ("tracestate", "vendor=1")], b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!((seen["traceparent"].as_str(), seen["tracestate"].as_str()), (Some(tp), Some("vendor=1")));
    assert_eq!(seen["function_name"], "trace");
    assert!(uuid_like(seen["invocation_id"].as_str().unwrap()), "{seen}");

    // No header, or a malformed one: the worker sees an empty trace context.
    let r = rt.get("hello/api/trace").await;
    assert_eq!(r.json()["traceparent"], "");
    let r = rt.request(Method::GET, "hello/api/trace", &[("traceparent", "00-not-a-trace-01")], b"").await;
    assert_eq!(r.json()["traceparent"], "");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_ids() {
    let serving = ServeProcess::start("jsonlogs", &["--log-format", "json"], &["shop"], 1).await;
    let tag = format!("json-{}", std::process::id());
    let r = http_get(&format!("{}/shop/api/log?tag={tag}", serving.front_door), None).await;
    assert_eq!(r.text(), format!("logged {tag}"));
    let marker = format!("log-line-marker {tag}");
    let stderr_path = serving.stderr.clone();
    wait_for(Duration::from_secs(20), "the worker's log line on stderr", || {
        let stderr_path = stderr_path.clone();
        let marker = marker.clone();
        async move { std::fs::read_to_string(&stderr_path).ok()?.contains(&marker).then_some(()) }
    })
    .await;
    let workers = http_get(&format!("{}/v1/workers", serving.admin), Some(TOKEN)).await.json();
    let worker = workers.as_array().unwrap().iter().find(|w| w["app"] == "shop").unwrap()["id"].clone();
    let (status, stderr) = serving.stop().await;
    assert!(status.success(), "{status}");

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{stderr}");
    for line in &lines {
        assert!(line.is_object() && line["timestamp"].is_string() && line["level"].is_string(), "{line}");
    }
    let logged = lines.iter().find(|l| l["message"] == marker.as_str()).expect("the function's line");
    assert_eq!(
        (logged["app"].as_str(), logged["function"].as_str()),
        (Some("shop"), Some("log")),
        "{logged}"
    );
    assert!(uuid_like(logged["invocation"].as_str().unwrap()), "{logged}");
    assert_eq!(logged["worker"], worker, "{logged}");
    assert_eq!(logged["target"], "worker");
    // Lines about a worker name it; lines about an app's worker name the app too.
    let specialized =
        lines.iter().find(|l| l["message"] == "worker specialized").expect("a specialization line");
    assert_eq!(
        (specialized["app"].as_str(), &specialized["worker"]),
        (Some("shop"), &worker),
        "{specialized}"
    );
    for line in lines.iter().filter(|l| l["target"] == "worker.stdout" || l["target"] == "worker.stderr") {
        assert!(line["worker"].is_string(), "{line}");
    }
}
