//! A minimal worker speaking FunctionRpc: it dials an endpoint, registers with a join token,
//! says yes to every specialization step, and answers each invocation at once with the request
//! body as its HTTP response. Many run in one process (they share HTTP/2 connections).

use std::collections::BTreeMap;

use switchboard_core::proto::Content;
use switchboard_core::proto::grpc::function_rpc_client::FunctionRpcClient;
use switchboard_core::proto::rpc::{
    FunctionEnvironmentReloadResponse, FunctionLoadResponse, InvocationResponse, RpcHttp, StartStream,
    StatusResult, StreamingMessage, TypedData, WorkerInitResponse, parameter_binding::RpcData, status_result,
    typed_data::Data,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// A connection that several echo workers share.
pub async fn channel(endpoint: &str) -> Channel {
    Endpoint::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .connect()
        .await
        .expect("connect to the worker endpoint")
}

fn ok() -> Option<StatusResult> {
    Some(StatusResult { status: status_result::Status::Success as i32, ..Default::default() })
}

fn msg(content: Content) -> StreamingMessage {
    StreamingMessage { request_id: String::new(), content: Some(content) }
}

/// Runs one echo worker until its stream ends. `join_token` is sent as metadata when set.
pub async fn run(channel: Channel, worker_id: String, join_token: Option<String>, capacity: u32) {
    let (tx, rx) = mpsc::channel::<StreamingMessage>(4096);
    tx.send(msg(Content::StartStream(StartStream { worker_id }))).await.expect("queue");
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = join_token {
        request.metadata_mut().insert("x-switchboard-join-token", token.parse().expect("ascii token"));
    }
    let mut client = FunctionRpcClient::new(channel);
    let Ok(response) = client.event_stream(request).await else { return };
    let mut inbound = response.into_inner();
    while let Ok(Some(m)) = inbound.message().await {
        let reply = match m.content {
            Some(Content::WorkerInitRequest(_)) => {
                let capabilities: BTreeMap<String, String> = [
                    ("RawHttpBodyBytes", "true".to_owned()),
                    ("RpcHttpTriggerMetadataRemoved", "true".to_owned()),
                    ("SwitchboardConcurrency", capacity.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                Content::WorkerInitResponse(WorkerInitResponse {
                    capabilities,
                    result: ok(),
                    ..Default::default()
                })
            }
            Some(Content::FunctionEnvironmentReloadRequest(_)) => {
                Content::FunctionEnvironmentReloadResponse(FunctionEnvironmentReloadResponse {
                    result: ok(),
                    ..Default::default()
                })
            }
            Some(Content::FunctionLoadRequest(r)) => Content::FunctionLoadResponse(FunctionLoadResponse {
                function_id: r.function_id,
                result: ok(),
                ..Default::default()
            }),
            Some(Content::InvocationRequest(r)) => Content::InvocationResponse(echo(r)),
            Some(Content::WorkerTerminate(_)) => return,
            _ => continue,
        };
        if tx.send(msg(reply)).await.is_err() {
            return;
        }
    }
}

/// The answer to an invocation: HTTP 200 with the request's body.
pub fn echo(r: switchboard_core::proto::rpc::InvocationRequest) -> InvocationResponse {
    let body = r
        .input_data
        .into_iter()
        .find_map(|b| match b.rpc_data {
            Some(RpcData::Data(TypedData { data: Some(Data::Http(http)) })) => http.body,
            _ => None,
        })
        .unwrap_or_default();
    let http = RpcHttp { status_code: "200".into(), body: Some(body), ..Default::default() };
    InvocationResponse {
        invocation_id: r.invocation_id,
        return_value: Some(TypedData { data: Some(Data::Http(Box::new(http))) }),
        result: ok(),
        ..Default::default()
    }
}
