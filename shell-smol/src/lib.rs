//! Switchboard on smol: [`Smol`] implements the shell's [`Runtime`] trait on an
//! `async-executor` run by a few threads of its own, with `async-io` timers and sockets and
//! `async-process` children. No tokio runtime is started (tokio's runtime-agnostic channels are
//! used by the shared shell, nothing else).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_executor::Executor;
use async_io::Async;
use futures_lite::{AsyncBufReadExt, StreamExt, io::BufReader};
use smol_hyper::rt::{FuturesIo, SmolTimer};
use switchboard_shell::rt::{Child, OutputLine, Runtime};
use switchboard_shell::{Config, StartError, Started};
use tokio_sync::{mpsc, oneshot};

/// The channels the shell expects, from tokio's runtime-agnostic `sync` module.
mod tokio_sync {
    pub use switchboard_shell::sync::{mpsc, oneshot};
}

/// The smol runtime for the shell: an executor shared by `threads` OS threads.
#[derive(Clone)]
pub struct Smol {
    ex: Arc<Executor<'static>>,
}

impl std::fmt::Debug for Smol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Smol")
    }
}

impl Smol {
    /// An executor run by `threads` threads (they live as long as the process).
    pub fn new(threads: usize) -> Smol {
        let ex = Arc::new(Executor::new());
        for i in 0..threads.max(1) {
            let ex = Arc::clone(&ex);
            std::thread::Builder::new()
                .name(format!("smol-{i}"))
                .spawn(move || async_io::block_on(ex.run(futures_lite::future::pending::<()>())))
                .expect("spawn an executor thread");
        }
        Smol { ex }
    }

    /// Runs a future to completion on this thread while the executor threads serve tasks.
    pub fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        async_io::block_on(self.ex.run(fut))
    }
}

impl Runtime for Smol {
    type Listener = Async<TcpListener>;
    type Io = FuturesIo<Async<TcpStream>>;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.ex.spawn(fut).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        hyper::rt::Timer::sleep_until(&SmolTimer::new(), deadline)
    }

    fn listener(&self, std: TcpListener) -> io::Result<Self::Listener> {
        Async::new(std)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.get_ref().set_nodelay(true)?;
        Ok((FuturesIo::new(stream), peer))
    }

    fn spawn_process(&self, command: std::process::Command) -> io::Result<Child> {
        // async-process resets stdio it was not told about to "inherit": say it again.
        let mut command = async_process::Command::from(command);
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = spawn_on_spawner(command)?;
        let pid = child.id();
        let (lines, output) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            self.spawn(forward_lines(out, false, lines.clone()));
        }
        if let Some(err) = child.stderr.take() {
            self.spawn(forward_lines(err, true, lines));
        }
        let (exit_tx, exit) = oneshot::channel();
        self.spawn(async move {
            let _ = exit_tx.send(child.status().await);
        });
        Ok(Child { pid, exit, output })
    }
}

/// A spawn handed to the spawner thread, and where its result goes.
type SpawnJob = (async_process::Command, std::sync::mpsc::SyncSender<io::Result<async_process::Child>>);

/// Forks on one thread that lives as long as the process. A worker's parent-death signal
/// follows the *thread* that forked it, and every thread in [`Smol::block_on`] runs this
/// executor's tasks, short-lived ones included (an embedder's, a test's): a child forked there
/// would be killed when that thread ends.
fn spawn_on_spawner(command: async_process::Command) -> io::Result<async_process::Child> {
    static SPAWNER: OnceLock<std::sync::mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("smol-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the process-spawner thread");
        tx
    });
    let gone = || io::Error::other("the process-spawner thread is gone");
    let (reply, result) = std::sync::mpsc::sync_channel(1);
    spawner.send((command, reply)).map_err(|_| gone())?;
    result.recv().map_err(|_| gone())?
}

async fn forward_lines<R>(reader: R, stderr: bool, tx: mpsc::UnboundedSender<OutputLine>)
where
    R: futures_lite::AsyncRead + Unpin,
{
    let mut lines = BufReader::new(reader).split(b'\n');
    while let Some(Ok(line)) = lines.next().await {
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if tx.send(OutputLine { stderr, text }).is_err() {
            break;
        }
    }
}

/// Starts a runtime on `rt`.
pub async fn start(rt: Smol, config: Config, apps: &[PathBuf]) -> Result<Started, StartError> {
    switchboard_shell::start(rt, config, apps).await
}

/// Runs a runtime on smol until SIGINT or SIGTERM, then shuts it down gracefully. `on_start`
/// sees the bound addresses.
pub fn serve(config: Config, apps: &[PathBuf], on_start: impl FnOnce(&Started)) -> Result<(), StartError> {
    // The thread in `block_on` runs the executor's tasks too: with it, one task thread per core.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = Smol::new(cores.saturating_sub(1).max(1));
    rt.clone().block_on(async move {
        let mut signals = async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(|e| StartError::Signals(e.to_string()))?;
        let started = start(rt, config, apps).await?;
        on_start(&started);
        let _ = signals.next().await;
        tracing::info!("signal received: shutting down");
        started.shutdown().await;
        Ok(())
    })
}
