//! A small client for the admin API: plain HTTP/1.1 with a bearer token, JSON in and out, and
//! one streaming call (live logs as server-sent events).

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::Exit;

/// Where the admin token comes from when `--token` and `SWITCHBOARD_TOKEN` are not given.
pub const DEFAULT_TOKEN_FILE: &str = ".switchboard/admin-token";

/// Why a call failed, and which exit code that means.
#[derive(Debug)]
pub enum Error {
    /// The runtime could not be reached (exit 3).
    Unreachable(String),
    /// The runtime answered with an error (exit 1).
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The API's `error` message (or the body).
        message: String,
        /// The whole body, when it was JSON.
        body: Option<Value>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Unreachable(_) => Exit::Unreachable,
            Error::Api { .. } => Exit::Failed,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable(m) => f.write_str(m),
            Error::Api { status, message, .. } if *status == StatusCode::UNAUTHORIZED => write!(
                f,
                "the runtime refused the admin token ({message}): pass --token, set SWITCHBOARD_TOKEN, \
                 or run where {DEFAULT_TOKEN_FILE} is (or pass --token-file)"
            ),
            Error::Api { message, .. } => f.write_str(message),
        }
    }
}

/// The admin API of one runtime.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

/// Resolves the token: `--token`, then `SWITCHBOARD_TOKEN` (both via clap), then the file.
pub fn token(explicit: Option<String>, file: Option<PathBuf>) -> Option<String> {
    if let Some(token) = explicit.filter(|t| !t.trim().is_empty()) {
        return Some(token.trim().to_owned());
    }
    let path = file.unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

impl Client {
    /// A client for the admin API at `base` (`http://host:port`; the scheme may be left out).
    pub fn new(base: &str, token: Option<String>) -> Result<Client, String> {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") { base.to_owned() } else { format!("http://{base}") };
        let uri: Uri = base.parse().map_err(|e| format!("invalid --admin URL {base:?}: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!("invalid --admin URL {base:?}: expected http://HOST:PORT"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Client { base, token, http })
    }

    /// `GET path` → JSON.
    pub async fn get(&self, path: &str) -> Result<Value, Error> {
        self.json(Method::GET, path, None).await
    }

    /// A call with an optional JSON body → JSON.
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        self.call(method, path, body, &[]).await
    }

    /// A call with a raw body and extra headers → JSON. Error statuses whose body is JSON with
    /// an `outcome` (invocations) are returned as `Err(Api { body: Some(..) })` too.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Value, Error> {
        let resp = self.send(method, path, body, headers).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Unreachable(format!("the runtime at {} went away: {e}", self.base)))?
            .to_bytes();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return json.ok_or_else(|| Error::Api {
                status,
                message: format!("the runtime answered {status} with a body that is not JSON"),
                body: None,
            });
        }
        let message = json
            .as_ref()
            .and_then(|j| j["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()));
        Err(Error::Api { status, message, body: json })
    }

    /// A streaming `GET`: the response, once its status is a success.
    pub async fn stream(&self, path: &str) -> Result<Incoming, Error> {
        let resp = self.send(Method::GET, path, None, &[("accept", "text/event-stream")]).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        let message = json
            .as_ref()
            .and_then(|j| j["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{status}"));
        Err(Error::Api { status, message, body: json })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<http::Response<Incoming>, Error> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Error::Unreachable(format!("cannot build a request for {path}: {e}")))?;
        self.http.request(req).await.map_err(|e| {
            let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            Error::Unreachable(format!("cannot reach the runtime at {}: {why}", self.base))
        })
    }
}

/// Server-sent events, parsed from a byte stream.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (default `message`).
    pub event: String,
    /// `data:` lines, joined with newlines.
    pub data: String,
}

impl SseParser {
    /// Adds bytes; returns the events they complete (comments are skipped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = find_blank_line(&self.buf) {
            let block = self.buf.split_to(end.0);
            let _ = self.buf.split_to(end.1);
            let text = String::from_utf8_lossy(&block);
            let mut event = SseEvent::default();
            let mut data: Vec<&str> = Vec::new();
            for line in text.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = value.to_owned(),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if event.event.is_empty() && data.is_empty() {
                continue; // a comment-only block (keepalive)
            }
            if event.event.is_empty() {
                event.event = "message".into();
            }
            event.data = data.join("\n");
            events.push(event);
        }
        events
    }
}

/// The end of the first event block and the length of its separator.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: log\nid: 3\ndata: {\"a\"").is_empty());
        let events = p.push(b":1}\n\n: keepalive\n\nevent: end\ndata: {}\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent { event: "log".into(), data: "{\"a\":1}".into() },
                SseEvent { event: "end".into(), data: "{}".into() },
            ]
        );
    }

    #[test]
    fn admin_urls() {
        assert!(Client::new("127.0.0.1:7072", None).is_ok());
        assert!(Client::new("http://127.0.0.1:7072/", None).is_ok());
        assert!(Client::new("https://x", None).is_err());
    }
}
