//! Support for the `switchboard-worker` end-to-end tests: the binary under test, and the
//! shared helpers of `switchboard_tests::worker_process`.

#![allow(dead_code, unused_imports)]

use std::path::Path;

use switchboard_tests::TestRuntime;
pub use switchboard_tests::worker_process::{custom_config as config, deploy, wait_state, worker};

/// The binary under test.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchboard-worker"))
}

/// Starts worker `id` of the runtime at `runtime`.
pub fn start(runtime: &str, id: &str, extra: &[&str]) -> switchboard_tests::worker_process::WorkerProcess {
    switchboard_tests::worker_process::WorkerProcess::start(binary(), runtime, id, extra)
}

/// A runtime with the custom pool, on the current tokio runtime.
pub async fn runtime(name: &str) -> TestRuntime {
    TestRuntime::start(config(name), &[]).await
}

/// `http://workers-endpoint`.
pub fn workers_url(rt: &TestRuntime) -> String {
    format!("http://{}", rt.started.workers)
}
