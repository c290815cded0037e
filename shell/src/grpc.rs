//! The worker endpoint: `AzureFunctionsRpcMessages.FunctionRpc/EventStream`. Each stream gets a
//! number and a bounded outbound queue; inbound messages go to the driver in order.

use std::net::SocketAddr;
use std::pin::Pin;

use futures_util::Stream;
use switchboard_core::proto::grpc::function_rpc_server::{FunctionRpc, FunctionRpcServer};
use switchboard_core::proto::rpc::StreamingMessage;
use switchboard_core::{ConnMeta, Input};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::driver::{Command, Handle};
use crate::rt::Runtime;

/// Metadata key of a pool's join token (connection-mode workers).
pub const JOIN_TOKEN: &str = "x-switchboard-join-token";
/// Metadata key of a resume token (connection-mode workers).
pub const RESUME_TOKEN: &str = "x-switchboard-resume-token";

/// The peer of a connection, put in each request's extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The `FunctionRpc` service.
#[derive(Debug, Clone)]
pub struct WorkerEndpoint<R> {
    rt: R,
    handle: Handle,
    queue: usize,
    /// Refuse join and resume tokens: only ids the runtime issued admit (the plaintext
    /// loopback listener for local workers while the main worker endpoint is TLS).
    issued_only: bool,
}

impl<R: Runtime> WorkerEndpoint<R> {
    /// The tonic service, with message size limits in both directions.
    pub fn service(rt: R, handle: Handle, queue: usize, max_message: usize) -> FunctionRpcServer<Self> {
        Self::service_with(rt, handle, queue, max_message, false)
    }

    /// [`WorkerEndpoint::service`]; with `issued_only`, streams that carry a join or resume
    /// token are refused (`PERMISSION_DENIED`) before they reach the core.
    pub fn service_with(
        rt: R,
        handle: Handle,
        queue: usize,
        max_message: usize,
        issued_only: bool,
    ) -> FunctionRpcServer<Self> {
        FunctionRpcServer::new(WorkerEndpoint { rt, handle, queue, issued_only })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message)
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<StreamingMessage, Status>> + Send>>;

#[tonic::async_trait]
impl<R: Runtime> FunctionRpc for WorkerEndpoint<R> {
    type EventStreamStream = OutStream;

    async fn event_stream(
        &self,
        request: Request<Streaming<StreamingMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.to_string()).unwrap_or_default();
        let text = |key: &str| request.metadata().get(key).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let meta = ConnMeta { join_token: text(JOIN_TOKEN), resume_token: text(RESUME_TOKEN) };
        if self.issued_only && meta.connection_mode() {
            tracing::warn!(%peer, "worker rejected: a token on the local workers' listener");
            return Err(Status::permission_denied(
                "this listener admits only workers the runtime started: dial the TLS worker endpoint",
            ));
        }
        let conn = self.handle.next_conn();
        let (tx, rx) = mpsc::channel(self.queue);
        // The decoder's own status for a message over the size limit says more than the core's
        // close reason: it goes out first, and ends the response. (A weak sender: the response
        // must still end when the driver drops its sender.)
        let too_large = tx.downgrade();
        self.handle
            .send(Command::Connected { conn, peer, meta, tx })
            .map_err(|_| Status::unavailable("the runtime is shutting down"))?;
        let mut inbound = request.into_inner();
        let handle = self.handle.clone();
        self.rt.spawn(async move {
            let input = loop {
                match inbound.message().await {
                    Ok(Some(msg)) => {
                        if handle.send(Command::Input(Input::Message { conn, msg: Box::new(msg) })).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        break Input::Disconnected { conn, reason: "stream closed by the worker".into() };
                    }
                    Err(status) if is_malformed(&status) => {
                        if matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted)
                            && let Some(tx) = too_large.upgrade()
                        {
                            let _ = tx.try_send(Err(status.clone()));
                        }
                        break Input::Malformed { conn, error: status.message().to_owned() };
                    }
                    Err(status) => break Input::Disconnected { conn, reason: status.message().to_owned() },
                }
            };
            let _ = handle.send(Command::Input(input));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Whether a stream error means the peer sent bytes that are not a valid message (garbage, a
/// truncated frame, a bad compression flag, a message over the size limit), as opposed to the
/// connection going away. These are the statuses tonic's decoder makes.
fn is_malformed(status: &Status) -> bool {
    let message = status.message();
    match status.code() {
        Code::OutOfRange | Code::ResourceExhausted => true,
        Code::Internal => [
            "failed to decode",
            "Unexpected EOF decoding",
            "protocol error: received message",
            "Error decompressing",
        ]
        .iter()
        .any(|m| message.starts_with(m)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_errors_are_malformed_and_transport_errors_are_not() {
        for status in [
            Status::out_of_range(
                "Error, decoded message length too large: found 9 bytes, the limit is: 8 bytes",
            ),
            Status::internal("failed to decode Protobuf message: invalid wire type"),
            Status::internal("Unexpected EOF decoding stream."),
            Status::internal("protocol error: received message with invalid compression flag: 7"),
        ] {
            assert!(is_malformed(&status), "{status:?}");
        }
        for status in [Status::internal("h2 protocol error: connection reset"), Status::cancelled("gone")] {
            assert!(!is_malformed(&status), "{status:?}");
        }
    }
}
