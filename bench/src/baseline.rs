//! Baselines measured in the same run as Switchboard:
//! - `relay`: the least a relay of the same shape must do — HTTP in, one `InvocationRequest`
//!   of the same shape out on the gRPC stream of an echo worker that dialled it (tonic's own
//!   server), the answer matched by id and sent back as HTTP. No admission, pools, routing
//!   policy or settling: the floor Switchboard is compared with.
//! - `plain`: a hyper server answering each request directly with its body.
//!
//! Each runs as its own process (`switchboard-bench relay|plain ...`) so its CPU time and the
//! client's are apart, as for the runtime.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchboard_core::proto::Content;
use switchboard_core::proto::grpc::function_rpc_server::{FunctionRpc, FunctionRpcServer};
use switchboard_core::proto::rpc::{
    InvocationRequest, InvocationResponse, ParameterBinding, RpcHttp, StreamingMessage, TypedData,
    parameter_binding::RpcData, typed_data::Data,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

type WorkerTx = mpsc::Sender<Result<StreamingMessage, Status>>;

#[derive(Default)]
struct Relay {
    worker: Mutex<Option<WorkerTx>>,
    pending: Mutex<HashMap<String, oneshot::Sender<InvocationResponse>>>,
    next: AtomicU64,
}

#[derive(Clone)]
struct RelayService(Arc<Relay>);

type OutStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<StreamingMessage, Status>> + Send>>;

#[tonic::async_trait]
impl FunctionRpc for RelayService {
    type EventStreamStream = OutStream;

    async fn event_stream(
        &self,
        request: tonic::Request<Streaming<StreamingMessage>>,
    ) -> Result<tonic::Response<OutStream>, Status> {
        let (tx, rx) = mpsc::channel(4096);
        *self.0.worker.lock().unwrap() = Some(tx);
        let relay = Arc::clone(&self.0);
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                if let Some(Content::InvocationResponse(resp)) = msg.content
                    && let Some(reply) = relay.pending.lock().unwrap().remove(&resp.invocation_id)
                {
                    let _ = reply.send(resp);
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The `RpcHttp` Switchboard's front door would build (same fields, same sizes).
fn rpc_http(parts: &http::request::Parts, body: Bytes) -> RpcHttp {
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let query: BTreeMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    RpcHttp {
        method: parts.method.as_str().to_owned(),
        url: parts.uri.to_string(),
        headers,
        query,
        body: Some(Box::new(TypedData { data: Some(Data::Bytes(body)) })),
        ..Default::default()
    }
}

async fn relay_http(relay: Arc<Relay>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let id = relay.next.fetch_add(1, Ordering::Relaxed).to_string();
    let request = InvocationRequest {
        invocation_id: id.clone(),
        function_id: "f".into(),
        input_data: vec![ParameterBinding {
            name: "req".into(),
            rpc_data: Some(RpcData::Data(TypedData {
                data: Some(Data::Http(Box::new(rpc_http(&parts, body)))),
            })),
        }],
        ..Default::default()
    };
    let (tx, rx) = oneshot::channel();
    relay.pending.lock().unwrap().insert(id, tx);
    let worker = relay.worker.lock().unwrap().clone();
    let msg =
        StreamingMessage { request_id: String::new(), content: Some(Content::InvocationRequest(request)) };
    let sent = match worker {
        Some(w) => w.send(Ok(msg)).await.is_ok(),
        None => false,
    };
    let body = match (sent, rx.await) {
        (true, Ok(resp)) => match resp.return_value.and_then(|v| v.data) {
            Some(Data::Http(http)) => match http.body.and_then(|b| b.data) {
                Some(Data::Bytes(b)) => b,
                _ => Bytes::new(),
            },
            _ => Bytes::new(),
        },
        _ => return Ok(Response::builder().status(503).body(Full::new(Bytes::new())).unwrap()),
    };
    Ok(Response::new(Full::new(body)))
}

async fn plain_http(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok(Response::new(Full::new(body)))
}

/// Serves HTTP/1.1 on `listener` with `handler`.
async fn serve_http<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(handler);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// `switchboard-bench relay`: prints `http=ADDR grpc=ADDR` and serves until killed.
pub fn relay_main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("http={} grpc={}", http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let relay = Arc::new(Relay::default());
        let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
        let service = FunctionRpcServer::new(RelayService(Arc::clone(&relay)));
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        serve_http(http, move |req| relay_http(Arc::clone(&relay), req)).await;
    });
}

/// `switchboard-bench plain`: prints `http=ADDR` and serves until killed.
pub fn plain_main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("http={}", http.local_addr().unwrap());
        serve_http(http, plain_http).await;
    });
}

/// The address a baseline process printed for `key`.
pub fn addr_of(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
