//! Connection-mode workers as processes (`switchboard-worker`), for end-to-end tests and
//! benchmarks: a runtime config with an external `custom` pool they join, a handle on each
//! process (signals, exit, log lines), and the admin API's view of them.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchboard_shell::config::{Config, Pool, ProvisionerKind};
use tokio::io::AsyncBufReadExt;

use crate::{TestRuntime, kill, test_config, wait_for};

/// The `custom` pool's join token in [`custom_config`].
pub const JOIN_TOKEN: &str = "join-secret";

/// A test config with one external `custom` pool (workers join with [`JOIN_TOKEN`], up to
/// eight) and no Python pool; `name` keeps its state folder apart from other tests'.
pub fn custom_config(name: &str) -> Config {
    let mut config = test_config(0, 1);
    config.pools = vec![Pool {
        language: "custom".into(),
        min_idle: 0,
        max: 8,
        provisioner: ProvisionerKind::External,
        join_token: Some(JOIN_TOKEN.into()),
        ..Pool::default()
    }];
    config.state_dir =
        std::env::temp_dir().join(format!("switchboard-worker-test-{}-{name}", std::process::id()));
    config
}

/// A `switchboard-worker` process (killed when dropped).
#[derive(Debug)]
pub struct WorkerProcess {
    /// The process.
    pub child: tokio::process::Child,
    /// Its worker id.
    pub id: String,
    /// Its log lines (stderr), as they came.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    /// Starts `binary` as worker `id` of the runtime at `runtime` (`http://HOST:PORT`), joining
    /// with [`JOIN_TOKEN`], taking 32 calls at once, plus `extra` flags. `WORKER_LOG=1` in the
    /// environment echoes its log to stderr.
    pub fn start(binary: &Path, runtime: &str, id: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::start_with(binary, &[], runtime, id, extra)
    }

    /// [`WorkerProcess::start`] with `leading` arguments first (`switchboard worker ...`).
    pub fn start_with(
        binary: &Path,
        leading: &[&str],
        runtime: &str,
        id: &str,
        extra: &[&str],
    ) -> WorkerProcess {
        let mut child = tokio::process::Command::new(binary)
            .args(leading)
            .args([
                "--runtime",
                runtime,
                "--join-token",
                JOIN_TOKEN,
                "--worker-id",
                id,
                "--concurrency",
                "32",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start switchboard-worker");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        let (sink, tag) = (Arc::clone(&log), id.to_owned());
        let echo = std::env::var_os("WORKER_LOG").is_some();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("[{tag}] {line}");
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        WorkerProcess { child, id: id.to_owned(), log }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGSTOP: the process freezes (its handler, in its own process group, does not).
    pub fn freeze(&self) {
        kill(self.pid(), libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        kill(self.pid(), libc::SIGCONT);
    }

    /// SIGTERM: drain and exit.
    pub fn terminate(&self) {
        kill(self.pid(), libc::SIGTERM);
    }

    /// Waits for it to exit.
    pub async fn exit(&mut self, bound: Duration) -> ExitStatus {
        tokio::time::timeout(bound, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("worker {} did not exit within {bound:?}", self.id))
            .expect("wait")
    }

    /// Its log lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log.lock().expect("log lock").iter().filter(|l| l.contains(needle)).cloned().collect()
    }
}

/// The admin API's view of worker `id`, if it lists it.
pub async fn worker(rt: &TestRuntime, id: &str) -> Option<Value> {
    rt.workers().await.into_iter().find(|w| w["id"] == id)
}

/// Waits until worker `id` is listed in `state`.
pub async fn wait_state(rt: &TestRuntime, id: &str, state: &str, bound: Duration) -> Value {
    wait_for(bound, &format!("worker {id} {state}"), || async {
        worker(rt, id).await.filter(|w| w["state"] == state)
    })
    .await
}

/// Deploys an app folder from `examples/` with this scale.
pub async fn deploy(rt: &TestRuntime, example: &str, min_workers: u32, max_workers: u32) {
    let body = serde_json::json!({
        "path": crate::examples().join(example),
        "scale": {"min_workers": min_workers, "max_workers": max_workers},
    });
    let r = rt.admin(http::Method::POST, "/v1/apps", Some(body)).await;
    assert_eq!(r.status, 201, "deploy {example}: {}", r.text());
}
