//! The async-runtime-specific part of a shell, behind one small trait (as quinn's `Runtime`).
//!
//! Everything else in this crate is written once against [`Runtime`]; `switchboard-tokio` and
//! `switchboard-smol` each implement it in a few dozen lines.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

/// What a shell needs from an async runtime.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;
    /// An accepted connection, readable and writable by hyper.
    type Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static;

    /// Runs a task in the background.
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>>;

    /// Takes over a bound std listener (already non-blocking).
    fn listener(&self, std: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Accepts one connection, with `TCP_NODELAY` set (small gRPC frames must not wait for
    /// Nagle's algorithm).
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send + 'a;

    /// Starts a process. Its stdout and stderr arrive line by line on [`Child::output`] and its
    /// exit on [`Child::exit`]; the runtime reaps it.
    fn spawn_process(&self, command: std::process::Command) -> io::Result<Child>;
}

/// A started process.
#[derive(Debug)]
pub struct Child {
    /// Its pid (and process group id: children are started in their own group).
    pub pid: u32,
    /// Resolves when it exits.
    pub exit: oneshot::Receiver<io::Result<ExitStatus>>,
    /// Its output, line by line, until both streams close.
    pub output: mpsc::UnboundedReceiver<OutputLine>,
}

/// One line a child wrote.
#[derive(Debug, Clone)]
pub struct OutputLine {
    /// `true` for stderr.
    pub stderr: bool,
    /// The line, without its newline, lossily decoded.
    pub text: String,
}

/// Adapts a [`Runtime`] to hyper's executor trait.
#[derive(Debug, Clone)]
pub struct Exec<R>(pub R);

impl<R: Runtime, F> hyper::rt::Executor<F> for Exec<R>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(async move {
            let _ = fut.await;
        });
    }
}

/// Adapts a [`Runtime`] to hyper's timer trait (for HTTP/2 keepalive and header timeouts).
#[derive(Debug, Clone)]
pub struct Timer<R>(pub R);

impl<R: Runtime> hyper::rt::Timer for Timer<R> {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep_until(deadline)
    }
}
