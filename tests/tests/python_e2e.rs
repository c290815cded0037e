//! End to end with the real Azure Functions Python worker from PyPI: real sockets, real worker
//! processes, the example apps unchanged.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use switchboard_tests::{Shell, TestRuntime, examples, kill, pids_with_arg, test_config, wait_for};

switchboard_tests::on_both_shells!(
    two_apps_share_one_placeholder_pool,
    a_raising_function_is_a_500_and_the_worker_stays_usable,
    killing_a_worker_mid_call_gives_a_clear_error_and_the_pool_refills,
    fifty_concurrent_calls_across_two_apps,
    removing_an_app_stops_its_workers_and_404s_its_routes,
    a_broken_app_fails_to_deploy_with_a_precise_error,
    shutdown_leaves_no_worker_process_behind,
);

async fn two_apps(shell: Shell, min_idle: u32) -> TestRuntime {
    let apps = [examples().join("hello"), examples().join("shop")];
    TestRuntime::start_on(shell, test_config(min_idle, 8), &apps).await
}

async fn two_apps_share_one_placeholder_pool(shell: Shell) {
    let rt = two_apps(shell, 2).await;

    let r = rt.get("hello/api/hello?name=Ada").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, Ada!");
    assert_eq!(r.headers["x-app"], "hello");
    assert!(r.headers["content-type"].starts_with("text/plain"), "{:?}", r.headers);

    let r = rt.get("hello/api/items/42").await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"id": 42, "name": "item-42"})));
    let r = rt.get("hello/api/items/abc").await;
    assert_eq!(r.status, 404, "the {{id:int}} constraint is enforced by the runtime");

    let r = rt
        .request(
            Method::POST,
            "hello/api/echo",
            &[("x-echo", "abc"), ("content-type", "application/json")],
            br#"{"a":[1,true]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"body": {"a": [1, true]}, "method": "POST", "x-echo": "abc"}));

    let r = rt.get("shop/api/products/apple").await;
    assert_eq!(r.json()["price_cents"], 50);
    let r = rt.get("shop/api/products/nope").await;
    assert_eq!(r.status, 404, "a status chosen by the function");
    assert_eq!(r.json()["error"], "unknown product id: nope");
    let r = rt.request(Method::POST, "shop/api/order", &[], br#"{"items":[{"id":"apple","qty":3}]}"#).await;
    assert_eq!((r.status.as_u16(), r.json()["total_cents"].clone()), (201, json!(150)));

    // Each app's settings reach only its own workers.
    let r = rt.get("hello/api/setting").await;
    assert_eq!(r.json(), json!({"GREETING": "hello from hello", "PATH_set": true, "SHOP_NAME": null}));
    let r = rt.get("shop/api/whoami").await;
    assert_eq!(r.json(), json!({"GREETING": "hello from shop", "SHOP_NAME": "shop"}));

    // Both apps run on workers specialized out of the one python pool.
    let workers = rt.workers().await;
    for app in ["hello", "shop"] {
        let w = workers
            .iter()
            .find(|w| w["app"] == app)
            .unwrap_or_else(|| panic!("no worker for {app}: {workers:?}"));
        assert_eq!(w["pool"], "python");
        assert_eq!(w["state"], "ready");
    }
    rt.shutdown().await;
}

async fn a_raising_function_is_a_500_and_the_worker_stays_usable(shell: Shell) {
    let rt = two_apps(shell, 1).await;
    let r = rt.get("hello/api/fail").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json(),
        json!({"error": "the function failed"}),
        "messages stay hidden unless the app opts in"
    );
    let before: Vec<_> = rt.workers().await.into_iter().filter(|w| w["app"] == "hello").collect();
    let r = rt.get("hello/api/hello").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, world!".to_owned()));
    let after: Vec<_> = rt.workers().await.into_iter().filter(|w| w["app"] == "hello").collect();
    assert_eq!(before[0]["id"], after[0]["id"], "same worker");
    rt.shutdown().await;
}

async fn killing_a_worker_mid_call_gives_a_clear_error_and_the_pool_refills(shell: Shell) {
    let rt = two_apps(shell, 1).await;
    assert_eq!(rt.get("hello/api/hello").await.status, 200);
    let worker = rt.workers().await.into_iter().find(|w| w["app"] == "hello").expect("hello has a worker");
    let id = worker["id"].as_str().unwrap().to_owned();
    let pids = pids_with_arg(&id);
    assert_eq!(pids.len(), 1, "one process for worker {id}");

    let slow = rt.get("hello/api/slow?ms=20000");
    let killer = async {
        // Kill once the call is running on the worker.
        wait_for(Duration::from_secs(10), "the slow call to reach the worker", || async {
            let w = rt.workers().await.into_iter().find(|w| w["id"] == id.as_str())?;
            (w["in_flight"] == 1).then_some(())
        })
        .await;
        kill(pids[0], libc::SIGKILL);
        Instant::now()
    };
    let (r, killed_at) = tokio::join!(slow, killer);
    let waited = killed_at.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("worker"), "{}", r.text());
    assert!(waited < Duration::from_secs(5), "answered {waited:?} after the kill, not at the 20 s timeout");

    // The pool refills and the app is served again.
    let r = rt.get("hello/api/hello?name=again").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, again!".to_owned()));
    wait_for(Duration::from_secs(20), "the pool to refill", || async {
        let idle = rt.workers().await.into_iter().filter(|w| w["state"] == "placeholder").count();
        (idle >= 1).then_some(())
    })
    .await;
    rt.shutdown().await;
}

async fn fifty_concurrent_calls_across_two_apps(shell: Shell) {
    let rt = two_apps(shell, 2).await;
    let calls = (0..50).map(|i| {
        let rt = &rt;
        async move {
            if i % 2 == 0 {
                let r = rt.get(&format!("hello/api/slow?ms={}", 50 + i)).await;
                (r.status.as_u16(), r.json(), json!({"slept_ms": 50 + i}))
            } else {
                let r = rt.get(&format!("hello/api/items/{i}")).await;
                let r2 = rt.get("shop/api/products/bread").await;
                assert_eq!(r2.json()["price_cents"], 250);
                (r.status.as_u16(), r.json(), json!({"id": i, "name": format!("item-{i}")}))
            }
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for (status, got, want) in results {
        assert_eq!((status, &got), (200, &want));
    }
    rt.shutdown().await;
}

async fn removing_an_app_stops_its_workers_and_404s_its_routes(shell: Shell) {
    let rt = two_apps(shell, 1).await;
    assert_eq!(rt.get("hello/api/hello").await.status, 200);
    assert_eq!(rt.get("shop/api/products").await.status, 200);
    let workers = rt.workers().await;
    let hello_ids: Vec<String> = workers
        .iter()
        .filter(|w| w["app"] == "hello")
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!hello_ids.is_empty(), "hello has a worker after serving: {workers:#?}");

    let r = rt.admin(Method::DELETE, "/v1/apps/hello", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rt.get("hello/api/hello").await.status, 404);
    assert_eq!(rt.get("shop/api/products").await.status, 200, "the other app keeps serving");
    wait_for(Duration::from_secs(10), "hello's worker processes to stop", || async {
        hello_ids.iter().all(|id| pids_with_arg(id).is_empty()).then_some(())
    })
    .await;
    assert!(rt.workers().await.iter().all(|w| w["app"] != "hello"));
    rt.shutdown().await;
}

async fn a_broken_app_fails_to_deploy_with_a_precise_error(shell: Shell) {
    let rt = two_apps(shell, 1).await;
    let dir = std::env::temp_dir().join(format!("switchboard-broken-{shell:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bad")).unwrap();
    std::fs::write(dir.join("host.json"), r#"{"version": "2.0"}"#).unwrap();
    std::fs::write(
        dir.join("bad/function.json"),
        r#"{"bindings": [ {"type": "httpTrigger", "name": "req" }"#,
    )
    .unwrap();
    std::fs::write(dir.join("bad/__init__.py"), "def main(req): pass\n").unwrap();

    let deploy = json!({"path": dir, "name": "broken"});
    let r = rt.admin(Method::POST, "/v1/apps", Some(deploy.clone())).await;
    assert_eq!(r.status, 400);
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("bad/function.json: invalid JSON"), "{error}");

    // Valid JSON, but the script it names is missing.
    std::fs::write(
        dir.join("bad/function.json"),
        r#"{"scriptFile": "main.py", "bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}]}"#,
    )
    .unwrap();
    let r = rt.admin(Method::POST, "/v1/apps", Some(deploy)).await;
    assert_eq!(r.status, 400);
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("bad/function.json") && error.contains("main.py"), "{error}");

    assert_eq!(rt.get("broken/api/bad").await.status, 404);
    assert_eq!(rt.get("hello/api/hello").await.status, 200, "the runtime keeps serving");
    std::fs::remove_dir_all(&dir).unwrap();
    rt.shutdown().await;
}

async fn shutdown_leaves_no_worker_process_behind(shell: Shell) {
    let rt = two_apps(shell, 2).await;
    assert_eq!(rt.get("hello/api/hello").await.status, 200);
    assert_eq!(rt.get("shop/api/products").await.status, 200);
    // Two specialized workers, and the two placeholders that replaced them once they boot.
    let ids: Vec<String> = wait_for(Duration::from_secs(20), "four workers", || async {
        let workers = rt.workers().await;
        (workers.len() >= 4).then(|| workers.iter().map(|w| w["id"].as_str().unwrap().to_owned()).collect())
    })
    .await;
    let pids: Vec<u32> = ids.iter().flat_map(|id| pids_with_arg(id)).collect();
    assert_eq!(pids.len(), ids.len(), "one process per worker");
    rt.shutdown().await;
    let left: Vec<u32> = pids.into_iter().filter(|p| switchboard_tests::alive(*p)).collect();
    assert!(left.is_empty(), "worker processes still alive after shutdown: {left:?}");
}
