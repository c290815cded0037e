//! The HTTP front door: `/<app>/<routePrefix>/<route>` becomes an `RpcHttp` invocation, and its
//! one outcome becomes the HTTP response.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use switchboard_core::proto::rpc::{RpcHttp, RpcTraceContext, TypedData, typed_data::Data};
use switchboard_core::{CallId, Completed, Invoke, NotFound, Outcome, Payload, Target, Unavailable};

use crate::driver::Handle;

/// Request limits of the front door.
#[derive(Debug, Clone, Copy)]
pub struct FrontDoorLimits {
    /// Largest body (413 above).
    pub max_body: usize,
    /// Largest total header size (431 above).
    pub max_header_bytes: usize,
    /// Most headers (431 above).
    pub max_headers: usize,
}

/// The front door service.
#[derive(Debug, Clone)]
pub struct FrontDoor {
    handle: Handle,
    limits: FrontDoorLimits,
}

/// A front-door response.
pub type HttpResponse = Response<Full<Bytes>>;

impl FrontDoor {
    /// A front door that sends calls to the driver behind `handle`.
    pub fn new(handle: Handle, limits: FrontDoorLimits) -> Arc<Self> {
        Arc::new(FrontDoor { handle, limits })
    }

    /// Serves one request.
    pub async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Result<HttpResponse, Infallible> {
        Ok(self.handle_request(req).await)
    }

    async fn handle_request(&self, req: Request<Incoming>) -> HttpResponse {
        let path = req.uri().path();
        let Some((app, rest)) = split_app(path) else {
            return error(StatusCode::NOT_FOUND, "no app in the path: use /<app>/api/<route>", None);
        };
        let (app, rest) = (app.to_owned(), rest.to_owned());
        if req.headers().len() > self.limits.max_headers {
            return error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers", None);
        }
        let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        if header_bytes > self.limits.max_header_bytes {
            return error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers too large", None);
        }
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large", None);
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.limits.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large", None);
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("could not read the body: {e}"), None),
        };
        let (http, trace) = to_rpc_http(&parts, body);
        let invoke = Invoke {
            call: CallId(0),
            app,
            target: Target::Route { method: parts.method.as_str().to_owned(), path: rest },
            payload: Payload::Http(Box::new(http)),
            trace,
            timeout: None,
        };
        match self.handle.invoke(invoke).await {
            Ok(outcome) => to_response(outcome),
            Err(_) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the runtime is shutting down",
                Some(Duration::from_secs(1)),
            ),
        }
    }
}

/// Splits `/app/rest...` into `("app", "rest...")`.
fn split_app(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    let (app, rest) = path.split_once('/').unwrap_or((path, ""));
    (!app.is_empty()).then_some((app, rest))
}

/// Maps an HTTP request to the `RpcHttp` a worker expects: lowercase header names, the query
/// as a map (repeated keys joined with `,`), the body as bytes.
fn to_rpc_http(parts: &http::request::Parts, body: Bytes) -> (RpcHttp, Option<RpcTraceContext>) {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    if let Some(q) = parts.uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            query
                .entry(k.into_owned())
                .and_modify(|existing| {
                    existing.push(',');
                    existing.push_str(&v);
                })
                .or_insert_with(|| v.into_owned());
        }
    }
    let host = headers.get("host").cloned().unwrap_or_else(|| "localhost".into());
    let url = format!("http://{host}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let trace = trace_context(&parts.headers);
    let http = RpcHttp {
        method: parts.method.as_str().to_owned(),
        url,
        headers,
        query,
        body: Some(Box::new(TypedData { data: Some(Data::Bytes(body)) })),
        ..Default::default()
    };
    (http, trace)
}

/// The W3C trace context of a request, for `InvocationRequest.trace_context`: `traceparent`
/// when it is well formed (a malformed one is ignored, as the W3C spec asks), with its
/// `tracestate`.
pub fn trace_context(headers: &http::HeaderMap) -> Option<RpcTraceContext> {
    let parent = headers.get("traceparent")?.to_str().ok()?.trim();
    if !valid_traceparent(parent) {
        return None;
    }
    let state =
        headers.get_all("tracestate").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    Some(RpcTraceContext { trace_parent: parent.to_owned(), trace_state: state, attributes: BTreeMap::new() })
}

/// `version-traceid-parentid-flags`: lower-case hex of 2, 32, 16 and 2 digits, version not
/// `ff`, ids not all zero. Later versions may append fields after a `-`.
fn valid_traceparent(value: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let mut parts = value.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = if version == "00" { parts.next().is_none() } else { true };
    hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && rest_ok
}

/// Maps an invocation's outcome to an HTTP response.
pub fn to_response(outcome: Outcome) -> HttpResponse {
    match outcome {
        Outcome::Completed(done) => completed(*done),
        Outcome::Failed(failure) => {
            let message = failure.expose.then_some(failure.exception.message.as_str());
            let mut body = serde_json::json!({ "error": "the function failed" });
            if let Some(message) = message {
                body["message"] = message.into();
            }
            json(StatusCode::INTERNAL_SERVER_ERROR, &body, None)
        }
        Outcome::Timeout => error(StatusCode::GATEWAY_TIMEOUT, "the function did not answer in time", None),
        Outcome::Cancelled => error(StatusCode::from_u16(499).expect("valid"), "cancelled", None),
        Outcome::Unavailable { reason, retry_after } => {
            let status = match reason {
                Unavailable::WorkerLost(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, &reason.to_string(), Some(retry_after))
        }
        Outcome::NotFound(NotFound::Method) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None)
        }
        Outcome::NotFound(what) => error(StatusCode::NOT_FOUND, &what.to_string(), None),
    }
}

fn completed(done: Completed) -> HttpResponse {
    let Some(http) = done.http else {
        // No HTTP output binding value: the return value (if any) is the body.
        let (body, content_type) = body_of(done.return_value.as_ref());
        return response(StatusCode::OK, BTreeMap::new(), body, content_type);
    };
    let status = match http.status_code.trim() {
        "" => StatusCode::OK,
        code => match code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
            Some(status) => status,
            None => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!("the function returned status {code:?}"),
                    None,
                );
            }
        },
    };
    let (body, content_type) = body_of(http.body.as_deref());
    response(status, http.headers, body, content_type)
}

/// A response body and its default content type.
fn body_of(data: Option<&TypedData>) -> (Bytes, Option<&'static str>) {
    match data.and_then(|d| d.data.as_ref()) {
        Some(Data::Bytes(b) | Data::Stream(b)) => (b.clone(), None),
        Some(Data::String(s)) => (Bytes::from(s.clone()), Some("text/plain; charset=utf-8")),
        Some(Data::Json(s)) => (Bytes::from(s.clone()), Some("application/json")),
        Some(Data::Int(i)) => (Bytes::from(i.to_string()), Some("text/plain; charset=utf-8")),
        Some(Data::Double(d)) => (Bytes::from(d.to_string()), Some("text/plain; charset=utf-8")),
        _ => (Bytes::new(), None),
    }
}

fn response(
    status: StatusCode,
    headers: BTreeMap<String, String>,
    body: Bytes,
    default_type: Option<&'static str>,
) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let map = resp.headers_mut();
    for (name, value) in headers {
        // Workers keep the case a function used; HTTP header names are case-insensitive.
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            tracing::debug!(header = %name, "dropping a response header that is not valid HTTP");
            continue;
        };
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue; // framing is ours
        }
        map.append(name, value);
    }
    if let Some(ct) = default_type
        && !map.contains_key(header::CONTENT_TYPE)
    {
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

fn json(status: StatusCode, body: &serde_json::Value, retry_after: Option<Duration>) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(after) = retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

/// A JSON error response: `{"error": message}`.
pub fn error(status: StatusCode, message: &str, retry_after: Option<Duration>) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message }), retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_app_segment() {
        assert_eq!(split_app("/hello/api/x/y"), Some(("hello", "api/x/y")));
        assert_eq!(split_app("/hello"), Some(("hello", "")));
        assert_eq!(split_app("/"), None);
        assert_eq!(split_app("//api"), None);
    }

    #[test]
    fn request_maps_to_rpc_http() {
        let req = Request::builder()
            .method("POST")
            .uri("/app/api/items/7?a=1&a=2&b=%20x")
            .header("Host", "example")
            .header("X-Thing", "one")
            .header("x-thing", "two")
            .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let (http, trace) = to_rpc_http(&parts, Bytes::from_static(b"{}"));
        assert_eq!(http.method, "POST");
        assert_eq!(http.url, "http://example/app/api/items/7?a=1&a=2&b=%20x");
        assert_eq!(http.headers["x-thing"], "one, two");
        assert_eq!(http.query["a"], "1,2");
        assert_eq!(http.query["b"], " x");
        assert!(trace.unwrap().trace_parent.starts_with("00-0af7"));
    }

    #[test]
    fn only_well_formed_traceparents_are_passed_on() {
        let parse = |tp: &str, state: &[&str]| {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", tp.parse().unwrap());
            for s in state {
                headers.append("tracestate", s.parse().unwrap());
            }
            trace_context(&headers)
        };
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let t = parse(good, &["a=1", "b=2"]).expect("valid");
        assert_eq!((t.trace_parent.as_str(), t.trace_state.as_str()), (good, "a=1,b=2"));
        assert!(parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", &[]).is_some());
        for bad in [
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "garbage",
        ] {
            assert!(parse(bad, &[]).is_none(), "{bad}");
        }
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let http = RpcHttp {
            status_code: "201".into(),
            headers: BTreeMap::from([("X-App".into(), "a".into())]),
            body: Some(Box::new(TypedData { data: Some(Data::Bytes(Bytes::from_static(b"made"))) })),
            ..Default::default()
        };
        let resp =
            to_response(Outcome::Completed(Box::new(Completed { http: Some(http), ..Default::default() })));
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-app"], "a");
        let resp = to_response(Outcome::Timeout);
        assert_eq!(resp.status(), 504);
        let resp = to_response(Outcome::Unavailable {
            reason: Unavailable::WorkerLost("killed".into()),
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["retry-after"], "2");
        let resp = to_response(Outcome::Unavailable {
            reason: Unavailable::NoWorker,
            retry_after: Duration::from_secs(1),
        });
        assert_eq!(resp.status(), 503);
        assert_eq!(to_response(Outcome::NotFound(NotFound::App)).status(), 404);
    }
}
