//! `switchboard-worker` runs Azure Functions custom-handler apps: the default request/response
//! format (`examples/custom-echo`), `enableForwardingHttpRequest` (`examples/custom-forward`),
//! and a handler that crashes mid-invocation (a clear error, then a restarted handler).

mod worker_support;

use std::time::Duration;

use http::Method;
use serde_json::json;
use switchboard_tests::wait_for;
use worker_support::{deploy, runtime, wait_state, workers_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_handler_apps_in_both_formats_and_a_crashed_handler_restarts() {
    let rt = runtime("handler").await;
    let url = workers_url(&rt);
    let _echo_worker = worker_support::start(&url, "w-echo", &[]);
    wait_state(&rt, "w-echo", "placeholder", Duration::from_secs(20)).await;
    deploy(&rt, "custom-echo", 1, 1).await;
    wait_state(&rt, "w-echo", "ready", Duration::from_secs(20)).await;

    // Default format: Data/Metadata in, Outputs/Logs/ReturnValue out.
    let r = rt.get("custom-echo/api/hello?name=Ada").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, Ada!".to_owned()));
    assert_eq!(r.headers["x-app"], "custom-echo");
    assert!(r.headers["content-type"].starts_with("text/plain"), "{:?}", r.headers);
    let r = rt
        .request(Method::POST, "custom-echo/api/echo?q=1", &[("x-echo", "abc")], br#"{"a":[1,true]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"method": "POST", "query": {"q": "1"}, "params": {}, "body": {"a": [1, true]},
               "x-echo": "abc", "function": "echo", "has_utc_now": true})
    );
    let r = rt.get("custom-echo/api/items/42").await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"id": 42, "name": "item-42"})));
    let r = rt.get("custom-echo/api/teapot").await;
    assert_eq!((r.status.as_u16(), r.text()), (418, "I'm a teapot".to_owned()), "$return takes ReturnValue");
    let r = rt.get("custom-echo/api/setting").await;
    assert_eq!(r.json(), json!({"GREETING": "hello from custom-echo", "port_set": true, "worker": "w-echo"}));
    // The handler's Logs reach the runtime as the invocation's log lines.
    wait_for(Duration::from_secs(5), "the handler's log line", || async {
        let r = rt.admin(Method::GET, "/v1/apps/custom-echo/logs", None).await;
        r.text().contains("greeted Ada").then_some(())
    })
    .await;

    // A handler that dies mid-invocation: that invocation gets a clear error, the next one a
    // restarted handler.
    let pid_before = rt.get("custom-echo/api/runs").await.json()["pid"].clone();
    let r = rt.admin(Method::POST, "/v1/apps/custom-echo/functions/crash/invoke", Some(json!({}))).await;
    assert_eq!(r.json()["outcome"], "failure", "{}", r.text());
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("custom handler process ended while running this invocation"), "{error}");
    let r = rt.get("custom-echo/api/hello?name=again").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, again!".to_owned()));
    let pid_after = rt.get("custom-echo/api/runs").await.json()["pid"].clone();
    assert_ne!(pid_before, pid_after, "a new handler process");
    assert_eq!(worker_support::worker(&rt, "w-echo").await.unwrap()["state"], "ready", "same worker");

    // enableForwardingHttpRequest: the request goes to the handler as it came.
    let _forward_worker = worker_support::start(&url, "w-forward", &[]);
    wait_state(&rt, "w-forward", "placeholder", Duration::from_secs(20)).await;
    deploy(&rt, "custom-forward", 1, 1).await;
    wait_state(&rt, "w-forward", "ready", Duration::from_secs(20)).await;
    let r = rt.get("custom-forward/api/hello?name=Bo").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, Bo!".to_owned()));
    let r = rt.get("custom-forward/api/items/7").await;
    assert_eq!(r.json(), json!({"id": 7, "name": "item-7"}));
    let r =
        rt.request(Method::PUT, "custom-forward/api/echo?x=1&y=two", &[("x-echo", "hi")], b"raw body").await;
    assert_eq!(r.status, 201, "the handler's status, as it answered");
    assert_eq!(r.headers["x-forwarded-by"], "custom-forward");
    assert_eq!(
        r.json(),
        json!({"method": "PUT", "path": "/api/echo", "query": {"x": "1", "y": "two"}, "body": "raw body", "x-echo": "hi"})
    );
    rt.shutdown().await;
}
