//! Accept loops: each accepted connection is served by hyper on the shell's runtime. The worker
//! endpoint speaks HTTP/2 only (gRPC, with keepalive pings); the front door and admin API speak
//! HTTP/1.1 and HTTP/2.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use futures_util::future::{Either, select};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::watch;
use tonic::codegen::Service;

use crate::grpc::PeerAddr;
use crate::rt::{Exec, Runtime, Timer};

/// Fires when listeners must stop accepting.
pub type Stop = watch::Receiver<bool>;

/// Waits for the stop signal.
pub async fn stopped(mut stop: Stop) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts connections until `stop`, handing each to `serve`.
async fn accept_loop<R, F, Fut>(rt: R, listener: R::Listener, stop: Stop, what: &'static str, serve: F)
where
    R: Runtime,
    F: Fn(R::Io, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = {
            let accept = pin!(rt.accept(&listener));
            match select(accept, pin!(stopped(stop.clone()))).await {
                Either::Left((accepted, _)) => accepted,
                Either::Right(_) => return,
            }
        };
        match accepted {
            Ok((io, peer)) => rt.spawn(serve(io, peer)),
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(listener = what, error = %e, "accept failed");
                rt.sleep_until(std::time::Instant::now() + Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the gRPC worker endpoint.
pub async fn serve_grpc<R, S>(
    rt: R,
    listener: R::Listener,
    service: S,
    keepalive: (Duration, Duration),
    stop: Stop,
) where
    R: Runtime,
    S: Service<Request<Incoming>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let rt2 = rt.clone();
    accept_loop(rt, listener, stop, "workers", move |io, peer| {
        let service = service.clone();
        let rt = rt2.clone();
        async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
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
    what: &'static str,
    handler: F,
    stop: Stop,
) where
    R: Runtime,
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let rt2 = rt.clone();
    accept_loop(rt, listener, stop, what, move |io, peer| {
        let handler = handler.clone();
        let rt = rt2.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| handler(req, peer));
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
