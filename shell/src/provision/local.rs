//! The local provisioner: worker processes on this machine, started with the host-style
//! arguments, each in its own process group with a parent-death signal (no orphans even if the
//! runtime crashes), stopped with SIGTERM then SIGKILL.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use switchboard_core::{Input, PoolKey, ProvisionRequest, WorkerId};
use tokio::sync::watch;

use super::Provisioner;
use crate::driver::{Command, Handle};
use crate::rt::{Child, Runtime};

/// How one pool's workers are started.
#[derive(Debug, Clone)]
pub struct LocalPool {
    /// The pool.
    pub key: PoolKey,
    /// argv before the host-style arguments.
    pub command: Vec<String>,
    /// The process environment (exactly this: the runtime's own environment is not passed on).
    pub env: BTreeMap<String, String>,
    /// Working directory; default: the runtime's.
    pub cwd: Option<PathBuf>,
}

/// Starts worker processes for local pools.
pub struct LocalProvisioner<R: Runtime> {
    rt: R,
    handle: Handle,
    pools: HashMap<PoolKey, LocalPool>,
    host: String,
    port: u16,
    max_message: usize,
    kill_grace: Duration,
    children: HashMap<WorkerId, Running>,
    /// Released children that may not have exited yet: shutdown waits for them too.
    stopping: Vec<Running>,
}

struct Running {
    pid: u32,
    exited: watch::Receiver<bool>,
}

impl<R: Runtime> std::fmt::Debug for LocalProvisioner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvisioner").field("children", &self.children.len()).finish()
    }
}

impl<R: Runtime> LocalProvisioner<R> {
    /// A provisioner whose workers dial `host:port`.
    pub fn new(
        rt: R,
        handle: Handle,
        pools: Vec<LocalPool>,
        host: String,
        port: u16,
        max_message: usize,
        kill_grace: Duration,
    ) -> Self {
        LocalProvisioner {
            rt,
            handle,
            pools: pools.into_iter().map(|p| (p.key.clone(), p)).collect(),
            host,
            port,
            max_message,
            kill_grace,
            children: HashMap::new(),
            stopping: Vec::new(),
        }
    }

    fn command(&self, pool: &LocalPool, request: &ProvisionRequest) -> std::process::Command {
        let mut cmd = std::process::Command::new(&pool.command[0]);
        cmd.args(&pool.command[1..])
            .args(["--host", &self.host])
            .args(["--port", &self.port.to_string()])
            .args(["--workerId", request.worker.as_str()])
            .args(["--requestId", &request.request_id])
            .args(["--grpcMaxMessageLength", &self.max_message.to_string()])
            .env_clear()
            .envs(&pool.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &pool.cwd {
            cmd.current_dir(cwd);
        }
        die_with_parent(&mut cmd);
        cmd
    }

    /// Watches a child: forwards its output to tracing and reports its exit to the driver.
    fn watch(&mut self, worker: WorkerId, pool: &PoolKey, child: Child) {
        let Child { pid, exit, mut output } = child;
        let (exited_tx, exited) = watch::channel(false);
        self.children.insert(worker.clone(), Running { pid, exited });
        let id = worker.to_string();
        let pool = pool.to_string();
        self.rt.spawn(async move {
            while let Some(line) = output.recv().await {
                if line.stderr {
                    tracing::warn!(target: "worker.stderr", worker = %id, %pool, "{}", line.text);
                } else {
                    tracing::info!(target: "worker.stdout", worker = %id, %pool, "{}", line.text);
                }
            }
        });
        let handle = self.handle.clone();
        self.rt.spawn(async move {
            let status = match exit.await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(e)) => format!("wait failed: {e}"),
                Err(_) => "lost track of the process".to_owned(),
            };
            let _ = exited_tx.send(true);
            let _ = handle.send(Command::Input(Input::WorkerExited { worker, status }));
        });
    }
}

impl<R: Runtime> Provisioner for LocalProvisioner<R> {
    fn provision(&mut self, request: ProvisionRequest) {
        let Some(pool) = self.pools.get(&request.pool).cloned() else {
            let error = format!("no local pool {}", request.pool);
            let _ =
                self.handle.send(Command::Input(Input::ProvisionFailed { worker: request.worker, error }));
            return;
        };
        let command = self.command(&pool, &request);
        match self.rt.spawn_process(command) {
            Ok(child) => {
                tracing::debug!(worker = %request.worker, pool = %pool.key, pid = child.pid, "worker process started");
                self.watch(request.worker, &pool.key, child);
            }
            Err(e) => {
                let error = format!("cannot start {:?}: {e}", pool.command[0]);
                tracing::error!(worker = %request.worker, pool = %pool.key, %error, "provision failed");
                let _ = self
                    .handle
                    .send(Command::Input(Input::ProvisionFailed { worker: request.worker, error }));
            }
        }
    }

    fn release(&mut self, worker: &WorkerId, reason: &str) {
        let Some(child) = self.children.remove(worker) else { return };
        tracing::debug!(%worker, pid = child.pid, reason, "stopping worker process");
        self.stopping.retain(|c| !*c.exited.borrow());
        stop(&self.rt, &child, self.kill_grace);
        self.stopping.push(child);
    }

    fn forget(&mut self, worker: &WorkerId) {
        self.children.remove(worker);
    }

    fn pid(&self, worker: &WorkerId) -> Option<u32> {
        self.children.get(worker).map(|c| c.pid)
    }

    fn shutdown(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut children: Vec<Running> = self.children.drain().map(|(_, c)| c).collect();
        for child in &children {
            signal_group(child.pid, libc::SIGTERM);
        }
        children.append(&mut self.stopping);
        let rt = self.rt.clone();
        let grace = self.kill_grace;
        Box::pin(async move {
            let deadline = Instant::now() + grace;
            for mut child in children {
                if !wait_exit(&rt, &mut child.exited, deadline).await {
                    signal_group(child.pid, libc::SIGKILL);
                    let _ = wait_exit(&rt, &mut child.exited, Instant::now() + grace).await;
                }
            }
        })
    }
}

/// SIGTERM now, SIGKILL after the grace if it is still there.
fn stop<R: Runtime>(rt: &R, child: &Running, grace: Duration) {
    signal_group(child.pid, libc::SIGTERM);
    let (rt2, pid, mut exited) = (rt.clone(), child.pid, child.exited.clone());
    rt.spawn(async move {
        if !wait_exit(&rt2, &mut exited, Instant::now() + grace).await {
            signal_group(pid, libc::SIGKILL);
        }
    });
}

/// Waits until the child has exited or the deadline passes; true if it exited.
async fn wait_exit<R: Runtime>(rt: &R, exited: &mut watch::Receiver<bool>, deadline: Instant) -> bool {
    if *exited.borrow() {
        return true;
    }
    let done = {
        let wait = std::pin::pin!(exited.wait_for(|e| *e));
        match futures_util::future::select(wait, rt.sleep_until(deadline)).await {
            futures_util::future::Either::Left((res, _)) => res.is_ok(),
            futures_util::future::Either::Right(_) => false,
        }
    };
    done || *exited.borrow()
}

/// Signals a child's whole process group (its own subprocesses too). The child must have been
/// started with `process_group(0)`.
pub fn signal_group(pid: u32, sig: libc::c_int) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the process
    // group the child leads (it was started with process_group(0)).
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Makes the child receive SIGKILL when the runtime dies, so a crashed runtime leaves no
/// workers behind (the Python worker never exits on its own once its stream is gone).
///
/// The signal follows the *thread* that spawned the child: spawn from a thread that lives as
/// long as the process (an async task on a runtime worker, not a blocking-pool thread).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid), allocating nothing.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the runtime exited while starting the worker"));
            }
            Ok(())
        });
    }
}
