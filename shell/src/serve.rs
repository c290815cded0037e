//! Accept loops: each accepted connection is served by hyper on the shell's runtime. The worker
//! endpoint speaks HTTP/2 only (gRPC, with keepalive pings); the front door and admin API speak
//! HTTP/1.1 and HTTP/2.
//!
//! Every listener applies a [`ConnPolicy`] before hyper sees a byte: at most so many open
//! connections per address (closed as soon as accepted beyond that), an optional TLS handshake
//! (rustls, written once for both shells: the runtime's IO is adapted to tokio's IO traits
//! with `TokioIo`, which needs no tokio runtime), and a deadline from accept to the first
//! request, so connections that never speak (or never finish their handshake) are closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tonic::codegen::Service;

use crate::grpc::PeerAddr;
use crate::metrics::ConnRefusals;
use crate::rt::{Exec, Runtime, Timer};
use crate::tls::TlsAcceptor;

/// Fires when listeners must stop accepting.
pub type Stop = watch::Receiver<bool>;

/// Waits for the stop signal.
pub async fn stopped(mut stop: Stop) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What a listener enforces on each connection before serving it.
#[derive(Clone)]
pub struct ConnPolicy {
    /// The listener's name, for logs and metrics (`front_door`, `admin`, `workers`, ...).
    pub listener: &'static str,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// From accept to the first request (TLS handshake included).
    pub first_request: Duration,
    /// Open connections per address (IPv4 address, IPv6 /64); 0: no limit.
    pub max_per_address: usize,
    /// Where refused connections are counted.
    pub refused: ConnRefusals,
}

impl std::fmt::Debug for ConnPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPolicy")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("first_request", &self.first_request)
            .field("max_per_address", &self.max_per_address)
            .finish()
    }
}

impl ConnPolicy {
    /// Plaintext, no per-address limit, `first_request` deadline of 10 s.
    pub fn plain(listener: &'static str) -> Self {
        ConnPolicy {
            listener,
            tls: None,
            first_request: Duration::from_secs(10),
            max_per_address: 0,
            refused: ConnRefusals::default(),
        }
    }
}

/// Open connections per address, shared by a listener's connection tasks.
#[derive(Debug, Default, Clone)]
struct Open(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted when dropped (the connection's task ends).
struct Slot {
    open: Open,
    address: IpAddr,
}

impl Open {
    fn take(&self, address: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.0.lock().expect("the lock is never poisoned: no panics while held");
        let n = open.entry(address).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { open: self.clone(), address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.0.lock().expect("the lock is never poisoned: no panics while held");
        if let Some(n) = open.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// The address a peer is counted under: its IPv4 address, or its IPv6 /64 (as the core's
/// admission limit does).
fn address_of(peer: SocketAddr) -> IpAddr {
    match peer.ip().to_canonical() {
        IpAddr::V4(ip) => IpAddr::V4(ip),
        IpAddr::V6(ip) => {
            let s = ip.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// A connection as hyper sees it: as accepted, or inside TLS.
pub enum MaybeTls<I> {
    /// Plaintext.
    Plain(I),
    /// TLS, through tokio's IO traits and back.
    Tls(Box<TokioIo<tokio_rustls::server::TlsStream<TokioIo<I>>>>),
}

impl<I> std::fmt::Debug for MaybeTls<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaybeTls::Plain(_) => "Plain",
            MaybeTls::Tls(_) => "Tls",
        })
    }
}

impl<I: Read + Write + Unpin> Read for MaybeTls<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_read(cx, buf),
            MaybeTls::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<I: Read + Write + Unpin> Write for MaybeTls<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write(cx, buf),
            MaybeTls::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_flush(cx),
            MaybeTls::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_shutdown(cx),
            MaybeTls::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// Set once a connection's first request arrives (its deadline no longer applies).
#[derive(Debug, Clone, Default)]
struct Served(Arc<AtomicBool>);

impl Served {
    fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Accepts connections until `stop`; each one within the policy is handed to `serve` (with the
/// flag its service must set on its first request) on a task of its own.
async fn accept_loop<R, F, Fut>(rt: R, listener: R::Listener, stop: Stop, policy: ConnPolicy, serve: F)
where
    R: Runtime,
    F: Fn(MaybeTls<R::Io>, SocketAddr, Served) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let open = Open::default();
    let serve = Arc::new(serve);
    loop {
        let accepted = {
            let accept = pin!(rt.accept(&listener));
            match select(accept, pin!(stopped(stop.clone()))).await {
                Either::Left((accepted, _)) => accepted,
                Either::Right(_) => return,
            }
        };
        let (io, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(listener = policy.listener, error = %e, "accept failed");
                rt.sleep_until(Instant::now() + Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = open.take(address_of(peer), policy.max_per_address) else {
            // Closed at once (dropping it); logged at debug only: a flood must not flood the log.
            tracing::debug!(listener = policy.listener, %peer, "too many connections from this address");
            policy.refused.count(policy.listener, "too_many_from_address");
            continue;
        };
        let (rt2, policy2, serve) = (rt.clone(), policy.clone(), Arc::clone(&serve));
        rt.spawn(async move {
            let _slot = slot;
            connection(rt2, io, peer, policy2, serve).await;
        });
    }
}

/// One connection: TLS handshake if configured, then `serve`, all within the first-request
/// deadline until the first request arrives.
async fn connection<R, F, Fut>(rt: R, io: R::Io, peer: SocketAddr, policy: ConnPolicy, serve: Arc<F>)
where
    R: Runtime,
    F: Fn(MaybeTls<R::Io>, SocketAddr, Served) -> Fut,
    Fut: Future<Output = ()>,
{
    let deadline = Instant::now() + policy.first_request;
    let served = Served::default();
    let work = async {
        let io = match &policy.tls {
            None => MaybeTls::Plain(io),
            Some(acceptor) => match acceptor.accept(TokioIo::new(io)).await {
                Ok(tls) => MaybeTls::Tls(Box::new(TokioIo::new(tls))),
                Err(e) => {
                    tracing::debug!(listener = policy.listener, %peer, error = %e, "TLS handshake failed");
                    policy.refused.count(policy.listener, "tls_handshake_failed");
                    return;
                }
            },
        };
        serve(io, peer, served.clone()).await;
    };
    let watchdog = async {
        rt.sleep_until(deadline).await;
        if served.get() {
            std::future::pending::<()>().await;
        }
    };
    if let Either::Right(_) = select(pin!(work), pin!(watchdog)).await {
        tracing::debug!(listener = policy.listener, %peer, "no request in time: connection closed");
        policy.refused.count(policy.listener, "no_request_in_time");
    }
}

/// Serves the gRPC worker endpoint.
pub async fn serve_grpc<R, S>(
    rt: R,
    listener: R::Listener,
    service: S,
    keepalive: (Duration, Duration),
    policy: ConnPolicy,
    stop: Stop,
) where
    R: Runtime,
    S: Service<Request<Incoming>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let rt2 = rt.clone();
    accept_loop(rt, listener, stop, policy, move |io, peer, served: Served| {
        let service = service.clone();
        let rt = rt2.clone();
        async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                served.mark();
                req.extensions_mut().insert(PeerAddr(peer));
                service.clone().call(req)
            });
            let mut builder = hyper::server::conn::http2::Builder::new(Exec(rt.clone()));
            builder.timer(Timer(rt)).keep_alive_interval(keepalive.0).keep_alive_timeout(keepalive.1);
            if let Err(e) = builder.serve_connection(io, svc).await {
                tracing::debug!(%peer, error = %e, "worker connection ended");
            }
        }
    })
    .await;
}

/// Serves an HTTP service (front door, admin API). The body type is the handler's: the front
/// door answers with whole bodies (no boxing on its hot path), the admin API may stream.
pub async fn serve_http<R, F, Fut, B>(
    rt: R,
    listener: R::Listener,
    handler: F,
    policy: ConnPolicy,
    stop: Stop,
) where
    R: Runtime,
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let rt2 = rt.clone();
    let what = policy.listener;
    accept_loop(rt, listener, stop, policy, move |io, peer, served: Served| {
        let handler = handler.clone();
        let rt = rt2.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| {
                served.mark();
                handler(req, peer)
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(Exec(rt.clone()));
            builder.http1().timer(Timer(rt.clone())).header_read_timeout(Duration::from_secs(30));
            builder.http2().timer(Timer(rt));
            if let Err(e) = builder.serve_connection(io, svc).await {
                tracing::debug!(%peer, listener = what, error = %e, "connection ended");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_ip_and_ipv6_slash_64() {
        let a: SocketAddr = "[2001:db8:1:2:3:4:5:6]:1".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:ffff::]:2".parse().unwrap();
        assert_eq!(address_of(a), address_of(b));
        let v4: SocketAddr = "[::ffff:192.0.2.1]:3".parse().unwrap();
        assert_eq!(address_of(v4), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn slots_are_capped_per_address_and_given_back() {
        let open = Open::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = open.take(a, 2).unwrap();
        let _second = open.take(a, 2).unwrap();
        assert!(open.take(a, 2).is_none());
        assert!(open.take(b, 2).is_some(), "other addresses are not affected");
        drop(first);
        assert!(open.take(a, 2).is_some());
        assert!(open.take(a, 0).is_some(), "0 means no limit");
    }
}
