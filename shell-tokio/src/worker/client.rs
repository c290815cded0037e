//! The worker's side of the `EventStream`: one tonic channel per dial (a fresh TCP connection
//! with `TCP_NODELAY` and HTTP/2 keepalive), the join and resume tokens as request metadata,
//! an unbounded outbound queue feeding the request stream.

use std::time::Duration;

use switchboard_core::ConnMeta;
use switchboard_proto::grpc::function_rpc_client::FunctionRpcClient;
use switchboard_proto::rpc::StreamingMessage;
use switchboard_shell::grpc::{JOIN_TOKEN, RESUME_TOKEN};
use tokio::sync::mpsc;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// How to reach the runtime.
#[derive(Debug, Clone)]
pub(super) struct Dialer {
    endpoint: Endpoint,
    max_message: usize,
}

/// An open stream: write with `tx` (dropping it ends our half), read `inbound`. Dropping
/// `inbound` and `channel` resets the stream and closes the connection.
pub(super) struct Stream {
    pub(super) tx: mpsc::UnboundedSender<StreamingMessage>,
    pub(super) inbound: tonic::Streaming<StreamingMessage>,
    pub(super) channel: Channel,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stream")
    }
}

/// Keepalive knobs of the channel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keepalive {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
}

impl Dialer {
    /// A dialer for `url` (`http://HOST:PORT`).
    pub(super) fn new(
        url: &str,
        connect_timeout: Duration,
        keepalive: Keepalive,
        max_message: usize,
    ) -> Result<Dialer, String> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("runtime address {url:?}: {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(keepalive.interval)
            .keep_alive_timeout(keepalive.timeout)
            .keep_alive_while_idle(true);
        Ok(Dialer { endpoint, max_message })
    }

    /// Opens a connection and the `EventStream` on it. Resolves once the runtime answered the
    /// stream's headers (it does so at once; admission comes after `StartStream`).
    pub(super) async fn dial(&self, meta: &ConnMeta) -> Result<Stream, String> {
        let channel = self.endpoint.connect().await.map_err(|e| error_chain(&e))?;
        let mut client = FunctionRpcClient::new(channel.clone())
            .max_decoding_message_size(self.max_message)
            .max_encoding_message_size(self.max_message);
        let (tx, rx) = mpsc::unbounded_channel::<StreamingMessage>();
        let outbound =
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let mut request = Request::new(outbound);
        for (key, value) in [(JOIN_TOKEN, &meta.join_token), (RESUME_TOKEN, &meta.resume_token)] {
            if let Some(value) = value {
                let value = MetadataValue::try_from(value.as_str())
                    .map_err(|_| format!("{key} is not a valid header value"))?;
                request.metadata_mut().insert(key, value);
            }
        }
        let response =
            client.event_stream(request).await.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        Ok(Stream { tx, inbound: response.into_inner(), channel })
    }
}

/// An error with its sources (tonic's transport errors say little at the top).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
