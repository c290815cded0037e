//! Switchboard on tokio: [`Tokio`] implements the shell's [`Runtime`] trait; [`serve`] runs a
//! configured runtime until SIGINT or SIGTERM, then shuts it down gracefully; [`kubernetes`]
//! provisions workers as pods (kube-rs needs tokio, so it lives here).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Instant;

use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_shell::rt::{Child, OutputLine, Runtime};
use switchboard_shell::{Config, StartError, Started};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

pub mod kubernetes;
pub mod worker;

/// The tokio runtime, for the shell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Listener = tokio::net::TcpListener;
    type Io = TokioIo<tokio::net::TcpStream>;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(fut);
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        hyper::rt::Timer::sleep_until(&TokioTimer::new(), deadline)
    }

    fn listener(&self, std: std::net::TcpListener) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::from_std(std)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TokioIo::new(stream), peer))
    }

    fn spawn_process(&self, command: std::process::Command) -> io::Result<Child> {
        let mut child = tokio::process::Command::from(command).kill_on_drop(false).spawn()?;
        let pid = child.id().unwrap_or_default();
        let (lines, output) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            forward_lines(out, false, lines.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, true, lines);
        }
        let (exit_tx, exit) = oneshot::channel();
        tokio::spawn(async move {
            let _ = exit_tx.send(child.wait().await);
        });
        Ok(Child { pid, exit, output })
    }
}

fn forward_lines<R>(reader: R, stderr: bool, tx: mpsc::UnboundedSender<OutputLine>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    if tx.send(OutputLine { stderr, text }).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Starts a runtime on the current tokio runtime, with every provisioner: `local`,
/// `external` and `kubernetes`.
pub async fn start(config: Config, apps: &[PathBuf]) -> Result<Started, StartError> {
    switchboard_shell::start_with(Tokio, config, apps, vec![Box::new(kubernetes::Factory)]).await
}

/// Runs a runtime until SIGINT or SIGTERM, then shuts it down gracefully. `on_start` sees the
/// bound addresses (to print them).
pub async fn serve(
    config: Config,
    apps: &[PathBuf],
    on_start: impl FnOnce(&Started),
) -> Result<(), StartError> {
    let started = start(config, apps).await?;
    on_start(&started);
    wait_for_signal().await;
    tracing::info!("signal received: shutting down");
    started.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
