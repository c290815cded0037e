//! Shared support for Switchboard's end-to-end tests: start a runtime on loopback with free
//! ports, talk HTTP to its front door and admin API, find worker processes, wait for
//! conditions with a bound (never a blind sleep).

pub mod grpc;
pub mod proxy;
pub mod tls;
pub mod worker_process;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use switchboard_shell::Started;
use switchboard_shell::config::{Config, Pool};

/// The repository's `examples/` folder.
pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A config for tests: every listener on a free loopback port, a known admin token, a fresh
/// state folder, and a python pool with `min_idle` warm workers.
pub fn test_config(min_idle: u32, max: u32) -> Config {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config::default();
    config.listen.front_door = any;
    config.listen.admin = any;
    config.listen.workers = any;
    config.admin.token = Some("test-token".into());
    config.state_dir = std::env::temp_dir().join(format!("switchboard-test-{}", std::process::id()));
    config.pools = vec![Pool { min_idle, max, ..Pool::default_python() }];
    config.timeouts.shutdown = Duration::from_secs(10);
    config
}

/// Sends the runtime's log to the test's captured output (shown when a test fails): warnings
/// by default, which include every eviction and its reason; `RUST_LOG` overrides.
pub fn capture_runtime_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// A runtime under test.
#[derive(Debug)]
pub struct TestRuntime {
    /// The running runtime.
    pub started: Started,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers (lower-case names; repeated values joined with ", ").
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Which shell runs the runtime under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `switchboard-tokio`, on the test's own tokio runtime.
    Tokio,
    /// `switchboard-smol`, on smol executor threads of its own (the test's tokio runtime only
    /// runs the HTTP client).
    Smol,
}

/// The smol executor shared by the tests of this process.
fn smol() -> switchboard_smol::Smol {
    static SMOL: std::sync::OnceLock<switchboard_smol::Smol> = std::sync::OnceLock::new();
    SMOL.get_or_init(|| switchboard_smol::Smol::new(2)).clone()
}

impl TestRuntime {
    /// Starts a runtime on the current tokio runtime.
    pub async fn start(config: Config, apps: &[PathBuf]) -> TestRuntime {
        TestRuntime::start_on(Shell::Tokio, config, apps).await
    }

    /// Starts a runtime on the given shell.
    pub async fn start_on(shell: Shell, config: Config, apps: &[PathBuf]) -> TestRuntime {
        capture_runtime_logs();
        let started = match shell {
            Shell::Tokio => switchboard_tokio::start(config, apps).await.expect("runtime starts"),
            Shell::Smol => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let apps = apps.to_vec();
                std::thread::spawn(move || {
                    let rt = smol();
                    let _ = tx.send(rt.block_on(switchboard_smol::start(rt.clone(), config, &apps)));
                });
                rx.await.expect("the smol thread answers").expect("runtime starts")
            }
        };
        TestRuntime { started, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// `http://front-door/<app>/api/<route>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.started.front_door, path.trim_start_matches('/'))
    }

    /// Sends a request to the front door.
    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(Full::new(Bytes::copy_from_slice(body))).unwrap()).await
    }

    /// `GET` on the front door.
    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, &[], b"").await
    }

    /// Calls the admin API with the test token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let uri = format!("http://{}/{}", self.started.admin, path.trim_start_matches('/'));
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer test-token")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(req).await
    }

    /// The workers the admin API lists.
    pub async fn workers(&self) -> Vec<Value> {
        let resp = self.admin(Method::GET, "/v1/workers", None).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json().as_array().cloned().unwrap_or_default()
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        let resp = self.client.request(req).await.expect("request reaches the runtime");
        let status = resp.status();
        let mut headers = BTreeMap::new();
        for (k, v) in resp.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            headers
                .entry(k.as_str().to_owned())
                .and_modify(|e: &mut String| e.push_str(&format!(", {v}")))
                .or_insert(v);
        }
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp { status, headers, body }
    }

    /// Graceful shutdown.
    pub async fn shutdown(self) {
        self.started.shutdown().await;
    }
}

/// A one-off `GET` (with an optional bearer token), for runtimes started as processes.
pub async fn http_get(url: &str, token: Option<&str>) -> Resp {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().uri(url);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = client.request(req.body(Full::new(Bytes::new())).unwrap()).await.expect("request");
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp { status, headers, body }
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `bound`.
pub async fn wait_for<T, F, Fut>(bound: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {bound:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids of processes whose command line contains `needle` (a worker id, say).
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|arg| arg == needle.as_bytes()) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The start of a `switchboard serve` config for tests and benchmarks: state in
/// `state_dir`, every listener on a free loopback port, and `admin_token`. Append pools, apps
/// and the rest.
pub fn loopback_config(state_dir: &std::path::Path, admin_token: &str) -> String {
    format!(
        "state_dir = \"{}\"\n[listen]\nfront_door = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         workers = \"127.0.0.1:0\"\n[admin]\ntoken = \"{admin_token}\"\n",
        state_dir.display()
    )
}

/// Sends a signal to a process.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// `switchboard serve` running as its own process (for RSS, crash and signal tests).
#[derive(Debug)]
pub struct ServeProcess {
    /// The process.
    pub child: tokio::process::Child,
    /// `http://front-door`.
    pub front_door: String,
    /// `http://admin`.
    pub admin: String,
    /// `http://workers` (the gRPC worker endpoint).
    pub workers: String,
    /// The admin token.
    pub token: String,
    /// Where its stderr goes.
    pub stderr: std::path::PathBuf,
}

impl ServeProcess {
    /// Starts `binary serve --config <file>` with `config` (TOML) and waits for its address line
    /// (up to two minutes: the first run on a machine installs the Python worker).
    pub async fn start(
        binary: &std::path::Path,
        dir: &std::path::Path,
        config: &str,
        token: &str,
    ) -> ServeProcess {
        ServeProcess::launch(binary, dir, config, &["serve"], &[], token).await
    }

    /// Starts `binary ARGS --config <file>` (ARGS ending in `serve` and its flags) with
    /// `config` and `env`, its stderr in `dir/stderr.log`; waits for its address line.
    pub async fn launch(
        binary: &std::path::Path,
        dir: &std::path::Path,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        token: &str,
    ) -> ServeProcess {
        use tokio::io::AsyncBufReadExt;
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join("switchboard.toml");
        std::fs::write(&config_path, config).unwrap();
        let stderr = dir.join("stderr.log");
        let mut child = tokio::process::Command::new(binary)
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("start switchboard");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the address line within 2 minutes (first run installs the Python worker)")
            .unwrap()
            .expect("a line on stdout");
        // "switchboard: front door http://A admin http://B workers C"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[..3], ["switchboard:", "front", "door"], "{line}");
        ServeProcess {
            child,
            front_door: words[3].to_owned(),
            admin: words[5].to_owned(),
            workers: format!("http://{}", words[7]),
            token: token.to_owned(),
            stderr,
        }
    }

    /// SIGTERM; the exit status and everything it wrote on stderr.
    pub async fn stop(mut self) -> (std::process::ExitStatus, String) {
        kill(self.child.id().expect("running"), libc::SIGTERM);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s")
            .expect("wait");
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status, stderr)
    }

    /// GET on the admin API.
    pub async fn admin_get(&self, path: &str) -> Resp {
        http_get(&format!("{}{path}", self.admin), Some(&self.token)).await
    }

    /// A request to the admin API with a JSON body.
    pub async fn admin_send(&self, method: Method, path: &str, body: Value) -> Resp {
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = client.request(req).await.expect("admin request");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp { status, headers: BTreeMap::new(), body }
    }

    /// Resident memory of the runtime process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Waits until the admin API lists at least `n` workers in `state`.
    pub async fn wait_workers(&self, state: &str, n: usize, bound: Duration) -> Vec<Value> {
        wait_for(bound, &format!("{n} workers {state}"), || async {
            let workers = self.admin_get("/v1/workers").await.json().as_array().cloned().unwrap_or_default();
            (workers.iter().filter(|w| w["state"] == state).count() >= n).then_some(workers)
        })
        .await
    }
}

/// Runs each scenario (an `async fn(Shell)` in the calling module) on both shells, as
/// `tokio_shell::NAME` and `smol_shell::NAME`: the suites are the conformance tests of a shell.
#[macro_export]
macro_rules! on_both_shells {
    ($($name:ident),* $(,)?) => {
        mod tokio_shell {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Shell::Tokio).await
                }
            )*
        }
        mod smol_shell {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Shell::Smol).await
                }
            )*
        }
    };
}
