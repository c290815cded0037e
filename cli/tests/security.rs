//! App settings, join tokens and the admin token never leave where they belong: `switchboard
//! serve` runs as a process with `RUST_LOG=debug` and JSON logs, an app with distinctive secret
//! settings is deployed, updated and called, and everything observable is scraped (every log
//! line, `/metrics`, every admin route, error responses). Only the app's own function may show
//! its settings, to its own caller.

mod support;

use std::time::Duration;

use http::Method;
use serde_json::json;
use support::{ServeProcess, TempDir, example};
use switchboard_core::testkit::{init_response, python_capabilities, start_stream};
use switchboard_tests::grpc::{RawStream, code};
use switchboard_tests::{Resp, http_get, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_metrics_and_the_admin_api_on_tokio() {
    secrets_stay_out_of_logs_metrics_and_the_admin_api("tokio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_metrics_and_the_admin_api_on_smol() {
    secrets_stay_out_of_logs_metrics_and_the_admin_api("smol").await;
}

async fn send(
    admin: String,
    token: String,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
) -> Resp {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body.map(|b| b.to_string()).unwrap_or_default().into()))
        .unwrap();
    let resp = client.request(req).await.expect("admin request");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp { status, headers: Default::default(), body }
}

async fn secrets_stay_out_of_logs_metrics_and_the_admin_api(shell: &str) {
    let pid = std::process::id();
    let greeting = format!("greeting-SECRET-{shell}-{pid}-a7c1");
    let api_key = format!("api-key-SECRET-{shell}-{pid}-b8d2");
    let rotated = format!("rotated-SECRET-{shell}-{pid}-c9e3");
    let join = format!("join-SECRET-{shell}-{pid}-d0f4");
    let admin_token = format!("admin-SECRET-{shell}-{pid}-e1a5");
    let secrets = [&greeting, &api_key, &rotated, &join, &admin_token];

    let dir = TempDir::new(&format!("secrets-{shell}"));
    let hello = example("hello");
    let head = switchboard_tests::loopback_config(&dir.0.join("state"), &admin_token);
    let config = format!(
        r#"{head}[[pool]]
language = "python"
min_idle = 1
[[pool]]
language = "custom"
provisioner = "external"
join_token = "{join}"
[[app]]
path = "{hello}"
settings = {{ GREETING = "{greeting}", API_KEY = "{api_key}" }}
"#
    );
    let args = ["--log-format", "json", "serve", "--shell", shell];
    let serving = ServeProcess::with_config(dir, &config, &args, &[("RUST_LOG", "debug")]).await;
    let host_port = |url: &str| url.trim_start_matches("http://").to_owned();
    let (front, admin) = (host_port(&serving.front_door), host_port(&serving.admin));
    let workers = host_port(&serving.workers).parse().unwrap();

    // The setting reaches the app's worker: the app's own function shows it to its own caller.
    let r = http_get(&format!("http://{front}/hello/api/setting"), None).await;
    assert_eq!(r.json()["GREETING"], greeting.as_str(), "{}", r.text());

    // Everything else is scraped.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, r: &Resp| seen.push((what.to_owned(), r.text()));
    for path in ["hello/api/hello", "hello/api/fail", "hello/api/nope", "hello/api/items/abc", "nope/api/x"] {
        let r = http_get(&format!("http://{front}/{path}"), None).await;
        keep(path, &r);
    }
    let a = |m, p: &str, b| send(admin.clone(), admin_token.clone(), m, p.to_owned(), b);
    let r = a(Method::POST, "/v1/apps/hello/functions/hello/invoke", Some(json!({}))).await;
    assert_eq!(r.json()["outcome"], "success", "{}", r.text());
    keep("admin invoke", &r);
    // Deploy errors name settings, never their values.
    let bad = json!({"path": hello, "settings": {"AzureWebJobs.hello.Disabled": api_key}});
    let r = a(Method::PUT, "/v1/apps/hello", Some(bad)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    keep("bad deploy", &r);
    let bad = json!({"path": "/nowhere", "settings": {"GREETING": api_key}});
    let r = a(Method::POST, "/v1/apps", Some(bad)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    keep("deploy of a missing folder", &r);
    // A new version with a rotated secret: specialized again, with the new value.
    let update = json!({"path": hello, "settings": {"GREETING": rotated, "API_KEY": api_key}});
    let r = a(Method::PUT, "/v1/apps/hello", Some(update)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    keep("update", &r);
    wait_for(Duration::from_secs(30), "the rotated setting in the app", || async {
        let r = http_get(&format!("http://{front}/hello/api/setting"), None).await;
        (r.json()["GREETING"] == rotated.as_str()).then_some(())
    })
    .await;
    // A worker that joins with the join token, and a stream nobody issued.
    let mut joined = RawStream::open(workers, &[("x-switchboard-join-token", join.as_str())]).await;
    joined.send(&start_stream("joined-worker"));
    let _init = joined.message(Duration::from_secs(10)).await;
    joined.send(&init_response(python_capabilities()));
    let mut stranger = RawStream::open(workers, &[]).await;
    stranger.send(&start_stream("stranger-id"));
    assert_eq!(stranger.status(Duration::from_secs(10)).await.0, code::UNAUTHENTICATED);

    for path in [
        "/metrics",
        "/v1/apps",
        "/v1/apps/hello",
        "/v1/workers",
        "/v1/pools",
        "/v1/apps/hello/logs?tail=1000&system=true",
        "/healthz",
        "/readyz",
        "/v1/nothing",
    ] {
        let r = a(Method::GET, path, None).await;
        keep(path, &r);
    }
    let r = http_get(&format!("http://{admin}/v1/apps"), Some("wrong")).await;
    keep("wrong token", &r);
    let shown = seen.iter().find(|(what, _)| what == "/v1/apps/hello").unwrap();
    assert!(shown.1.contains("GREETING") && shown.1.contains("API_KEY"), "names are shown: {}", shown.1);

    let (status, stderr) = serving.stop().await;
    assert!(status.success(), "{status}");
    seen.push(("stderr".into(), stderr.clone()));

    for (what, text) in &seen {
        for secret in secrets {
            assert!(!text.contains(secret.as_str()), "{secret} appears in {what}:\n{text}");
        }
    }
    // The scrape saw what it should: debug lines, the specialization, the rejection and its peer.
    let lines: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.iter().any(|l| l["level"] == "DEBUG"), "RUST_LOG=debug took effect");
    assert!(
        lines.iter().filter(|l| l["message"] == "worker specialized" && l["app"] == "hello").count() >= 2
    );
    let rejected = lines
        .iter()
        .find(|l| l["message"] == "worker rejected" && l["worker"] == "stranger-id")
        .expect("the rejection is logged");
    assert_eq!(rejected["level"], "WARN");
    assert!(rejected["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{rejected}");
    assert!(rejected["reason"].as_str().unwrap().starts_with("unknown worker id"), "{rejected}");
}
