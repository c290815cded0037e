//! A raw gRPC client of the worker endpoint: `EventStream` over HTTP/2 with hand-made frames
//! (a 5-byte header, then the bytes), so a test can send what no real worker would (garbage,
//! truncated frames, invalid UTF-8, oversized messages) and see exactly what comes back: the
//! runtime's messages, then the `grpc-status` that ends the stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Request;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchboard_core::proto::Message;
use switchboard_core::proto::rpc::StreamingMessage;
use tokio::sync::mpsc;

/// The method path.
pub const EVENT_STREAM: &str = "/AzureFunctionsRpcMessages.FunctionRpc/EventStream";

/// What the runtime sent on a stream.
#[derive(Debug)]
pub enum Got {
    /// A message.
    Message(Box<StreamingMessage>),
    /// The stream ended with this `grpc-status` and `grpc-message`.
    Status(i32, String),
    /// The stream or connection ended without a status.
    Ended(String),
}

/// gRPC status codes the tests look for.
pub mod code {
    /// `OK`.
    pub const OK: i32 = 0;
    /// `INVALID_ARGUMENT`.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// `DEADLINE_EXCEEDED`.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// `PERMISSION_DENIED`.
    pub const PERMISSION_DENIED: i32 = 7;
    /// `RESOURCE_EXHAUSTED`.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// `FAILED_PRECONDITION`.
    pub const FAILED_PRECONDITION: i32 = 9;
    /// `OUT_OF_RANGE`.
    pub const OUT_OF_RANGE: i32 = 11;
    /// `INTERNAL`.
    pub const INTERNAL: i32 = 13;
    /// `UNAVAILABLE`.
    pub const UNAVAILABLE: i32 = 14;
    /// `UNAUTHENTICATED`.
    pub const UNAUTHENTICATED: i32 = 16;
}

/// One `EventStream` call.
#[derive(Debug)]
pub struct RawStream {
    out: Option<mpsc::UnboundedSender<Bytes>>,
    got: mpsc::UnboundedReceiver<Got>,
}

/// A request body fed from a channel; dropping the sender ends the stream.
struct Feed(mpsc::UnboundedReceiver<Bytes>);

impl Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut().0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A gRPC frame around `payload`.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

impl RawStream {
    /// Opens a stream to the plaintext endpoint at `addr` with this request metadata.
    pub async fn open(addr: SocketAddr, metadata: &[(&str, &str)]) -> RawStream {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to the worker endpoint");
        tcp.set_nodelay(true).unwrap();
        RawStream::open_on(TokioIo::new(tcp), metadata).await.expect("HTTP/2 handshake")
    }

    /// Opens a stream to `addr` from the local address `source` (another loopback address,
    /// say: all of 127.0.0.0/8 reaches a listener on 127.0.0.1).
    pub async fn open_from(
        source: std::net::IpAddr,
        addr: SocketAddr,
        metadata: &[(&str, &str)],
    ) -> RawStream {
        let tcp = connect_from(source, addr).await.expect("connect to the worker endpoint");
        tcp.set_nodelay(true).unwrap();
        RawStream::open_on(TokioIo::new(tcp), metadata).await.expect("HTTP/2 handshake")
    }

    /// Opens a stream over an established connection (a TLS one, say).
    pub async fn open_on<IO>(io: IO, metadata: &[(&str, &str)]) -> Result<RawStream, String>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let (got_tx, got) = mpsc::unbounded_channel();
        let conn_got = got_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                let _ = conn_got.send(Got::Ended(format!("connection: {e}")));
            }
        });
        let (out, feed) = mpsc::unbounded_channel();
        let mut req = Request::post(format!("http://localhost{EVENT_STREAM}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in metadata {
            req = req.header(*k, *v);
        }
        let req = req.body(Feed(feed)).unwrap();
        tokio::spawn(async move {
            let resp = match sender.send_request(req).await {
                Ok(resp) => resp,
                Err(e) => {
                    let _ = got_tx.send(Got::Ended(format!("request: {e}")));
                    return;
                }
            };
            if let Some(status) = resp.headers().get("grpc-status") {
                // A trailers-only response: refused before any message.
                let message = header(resp.headers(), "grpc-message");
                let _ = got_tx.send(Got::Status(status.to_str().unwrap().parse().unwrap(), message));
                return;
            }
            let mut body = resp.into_body();
            let mut buf = BytesMut::new();
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            buf.extend_from_slice(&data);
                            while buf.len() >= 5 {
                                let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                                if buf.len() < 5 + len {
                                    break;
                                }
                                buf.advance(5);
                                let msg = StreamingMessage::decode(buf.split_to(len).freeze())
                                    .expect("the runtime sends valid messages");
                                let _ = got_tx.send(Got::Message(Box::new(msg)));
                            }
                        }
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                let code = header(&trailers, "grpc-status").parse().unwrap_or(-1);
                                let _ = got_tx.send(Got::Status(code, header(&trailers, "grpc-message")));
                                return;
                            }
                        }
                    },
                    Some(Err(e)) => {
                        let _ = got_tx.send(Got::Ended(format!("body: {e}")));
                        return;
                    }
                    None => {
                        let _ = got_tx.send(Got::Ended("body ended without trailers".into()));
                        return;
                    }
                }
            }
        });
        Ok(RawStream { out: Some(out), got })
    }

    /// Sends a message, framed.
    pub fn send(&self, msg: &StreamingMessage) {
        self.send_raw(frame(&msg.encode_to_vec()));
    }

    /// Sends bytes as they are (frame them yourself, or not).
    pub fn send_raw(&self, bytes: impl Into<Bytes>) {
        if let Some(out) = &self.out {
            let _ = out.send(bytes.into());
        }
    }

    /// Ends the request half of the stream.
    pub fn finish(&mut self) {
        self.out = None;
    }

    /// The next thing the runtime sent, waiting at most `bound`.
    pub async fn next(&mut self, bound: Duration) -> Got {
        match tokio::time::timeout(bound, self.got.recv()).await {
            Ok(Some(got)) => got,
            Ok(None) => Got::Ended("the reader stopped".into()),
            Err(_) => panic!("nothing from the runtime within {bound:?}"),
        }
    }

    /// Skips messages until the stream's status (code, message), waiting at most `bound`.
    pub async fn status(&mut self, bound: Duration) -> (i32, String) {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Got::Message(_) => {}
                Got::Status(code, message) => return (code, message),
                Got::Ended(why) => panic!("the stream ended without a status: {why}"),
            }
        }
    }

    /// Whatever the runtime sends within `d`, or `None` if it stays quiet.
    pub async fn quiet_for(&mut self, d: Duration) -> Option<Got> {
        tokio::time::timeout(d, self.got.recv()).await.ok().flatten()
    }

    /// The next message (panics on a status or the end), waiting at most `bound`.
    pub async fn message(&mut self, bound: Duration) -> StreamingMessage {
        match self.next(bound).await {
            Got::Message(m) => *m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// A TCP connection to `addr` from the local address `source`.
pub async fn connect_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match source {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    let raw = headers.get(name).map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
    percent_decode(&raw)
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
