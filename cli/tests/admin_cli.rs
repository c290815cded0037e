//! The admin CLI against a running runtime with real Python workers: every command, its
//! table and `--json` output, and its exit codes (0 done, 1 failed, 2 usage, 3 unreachable).

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Cli, TempDir, example, read_until, uuid_like};
use switchboard_tests::{TestRuntime, pids_with_arg, test_config, wait_for};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn runtime(min_idle: u32, apps: &[&str]) -> (TestRuntime, Cli) {
    let apps: Vec<_> = apps.iter().map(|a| switchboard_tests::examples().join(a)).collect();
    let rt = TestRuntime::start(test_config(min_idle, 8), &apps).await;
    let cli = Cli::new(rt.started.admin);
    (rt, cli)
}

/// Waits until the app answers `path` on the front door with a 200 and this body.
async fn wait_body(rt: &TestRuntime, path: &str, want: serde_json::Value) {
    wait_for(Duration::from_secs(30), &format!("{path} to answer {want}"), || async {
        let r = rt.get(path).await;
        (r.status == 200 && serde_json::from_slice::<serde_json::Value>(&r.body).ok() == Some(want.clone()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_deploy_list_show_update_scale_drain_remove() {
    let (rt, cli) = runtime(1, &[]).await;
    let hello = example("hello");

    // list: an empty table.
    assert_eq!(cli.run(&["app", "list"]).await.ok().lines().count(), 1, "only the header");

    // deploy, with a setting and a scale; a missing folder fails.
    let out =
        cli.run(&["app", "deploy", &hello, "--setting", "GREETING=from the cli", "--min-workers", "1"]).await;
    assert!(out.ok().starts_with("deployed hello (version 1)"), "{}", out.stdout);
    cli.run(&["app", "deploy", "/no/such/folder"]).await.fails(1, "/no/such/folder");
    cli.run(&["app", "deploy", &hello, "--setting", "NOEQUALS"]).await.fails(2, "KEY=VALUE");
    wait_body(
        &rt,
        "hello/api/setting",
        json!({"GREETING": "from the cli", "PATH_set": true, "SHOP_NAME": null}),
    )
    .await;

    // list: a table and JSON.
    let out = cli.run(&["app", "list"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("FUNCTIONS") && lines[0].contains("STATUS"),
        "{out:?}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..4], ["hello", "1", "python", "7"], "{}", lines[1]);
    let apps = cli.run(&["app", "list", "--json"]).await.json();
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["scale"]["min_workers"], 1);

    // show: settings by name only, the function table; an unknown app fails.
    let out = cli.run(&["app", "show", "hello"]).await;
    let text = out.ok();
    assert!(
        text.contains("GREETING") && !text.contains("from the cli"),
        "setting values stay secret: {text}"
    );
    assert!(text.lines().any(|l| l.starts_with("items") && l.contains("items/{id:int}")), "{text}");
    assert_eq!(cli.run(&["app", "show", "hello", "--json"]).await.json()["version"], 1);
    cli.run(&["app", "show", "nope"]).await.fails(1, "no such app");

    // update: a new version with a new setting; only deployed apps can be updated.
    let out = cli.run(&["app", "update", &hello, "--setting", "GREETING=v2", "--min-workers", "1"]).await;
    assert!(out.ok().starts_with("updated hello (version 2)"), "{}", out.stdout);
    wait_body(&rt, "hello/api/setting", json!({"GREETING": "v2", "PATH_set": true, "SHOP_NAME": null})).await;
    cli.run(&["app", "update", &example("shop")]).await.fails(1, "no app named \"shop\"");

    // scale: fields left out keep their value; nothing to change is a usage error.
    let out = cli.run(&["app", "scale", "hello", "--max-workers", "3", "--concurrency", "2"]).await;
    assert_eq!(out.ok().trim(), "hello: min_workers 1, max_workers 3, concurrency 2, queue_limit 256");
    assert_eq!(cli.run(&["app", "show", "hello", "--json"]).await.json()["scale"]["max_workers"], 3);
    cli.run(&["app", "scale", "hello"]).await.fails(2, "nothing to change");
    cli.run(&["app", "scale", "nope", "--max", "2"]).await.fails(1, "no app named \"nope\"");
    cli.run(&["app", "scale", "hello", "--min", "5", "--max", "2"]).await.fails(1, "invalid scale");

    // drain: the app's workers are replaced by fresh ones; the app keeps serving.
    let ready = || async {
        let workers = rt.workers().await;
        workers
            .iter()
            .find(|w| w["app"] == "hello" && w["state"] == "ready")
            .map(|w| w["id"].as_str().unwrap().to_owned())
    };
    let old = wait_for(Duration::from_secs(30), "a ready hello worker", ready).await;
    let out = cli.run(&["app", "drain", "hello"]).await;
    assert!(out.ok().starts_with("draining 1 worker(s) of hello: "), "{}", out.stdout);
    assert!(out.stdout.contains(&old), "{}", out.stdout);
    wait_for(Duration::from_secs(30), "the drained worker to go", || async {
        rt.workers().await.iter().all(|w| w["id"] != old.as_str()).then_some(())
    })
    .await;
    assert_eq!(rt.get("hello/api/hello").await.text(), "Hello, world!", "a fresh worker serves the app");
    assert!(ready().await.is_some_and(|id| id != old));
    cli.run(&["app", "drain", "nope"]).await.fails(1, "no app named \"nope\"");

    // remove: routes go; removing again fails.
    assert!(cli.run(&["app", "remove", "hello"]).await.ok().starts_with("removed hello"));
    assert_eq!(rt.get("hello/api/hello").await.status, 404);
    cli.run(&["app", "remove", "hello"]).await.fails(1, "no app named \"hello\"");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_pools_and_where_the_token_comes_from() {
    let (rt, cli) = runtime(2, &["hello"]).await;
    assert_eq!(rt.get("hello/api/hello").await.status, 200);
    wait_for(Duration::from_secs(30), "two placeholders", || async {
        (rt.workers().await.iter().filter(|w| w["state"] == "placeholder").count() >= 2).then_some(())
    })
    .await;

    // workers: a table with state, app, language, in-flight, last seen, pid and peer.
    let out = cli.run(&["workers"]).await;
    let text = out.ok();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "STATE", "APP", "LANGUAGE", "IN-FLIGHT", "LAST-SEEN", "PID", "PEER"]);
    let ready = text.lines().find(|l| l.contains(" ready ")).unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = ready.split_whitespace().collect();
    assert_eq!(cells[1..4], ["ready", "hello", "python"], "{ready}");
    assert!(cells[4].starts_with("0/"), "in flight / capacity: {ready}");

    // --json: the pid is the worker's process; the peer its stream.
    let workers = cli.run(&["workers", "--json"]).await.json();
    let workers = workers.as_array().unwrap();
    assert!(workers.len() >= 3, "{workers:?}");
    for w in workers {
        let id = w["id"].as_str().unwrap();
        assert_eq!(pids_with_arg(id), [w["pid"].as_u64().unwrap() as u32], "{w}");
        assert!(w["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{w}");
        assert_eq!(w["language"], "python");
    }

    // workers drain: a placeholder is released at once; an unknown id fails.
    let placeholder =
        workers.iter().find(|w| w["state"] == "placeholder").unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        cli.run(&["workers", "drain", &placeholder]).await.ok().trim(),
        format!("draining worker {placeholder}")
    );
    wait_for(Duration::from_secs(10), "the drained placeholder to go", || async {
        rt.workers().await.iter().all(|w| w["id"] != placeholder.as_str()).then_some(())
    })
    .await;
    cli.run(&["workers", "drain", "no-such-worker"]).await.fails(1, "no worker with id");

    // pools: sizes and targets.
    let out = cli.run(&["pools"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["POOL", "IDLE", "MIN-IDLE", "MEMBERS", "MAX", "PROVISIONING", "FAILURES"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((row[0], row[2], row[4]), ("python", "2", "8"), "{}", lines[1]);
    let pools = cli.run(&["pools", "--json"]).await.json();
    assert_eq!((pools[0]["min_idle"].clone(), pools[0]["max"].clone()), (json!(2), json!(8)));

    // The token: missing or wrong is exit 1 with a hint; SWITCHBOARD_TOKEN and the token file
    // in .switchboard/ are found.
    let dir = TempDir::new("token");
    let mut anonymous = cli.clone();
    anonymous.token = None;
    anonymous.cwd = dir.0.clone();
    anonymous.run(&["pools"]).await.fails(1, "SWITCHBOARD_TOKEN");
    let mut wrong = cli.clone();
    wrong.token = Some("wrong".into());
    wrong.run(&["workers"]).await.fails(1, "refused the admin token");
    let mut from_env = anonymous.clone();
    from_env.env.push(("SWITCHBOARD_TOKEN".into(), support::TOKEN.into()));
    from_env.run(&["pools"]).await.ok();
    std::fs::create_dir_all(dir.0.join(".switchboard")).unwrap();
    std::fs::write(dir.0.join(".switchboard/admin-token"), format!("{}\n", support::TOKEN)).unwrap();
    anonymous.run(&["pools"]).await.ok();
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_prints_results_and_fails_with_the_function() {
    let (rt, cli) = runtime(1, &["hello"]).await;
    assert_eq!(cli.run(&["invoke", "hello", "hello"]).await.ok(), "Hello, world!\n");

    let out = cli.run(&["invoke", "hello", "echo", "--data", r#"{"a": [1, 2]}"#]).await;
    let echoed: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(echoed, json!({"body": {"a": [1, 2]}, "method": "POST", "x-echo": null}));

    let dir = TempDir::new("invoke");
    let file = dir.0.join("input.json");
    std::fs::write(&file, r#"{"from": "file"}"#).unwrap();
    let out =
        cli.run(&["invoke", "hello", "echo", "--data", &format!("@{}", file.display()), "--json"]).await;
    let reply = out.json();
    assert_eq!(reply["outcome"], "success");
    assert_eq!(reply["status"], "200");
    assert!(reply["took_ms"].as_f64().is_some());
    let body: serde_json::Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["body"], json!({"from": "file"}));

    // The trace context reaches the function (InvocationRequest.trace_context).
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = cli.run(&["invoke", "hello", "trace", "--traceparent", tp]).await;
    let traced: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(traced["traceparent"], tp);
    assert!(uuid_like(traced["invocation_id"].as_str().unwrap()), "{traced}");

    // Failures: the function raised, nothing to call, bad --data.
    let out = cli.run(&["invoke", "hello", "fail"]).await;
    out.fails(1, "hello/fail: failure: RuntimeError: boom: intentional failure from hello/fail");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let out = cli.run(&["invoke", "hello", "fail", "--json"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["outcome"], "failure");
    cli.run(&["invoke", "hello", "nope"]).await.fails(1, "no such function");
    cli.run(&["invoke", "nope", "hello"]).await.fails(1, "no such app");
    cli.run(&["invoke", "hello", "echo", "--data", "@/no/such/file"]).await.fails(2, "/no/such/file");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_receives_a_python_log_line() {
    let (rt, cli) = runtime(1, &["shop"]).await;
    let tag = format!("follow-{}", std::process::id());
    let mut follower = cli.spawn(&["logs", "shop", "--follow"]);
    let mut json_follower = cli.spawn(&["logs", "shop", "--follow", "--json"]);
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let mut json_lines = BufReader::new(json_follower.stdout.take().unwrap()).lines();

    // A follower that connects after the call still gets it: the stream starts with the
    // app's recent lines.
    let r = rt.get(&format!("shop/api/log?tag={tag}")).await;
    assert_eq!(r.text(), format!("logged {tag}"));
    let marker = format!("log-line-marker {tag}");
    let worker = rt.workers().await.into_iter().find(|w| w["app"] == "shop").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Text: time, level, function, invocation, worker, message.
    let line = read_until(&mut lines, Duration::from_secs(20), |l| l.contains(&marker)).await;
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..3], ["INFO", "log"], "{line}");
    assert!(uuid_like(fields[3]), "an invocation id: {line}");
    assert_eq!(fields[4], worker, "{line}");
    assert!(line.ends_with(&marker), "{line}");

    // JSON: one object per line with the same attribution.
    let line = read_until(&mut json_lines, Duration::from_secs(20), |l| l.contains(&marker)).await;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (v["app"].as_str(), v["function"].as_str(), v["level"].as_str()),
        (Some("shop"), Some("log"), Some("information"))
    );
    assert_eq!(v["worker"], worker.as_str());
    assert_eq!(v["message"], marker.as_str());
    assert_eq!(v["invocation"], fields[3], "the same invocation in both streams");

    // A second call arrives live.
    let tag2 = format!("{tag}-live");
    assert_eq!(rt.get(&format!("shop/api/log?tag={tag2}")).await.status, 200);
    read_until(&mut lines, Duration::from_secs(20), |l| l.ends_with(&format!("log-line-marker {tag2}")))
        .await;

    // Without --follow: the recent lines; the worker's own lines only with --system.
    let out = cli.run(&["logs", "shop"]).await;
    assert!(out.ok().lines().any(|l| l.ends_with(&marker)), "{}", out.stdout);
    assert!(!out.stdout.contains("FunctionInvocationRequest"), "{}", out.stdout);
    let out = cli.run(&["logs", "shop", "--system", "--tail", "1000"]).await;
    assert!(out.ok().contains("Received FunctionInvocationRequest"), "{}", out.stdout);
    let out = cli.run(&["logs", "shop", "--json", "--tail", "1"]).await;
    assert_eq!(out.json()[0]["message"], format!("log-line-marker {tag2}"));
    cli.run(&["logs", "nope"]).await.fails(1, "no app named \"nope\"");
    cli.run(&["logs", "nope", "--follow"]).await.fails(1, "no app named \"nope\"");

    // When the runtime stops, followers are told and exit 0.
    rt.shutdown().await;
    let status = tokio::time::timeout(Duration::from_secs(20), follower.wait())
        .await
        .expect("the follower exits")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(follower.stderr.as_mut().unwrap(), &mut stderr).await.unwrap();
    assert!(stderr.contains("log stream ended: the runtime is shutting down"), "{stderr}");
    let _ = json_follower.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_an_unreachable_runtime_exits_3() {
    // Nothing listens on port 1.
    let cli = Cli::new("127.0.0.1:1");
    for args in [
        &["app", "list"][..],
        &["app", "show", "hello"],
        &["app", "deploy", "."],
        &["app", "remove", "hello"],
        &["app", "scale", "hello", "--max", "2"],
        &["app", "drain", "hello"],
        &["workers"],
        &["pools"],
        &["invoke", "hello", "hello"],
        &["logs", "hello"],
        &["logs", "hello", "--follow"],
    ] {
        cli.run(args).await.fails(3, "cannot reach the runtime at http://127.0.0.1:1");
    }
    for args in [
        &["app"][..],
        &["app", "deploy"],
        &["app", "scale", "hello", "--max", "many"],
        &["invoke", "hello"],
        &["no-such-command"],
    ] {
        let out = cli.run(args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    Cli::new("not a url").run(&["pools"]).await.fails(2, "invalid --admin URL");
    assert_eq!(Cli::new("127.0.0.1:1").run(&["--help"]).await.code, 0);
}
