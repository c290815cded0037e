//! The `switchboard` binary as a process: it prints where it listens, stops its workers on
//! SIGTERM, and leaves no worker behind even when it is killed outright.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use switchboard_tests::{alive, http_get, kill, pids_with_arg, wait_for};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Serving {
    child: tokio::process::Child,
    admin: String,
    front_door: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `switchboard serve` with free ports and the hello example; waits for its address line.
async fn serve(name: &str, shell: &str) -> Serving {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let config = format!(
        r#"state_dir = "{state}"
[listen]
front_door = "127.0.0.1:0"
admin = "127.0.0.1:0"
workers = "127.0.0.1:0"
[admin]
token = "t"
[[pool]]
language = "python"
min_idle = 2
[[app]]
path = "{app}"
"#,
        state = dir.join("state").display(),
        app = examples.join("hello").display()
    );
    let config_path = dir.join("switchboard.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--shell", shell, "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .expect("the address line within 2 minutes (first run installs the Python worker)")
        .unwrap()
        .expect("a line on stdout");
    // "switchboard: front door http://A admin http://B workers C"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..3], ["switchboard:", "front", "door"], "{line}");
    Serving { child, front_door: words[3].to_owned(), admin: words[5].to_owned(), _dir: TempDir(dir) }
}

/// Waits for `n` placeholders and returns the pids of every worker process.
async fn worker_pids(s: &Serving, n: usize) -> Vec<u32> {
    let url = format!("{}/v1/workers", s.admin);
    let workers: Vec<Value> = wait_for(Duration::from_secs(30), "placeholders", || async {
        let workers = http_get(&url, Some("t")).await.json().as_array().cloned().unwrap_or_default();
        (workers.iter().filter(|w| w["state"] == "placeholder").count() >= n).then_some(workers)
    })
    .await;
    let pids: Vec<u32> = workers.iter().flat_map(|w| pids_with_arg(w["id"].as_str().unwrap())).collect();
    assert_eq!(pids.len(), workers.len(), "one process per worker: {workers:?}");
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_stops_every_worker() {
    let mut s = serve("term", "tokio").await;
    let resp = http_get(&format!("{}/hello/api/hello?name=cli", s.front_door), None).await;
    assert_eq!(resp.text(), "Hello, cli!");
    let pids = worker_pids(&s, 2).await;
    kill(s.child.id().unwrap(), libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), s.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "{status}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "workers left after SIGTERM: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runtime_leaves_no_orphans() {
    let mut s = serve("kill", "tokio").await;
    let pids = worker_pids(&s, 2).await;
    kill(s.child.id().unwrap(), libc::SIGKILL);
    let _ = s.child.wait().await;
    wait_for(Duration::from_secs(10), "workers to die with their runtime", || async {
        pids.iter().all(|p| !alive(*p)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smol_shell_serves_and_stops_cleanly_too() {
    let mut s = serve("smol", "smol").await;
    let resp = http_get(&format!("{}/hello/api/hello?name=smol", s.front_door), None).await;
    assert_eq!(resp.text(), "Hello, smol!");
    let pids = worker_pids(&s, 2).await;
    kill(s.child.id().unwrap(), libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), s.child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "{status}");
    assert!(pids.into_iter().all(|p| !alive(p)), "workers left after SIGTERM");
}
