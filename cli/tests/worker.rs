//! `switchboard worker` is the connection-mode worker: it joins a runtime's `custom` pool,
//! serves a custom-handler app, and drains to exit 0 on SIGTERM.

use std::path::Path;
use std::time::Duration;

use switchboard_tests::TestRuntime;
use switchboard_tests::worker_process::{WorkerProcess, custom_config, deploy, wait_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_worker_serves_a_custom_handler_app_and_drains_on_sigterm() {
    let rt = TestRuntime::start(custom_config("cli-worker"), &[]).await;
    let url = format!("http://{}", rt.started.workers);
    let binary = Path::new(env!("CARGO_BIN_EXE_switchboard"));
    let mut worker = WorkerProcess::start_with(binary, &["worker"], &url, "w-cli", &[]);
    wait_state(&rt, "w-cli", "placeholder", Duration::from_secs(20)).await;
    deploy(&rt, "custom-echo", 1, 1).await;
    wait_state(&rt, "w-cli", "ready", Duration::from_secs(20)).await;

    let r = rt.get("custom-echo/api/hello?name=Ada").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "Hello, Ada!".to_owned()));

    worker.terminate();
    let status = worker.exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "a drained worker exits 0");
    rt.shutdown().await;
}
