//! The app's custom handler process: started on specialization from host.json
//! `customHandler.description` with `FUNCTIONS_CUSTOMHANDLER_PORT` set to a free port, ready
//! once that port accepts connections, restarted with backoff when it dies, stopped (SIGTERM
//! to its process group, then SIGKILL) on reset and exit. Like the local provisioner's workers
//! it runs in its own process group with a parent-death signal, so a worker that dies leaves no
//! handler behind.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_core::app::{CustomHandler, parse_host_json};
use switchboard_shell::provision::{die_with_parent, signal_group};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::watch;

/// How to start an app's handler.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// The program (resolved against the app folder when it names a file there).
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) cwd: PathBuf,
    /// The whole environment (the runtime sends the pool's plus the app's settings).
    pub(super) env: BTreeMap<String, String>,
    /// Longest wait for the port to accept connections.
    pub(super) start_timeout: Duration,
    /// SIGTERM → SIGKILL.
    pub(super) kill_grace: Duration,
}

/// What an app folder says about its handler and HTTP routes.
#[derive(Debug, Clone)]
pub(super) struct AppConfig {
    pub(super) handler: CustomHandler,
    /// `extensions.http.routePrefix` (default `api`).
    pub(super) route_prefix: String,
}

/// Reads host.json from the app folder.
pub(super) fn read_app(app_dir: &Path) -> Result<AppConfig, String> {
    let path = app_dir.join("host.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let host = parse_host_json(&text).map_err(|e| e.to_string())?;
    let handler = host.custom_handler.ok_or_else(|| {
        format!("{}: no \"customHandler\" section: this worker runs custom-handler apps", path.display())
    })?;
    Ok(AppConfig { handler, route_prefix: host.route_prefix })
}

impl Spec {
    /// `defaultExecutablePath` is taken relative to the app folder when a file of that name is
    /// there, else as a command on the handler's `PATH` (`python3`, `node`); the working
    /// directory is `workingDirectory` relative to the app folder (default: the app folder).
    pub(super) fn new(
        app_dir: &Path,
        handler: &CustomHandler,
        env: BTreeMap<String, String>,
        start_timeout: Duration,
        kill_grace: Duration,
    ) -> Spec {
        let exe = Path::new(&handler.default_executable_path);
        let program = if exe.is_absolute() || !app_dir.join(exe).is_file() {
            exe.to_path_buf()
        } else {
            app_dir.join(exe)
        };
        let cwd = match handler.working_directory.as_str() {
            "" => app_dir.to_path_buf(),
            dir => app_dir.join(dir),
        };
        Spec { program, args: handler.arguments.clone(), cwd, env, start_timeout, kill_grace }
    }
}

/// Where the handler stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Starting (first time or after a crash); `last_exit` says how the last one ended.
    Starting { last_exit: Option<String> },
    /// Listening on `port`; `run` counts starts, so a caller can tell that the process it
    /// talked to has been replaced.
    Ready { port: u16, run: u64 },
    /// Could not be started the first time, or stopped.
    Down(String),
}

/// A running handler, shared by the invocations that use it.
#[derive(Debug)]
pub(super) struct Handler {
    state: watch::Receiver<State>,
    stop: watch::Sender<bool>,
}

/// A ready handler: its port and which run of the process it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ready {
    pub(super) port: u16,
    pub(super) run: u64,
}

impl Handler {
    /// Starts the handler and waits until it listens; `Err` if the first start fails.
    pub(super) async fn start(spec: Spec, label: String) -> Result<Arc<Handler>, String> {
        let (state_tx, mut state) = watch::channel(State::Starting { last_exit: None });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(supervise(spec, label, state_tx, stop_rx));
        let handler = Arc::new(Handler { state: state.clone(), stop });
        let first = state
            .wait_for(|s| !matches!(s, State::Starting { .. }))
            .await
            .map(|s| s.clone())
            .unwrap_or_else(|_| State::Down("the handler supervisor ended".into()));
        match first {
            State::Ready { .. } => Ok(handler),
            State::Down(why) => Err(why),
            State::Starting { .. } => unreachable!("waited for another state"),
        }
    }

    /// Waits (up to `bound`) until the handler listens: at once unless it is restarting.
    pub(super) async fn ready(&self, bound: Duration) -> Result<Ready, String> {
        let mut state = self.state.clone();
        let wait = state.wait_for(|s| !matches!(s, State::Starting { .. }));
        let last = match tokio::time::timeout(bound, wait).await {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => State::Down("the handler is stopped".into()),
            Err(_) => {
                let why = match &*self.state.borrow() {
                    State::Starting { last_exit: Some(exit) } => {
                        format!("it exited ({exit}) and is restarting")
                    }
                    _ => "it is starting".to_owned(),
                };
                return Err(format!("the custom handler did not become ready within {bound:?}: {why}"));
            }
        };
        match last {
            State::Ready { port, run } => Ok(Ready { port, run }),
            State::Down(why) => Err(format!("the custom handler is not running: {why}")),
            State::Starting { .. } => unreachable!("waited for another state"),
        }
    }

    /// If the run a caller talked to has ended: how it ended.
    pub(super) fn ended(&self, run: u64) -> Option<String> {
        match &*self.state.borrow() {
            State::Ready { run: now, .. } if *now == run => None,
            State::Ready { .. } => Some("it exited and was restarted".into()),
            State::Starting { last_exit } => Some(last_exit.clone().unwrap_or_else(|| "it exited".into())),
            State::Down(why) => Some(why.clone()),
        }
    }

    /// Like [`Handler::ended`], giving the supervisor up to `within` to notice an exit (a
    /// broken connection is often seen before the process is reaped).
    pub(super) async fn ended_soon(&self, run: u64, within: Duration) -> Option<String> {
        let mut state = self.state.clone();
        let changed = state.wait_for(|s| !matches!(s, State::Ready { run: r, .. } if *r == run));
        let _ = tokio::time::timeout(within, changed).await;
        self.ended(run)
    }

    /// Stops the handler; resolves once its process is gone.
    pub(super) async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| matches!(s, State::Down(_))).await;
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        // The last user is gone: the supervisor stops the process.
        let _ = self.stop.send(true);
    }
}

/// Restart delays: 100 ms doubling to 5 s; a run that lasted a minute resets them.
fn restart_delay(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.min(6));
    Duration::from_millis(ms.min(5_000))
}

/// Runs the handler until stopped: start, wait until it listens, watch it, restart it.
async fn supervise(spec: Spec, label: String, state: watch::Sender<State>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    let mut runs = 0u64;
    let mut last_exit: Option<String> = None;
    loop {
        if runs > 0 || failures > 0 {
            let delay = restart_delay(failures.saturating_sub(1));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        let _ = state.send(State::Starting { last_exit: last_exit.clone() });
        let port = match free_port() {
            Ok(port) => port,
            Err(e) => {
                last_exit = Some(format!("no free port: {e}"));
                failures += 1;
                continue;
            }
        };
        let mut child = match spawn(&spec, port, &label) {
            Ok(child) => child,
            Err(e) => {
                let why = format!("cannot start {}: {e}", spec.program.display());
                if runs == 0 {
                    let _ = state.send(State::Down(why));
                    return;
                }
                tracing::warn!(handler = %label, "{why}");
                last_exit = Some(why);
                failures += 1;
                continue;
            }
        };
        let pid = child.id().unwrap_or_default();
        let started = Instant::now();
        match wait_listening(&mut child, port, spec.start_timeout, &mut stop).await {
            Listening::Yes => {}
            Listening::Stopped => {
                terminate(&mut child, pid, spec.kill_grace).await;
                break;
            }
            Listening::No(why) => {
                terminate(&mut child, pid, spec.kill_grace).await;
                let why = format!("{} {}", spec.program.display(), why);
                if runs == 0 {
                    let _ = state.send(State::Down(why));
                    return;
                }
                tracing::warn!(handler = %label, "custom handler restart failed: {why}");
                last_exit = Some(why);
                failures += 1;
                continue;
            }
        }
        runs += 1;
        tracing::info!(handler = %label, pid, port, run = runs, took_ms = started.elapsed().as_millis() as u64, "custom handler listening");
        let _ = state.send(State::Ready { port, run: runs });
        tokio::select! {
            status = child.wait() => {
                let exit = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
                // Its own children may linger in its process group.
                signal_group(pid, libc::SIGKILL);
                tracing::warn!(handler = %label, pid, %exit, "custom handler exited; restarting");
                failures = if started.elapsed() > Duration::from_secs(60) { 1 } else { failures + 1 };
                last_exit = Some(exit);
            }
            _ = stopped(&mut stop) => {
                terminate(&mut child, pid, spec.kill_grace).await;
                break;
            }
        }
    }
    let _ = state.send(State::Down("stopped".into()));
}

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

enum Listening {
    Yes,
    No(String),
    Stopped,
}

/// Polls the port until it accepts a connection, the process exits, or the bound passes.
async fn wait_listening(
    child: &mut Child,
    port: u16,
    bound: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Listening {
    let deadline = Instant::now() + bound;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Listening::Yes;
        }
        if Instant::now() >= deadline {
            return Listening::No(format!("did not listen on port {port} within {bound:?}"));
        }
        tokio::select! {
            status = child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                return Listening::No(format!("exited before listening on port {port} ({status})"));
            }
            _ = stopped(stop) => return Listening::Stopped,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

/// SIGTERM to the process group, SIGKILL after the grace.
async fn terminate(child: &mut Child, pid: u32, grace: Duration) {
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever it started in its group goes with it.
    signal_group(pid, libc::SIGKILL);
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn spawn(spec: &Spec, port: u16, label: &str) -> std::io::Result<Child> {
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut cmd);
    let mut child = tokio::process::Command::from(cmd).kill_on_drop(false).spawn()?;
    if let Some(out) = child.stdout.take() {
        forward_lines(out, false, label.to_owned());
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, true, label.to_owned());
    }
    Ok(child)
}

/// The handler's output, line by line, into the worker's log.
fn forward_lines<R>(reader: R, stderr: bool, label: String)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if stderr {
                tracing::warn!(target: "handler.stderr", handler = %label, "{line}");
            } else {
                tracing::info!(target: "handler.stdout", handler = %label, "{line}");
            }
        }
    });
}
