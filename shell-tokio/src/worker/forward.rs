//! The Azure Functions custom-handler protocol: each invocation becomes an HTTP request to the
//! handler, its answer an `InvocationResponse`.
//!
//! - Default format: `POST /<function name>` with JSON `{"Data": {...}, "Metadata": {...}}`.
//!   `Data` holds each input binding by name; an HTTP trigger's value is
//!   `{"Url", "Method", "Query", "Headers", "Params", "Body", "Identities"}` (`Headers` maps a
//!   name to a list of values, `Body` is text). `Metadata` holds the trigger metadata plus
//!   `sys: {MethodName, UtcNow, RandGuid}`. The handler answers 2xx with JSON
//!   `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`; an `http` output's value is
//!   `{"statusCode", "body", "headers"}`; a `$return` output takes `ReturnValue`; each log line
//!   becomes an `RpcLog`. Keys are matched case-insensitively, as the Azure host does. A non-2xx
//!   answer fails the invocation.
//! - `enableForwardingHttpRequest` with an HTTP-only function (an HTTP trigger and only HTTP
//!   outputs): the original request is sent as it came (method, headers, query, body) to
//!   `/<routePrefix>/<route>` with the route's parameters filled in, and the raw response is the
//!   function's HTTP output, whatever its status.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use switchboard_core::app::{RouteSegment, RouteTemplate, parse_route};
use switchboard_proto::rpc::{
    InvocationRequest, InvocationResponse, ParameterBinding, RpcException, RpcFunctionMetadata, RpcHttp,
    RpcLog, StatusResult, TypedData, binding_info, parameter_binding::RpcData, rpc_log, status_result,
    typed_data::Data,
};

use super::handler::{AppConfig, Handler};

/// The HTTP client to handlers (HTTP/1.1, pooled connections, `TCP_NODELAY`).
pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A fresh client.
pub(super) fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
}

/// An output binding.
#[derive(Debug, Clone)]
struct Output {
    name: String,
    http: bool,
}

/// A loaded function: what its invocations need to know of its bindings.
#[derive(Debug, Clone)]
pub(super) struct Function {
    name: String,
    outputs: Vec<Output>,
    /// `Some(path template)` when its requests are forwarded as they came.
    forward: Option<Forward>,
}

#[derive(Debug, Clone)]
struct Forward {
    prefix: String,
    route: RouteTemplate,
    /// The HTTP output binding (`$return` or a name).
    output: String,
}

impl Function {
    /// Reads a `FunctionLoadRequest`'s metadata against the app's host.json.
    pub(super) fn new(meta: &RpcFunctionMetadata, app: &AppConfig) -> Result<Function, String> {
        if meta.name.is_empty() {
            return Err("function metadata without a name".into());
        }
        let mut trigger = None;
        let mut outputs = Vec::new();
        let mut only_http = true;
        for (name, b) in &meta.bindings {
            let out = b.direction != binding_info::Direction::In as i32;
            let kind = b.r#type.to_ascii_lowercase();
            if kind.ends_with("trigger") {
                trigger = Some((name.clone(), kind.clone()));
            } else if !(out && kind == "http") {
                only_http = false;
            }
            if out {
                outputs.push(Output { name: name.clone(), http: kind == "http" });
            }
        }
        let http_trigger = trigger.as_ref().is_some_and(|(_, kind)| kind == "httptrigger");
        let http_output = outputs.iter().find(|o| o.http).map(|o| o.name.clone());
        let forward =
            match (app.handler.enable_forwarding_http_request && http_trigger && only_http, http_output) {
                (true, Some(output)) => {
                    let trigger_name = trigger.as_ref().map(|(n, _)| n.as_str()).unwrap_or_default();
                    let template = route_of(meta, trigger_name).unwrap_or_else(|| meta.name.clone());
                    let route = parse_route(&template).map_err(|e| e.to_string())?;
                    Some(Forward { prefix: app.route_prefix.clone(), route, output })
                }
                _ => None,
            };
        Ok(Function { name: meta.name.clone(), outputs, forward })
    }

    /// Whether requests are forwarded as they came (`enableForwardingHttpRequest`).
    pub(super) fn forwards(&self) -> bool {
        self.forward.is_some()
    }
}

/// The trigger binding's `route` from the raw function.json bindings.
fn route_of(meta: &RpcFunctionMetadata, trigger: &str) -> Option<String> {
    meta.raw_bindings.iter().find_map(|raw| {
        let v: Value = serde_json::from_str(raw).ok()?;
        let o = v.as_object()?;
        let name = get_ci(o, "name")?.as_str()?;
        if !name.eq_ignore_ascii_case(trigger) {
            return None;
        }
        get_ci(o, "route")?.as_str().map(str::to_owned)
    })
}

/// What an invocation produced.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) response: InvocationResponse,
    pub(super) logs: Vec<RpcLog>,
}

/// How long an invocation waits for a restarting handler.
const READY_WAIT: Duration = Duration::from_secs(30);

/// Runs one invocation on the handler.
pub(super) async fn invoke(
    client: &HttpClient,
    handler: &Handler,
    f: &Function,
    req: InvocationRequest,
) -> Done {
    let invocation_id = req.invocation_id.clone();
    let result = match &f.forward {
        Some(fwd) => {
            forward_raw(client, handler, fwd, req).await.map(|http| (http_output(fwd, http), Vec::new()))
        }
        None => forward_json(client, handler, f, req).await,
    };
    match result {
        Ok(((output_data, return_value), logs)) => {
            let logs = logs.into_iter().map(|message| log(&invocation_id, &f.name, message)).collect();
            let response = InvocationResponse {
                invocation_id,
                output_data,
                return_value,
                result: Some(StatusResult {
                    status: status_result::Status::Success as i32,
                    ..Default::default()
                }),
            };
            Done { response, logs }
        }
        Err(message) => Done { response: failure(invocation_id, message), logs: Vec::new() },
    }
}

/// A failed invocation.
pub(super) fn failure(invocation_id: String, message: String) -> InvocationResponse {
    InvocationResponse {
        invocation_id,
        result: Some(StatusResult {
            status: status_result::Status::Failure as i32,
            exception: Some(RpcException { message, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A cancelled invocation.
pub(super) fn cancelled(invocation_id: String) -> InvocationResponse {
    InvocationResponse {
        invocation_id,
        result: Some(StatusResult { status: status_result::Status::Cancelled as i32, ..Default::default() }),
        ..Default::default()
    }
}

type Outputs = (Vec<ParameterBinding>, Option<TypedData>);

fn http_output(fwd: &Forward, http: RpcHttp) -> Outputs {
    let data = TypedData { data: Some(Data::Http(Box::new(http))) };
    if fwd.output == "$return" {
        (Vec::new(), Some(data))
    } else {
        (vec![ParameterBinding { name: fwd.output.clone(), rpc_data: Some(RpcData::Data(data)) }], None)
    }
}

fn log(invocation_id: &str, function: &str, message: String) -> RpcLog {
    RpcLog {
        invocation_id: invocation_id.to_owned(),
        category: format!("Function.{function}.User"),
        level: rpc_log::Level::Information as i32,
        message,
        log_category: rpc_log::RpcLogCategory::User as i32,
        ..Default::default()
    }
}

/// Sends a request to the handler and reads the whole answer; a transport failure names what
/// became of the handler process.
async fn send(
    client: &HttpClient,
    handler: &Handler,
    build: impl FnOnce(u16) -> Result<Request<Full<Bytes>>, String>,
) -> Result<(http::response::Parts, Bytes), String> {
    let ready = handler.ready(READY_WAIT).await?;
    let request = build(ready.port)?;
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => return Err(transport_error(handler, ready.run, super::client::error_chain(&e)).await),
    };
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(body) => Ok((parts, body.to_bytes())),
        Err(e) => Err(transport_error(handler, ready.run, super::client::error_chain(&e)).await),
    }
}

async fn transport_error(handler: &Handler, run: u64, error: String) -> String {
    match handler.ended_soon(run, Duration::from_millis(250)).await {
        Some(how) => format!("the custom handler process ended while running this invocation ({how})"),
        None => format!("the custom handler did not answer: {error}"),
    }
}

// ---- the default format ----

async fn forward_json(
    client: &HttpClient,
    handler: &Handler,
    f: &Function,
    req: InvocationRequest,
) -> Result<(Outputs, Vec<String>), String> {
    let payload = request_payload(&f.name, &req);
    let body = Bytes::from(serde_json::to_vec(&payload).map_err(|e| e.to_string())?);
    let path = format!("/{}", f.name);
    let (parts, body) = send(client, handler, |port| {
        Request::builder()
            .method(Method::POST)
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header(HOST, format!("127.0.0.1:{port}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())
    })
    .await?;
    if !parts.status.is_success() {
        return Err(format!("the custom handler answered {}: {}", parts.status, excerpt(&body)));
    }
    parse_response(f, &body)
}

/// `{"Data": {...}, "Metadata": {...}}`.
fn request_payload(function: &str, req: &InvocationRequest) -> Value {
    let mut data = Map::new();
    for binding in &req.input_data {
        if let Some(RpcData::Data(d)) = &binding.rpc_data {
            data.insert(binding.name.clone(), typed_to_json(d));
        }
    }
    let mut metadata: Map<String, Value> =
        req.trigger_metadata.iter().map(|(k, v)| (k.clone(), typed_to_json(v))).collect();
    metadata
        .insert("sys".into(), json!({"MethodName": function, "UtcNow": utc_now(), "RandGuid": rand_guid()}));
    json!({"Data": data, "Metadata": metadata})
}

/// Reads `{"Outputs", "Logs", "ReturnValue"}`.
fn parse_response(f: &Function, body: &[u8]) -> Result<(Outputs, Vec<String>), String> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body)
            .map_err(|e| format!("the custom handler's answer is not JSON ({e}): {}", excerpt(body)))?
    };
    let Some(top) = value.as_object() else {
        return Err(format!("the custom handler's answer is not a JSON object: {}", excerpt(body)));
    };
    let outputs = get_ci(top, "Outputs").and_then(Value::as_object);
    let return_value = get_ci(top, "ReturnValue").filter(|v| !v.is_null());
    let logs = match get_ci(top, "Logs") {
        Some(Value::Array(lines)) => lines.iter().map(text).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![text(other)],
    };
    let mut output_data = Vec::new();
    let mut ret = None;
    for out in &f.outputs {
        let value = if out.name == "$return" {
            return_value.or_else(|| outputs.and_then(|o| get_ci(o, "$return")))
        } else {
            outputs.and_then(|o| get_ci(o, &out.name))
        };
        let Some(value) = value else { continue };
        let data = if out.http {
            TypedData { data: Some(Data::Http(Box::new(http_from_json(value)))) }
        } else {
            typed_from_json(value)
        };
        if out.name == "$return" {
            ret = Some(data);
        } else {
            output_data
                .push(ParameterBinding { name: out.name.clone(), rpc_data: Some(RpcData::Data(data)) });
        }
    }
    if ret.is_none()
        && let Some(value) = return_value
    {
        ret = Some(typed_from_json(value));
    }
    Ok(((output_data, ret), logs))
}

/// An `http` output: `{"statusCode", "body", "headers"}` (anything else is a 200 body).
fn http_from_json(value: &Value) -> RpcHttp {
    let Some(o) = value.as_object() else {
        return RpcHttp {
            status_code: "200".into(),
            body: Some(Box::new(bytes(body_bytes(value)))),
            ..Default::default()
        };
    };
    let status_code = match get_ci(o, "statusCode").or_else(|| get_ci(o, "status")) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => "200".into(),
    };
    let mut headers: BTreeMap<String, String> = match get_ci(o, "headers") {
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Array(vs) => vs.iter().map(text).collect::<Vec<_>>().join(", "),
                    other => text(other),
                };
                (k.clone(), v)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let body = get_ci(o, "body").unwrap_or(&Value::Null);
    if !matches!(body, Value::String(_) | Value::Null)
        && !headers.keys().any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        headers.insert("content-type".into(), "application/json".into());
    }
    RpcHttp { status_code, headers, body: Some(Box::new(bytes(body_bytes(body)))), ..Default::default() }
}

fn body_bytes(v: &Value) -> Bytes {
    match v {
        Value::Null => Bytes::new(),
        Value::String(s) => Bytes::from(s.clone()),
        other => Bytes::from(other.to_string()),
    }
}

fn bytes(b: Bytes) -> TypedData {
    TypedData { data: Some(Data::Bytes(b)) }
}

/// A non-HTTP output: text stays text, anything else is JSON.
fn typed_from_json(value: &Value) -> TypedData {
    match value {
        Value::String(s) => TypedData { data: Some(Data::String(s.clone())) },
        other => TypedData { data: Some(Data::Json(other.to_string())) },
    }
}

/// An input or metadata value as the handler sees it.
fn typed_to_json(d: &TypedData) -> Value {
    match &d.data {
        None => Value::Null,
        Some(Data::String(s)) => Value::String(s.clone()),
        Some(Data::Json(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(Data::Bytes(b) | Data::Stream(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Some(Data::Http(h)) => http_request_json(h),
        Some(Data::Int(i)) => json!(i),
        Some(Data::Double(x)) => json!(x),
        Some(Data::CollectionString(c)) => json!(c.string),
        Some(Data::CollectionDouble(c)) => json!(c.double),
        Some(Data::CollectionSint64(c)) => json!(c.sint64),
        Some(Data::CollectionBytes(c)) => Value::Array(
            c.bytes.iter().map(|b| Value::String(String::from_utf8_lossy(b).into_owned())).collect(),
        ),
        Some(_) => Value::Null,
    }
}

/// An HTTP trigger's request, in the custom-handler shape.
fn http_request_json(h: &RpcHttp) -> Value {
    let headers: Map<String, Value> = h.headers.iter().map(|(k, v)| (k.clone(), json!([v]))).collect();
    let body = match h.body.as_ref().and_then(|b| b.data.as_ref()) {
        Some(Data::String(s) | Data::Json(s)) => s.clone(),
        Some(Data::Bytes(b) | Data::Stream(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    json!({
        "Url": h.url,
        "Method": h.method,
        "Query": h.query,
        "Headers": headers,
        "Params": h.params,
        "Body": body,
        "Identities": [],
    })
}

// ---- enableForwardingHttpRequest ----

async fn forward_raw(
    client: &HttpClient,
    handler: &Handler,
    fwd: &Forward,
    req: InvocationRequest,
) -> Result<RpcHttp, String> {
    let http = req
        .input_data
        .into_iter()
        .find_map(|b| match b.rpc_data {
            Some(RpcData::Data(TypedData { data: Some(Data::Http(h)) })) => Some(h),
            _ => None,
        })
        .ok_or("no HTTP request in the invocation")?;
    let path_and_query = {
        let mut p = path_of(fwd, &http.params);
        match http.url.split_once('?') {
            Some((_, q)) if !q.is_empty() => {
                p.push('?');
                p.push_str(q);
            }
            Some(_) => {}
            None if !http.query.is_empty() => {
                let q: Vec<String> =
                    http.query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
                p.push('?');
                p.push_str(&q.join("&"));
            }
            None => {}
        }
        p
    };
    let body = match http.body.as_ref().and_then(|b| b.data.as_ref()) {
        Some(Data::Bytes(b) | Data::Stream(b)) => b.clone(),
        Some(Data::String(s) | Data::Json(s)) => Bytes::from(s.clone()),
        _ => Bytes::new(),
    };
    let method =
        Method::from_bytes(http.method.as_bytes()).map_err(|_| format!("bad method {:?}", http.method))?;
    let headers = http.headers;
    let (parts, body) = send(client, handler, |port| {
        let mut builder =
            Request::builder().method(method).uri(format!("http://127.0.0.1:{port}{path_and_query}"));
        for (k, v) in &headers {
            if HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()) {
                continue;
            }
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                builder = builder.header(k, v);
            }
        }
        builder = builder.header(HOST, format!("127.0.0.1:{port}"));
        builder.body(Full::new(body)).map_err(|e| e.to_string())
    })
    .await?;
    let mut out_headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name) || name == "content-length" {
            continue;
        }
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out_headers
            .entry(name.to_owned())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    Ok(RpcHttp {
        status_code: parts.status.as_u16().to_string(),
        headers: out_headers,
        body: Some(Box::new(bytes(body))),
        ..Default::default()
    })
}

/// Headers that belong to one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"];

/// `/<prefix>/<route>` with the route's parameters filled in.
fn path_of(fwd: &Forward, params: &BTreeMap<String, String>) -> String {
    let param =
        |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let mut parts: Vec<String> = fwd.prefix.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    for seg in &fwd.route.segments {
        match seg {
            RouteSegment::Literal(text) => parts.push(text.clone()),
            RouteSegment::Param { name, .. } => {
                if let Some(v) = param(name).filter(|v| !v.is_empty()) {
                    parts.push(encode(v));
                }
            }
            RouteSegment::CatchAll(name) => {
                if let Some(v) = param(name) {
                    parts.extend(v.split('/').filter(|s| !s.is_empty()).map(encode));
                }
            }
        }
    }
    format!("/{}", parts.join("/"))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- small helpers ----

/// A key looked up ASCII case-insensitively (exact match first).
fn get_ci<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// Now as RFC 3339 UTC with milliseconds.
fn utc_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A random UUID (version 4).
fn rand_guid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchboard_core::app::CustomHandler;
    use switchboard_proto::rpc::BindingInfo;

    use super::*;

    fn app(forwarding: bool) -> AppConfig {
        AppConfig {
            handler: CustomHandler {
                default_executable_path: "handler".into(),
                enable_forwarding_http_request: forwarding,
                ..Default::default()
            },
            route_prefix: "api".into(),
        }
    }

    fn binding(kind: &str, direction: binding_info::Direction) -> BindingInfo {
        BindingInfo { r#type: kind.into(), direction: direction as i32, ..Default::default() }
    }

    fn http_function(out: &str, route: Option<&str>) -> RpcFunctionMetadata {
        let route = route.map(|r| format!(r#","route":"{r}""#)).unwrap_or_default();
        RpcFunctionMetadata {
            name: "items".into(),
            bindings: BTreeMap::from([
                ("req".into(), binding("httpTrigger", binding_info::Direction::In)),
                (out.into(), binding("http", binding_info::Direction::Out)),
            ]),
            raw_bindings: vec![format!(r#"{{"type":"httpTrigger","direction":"in","name":"req"{route}}}"#)],
            ..Default::default()
        }
    }

    #[test]
    fn the_request_payload_has_data_and_metadata_in_the_azure_shape() {
        let http = RpcHttp {
            method: "POST".into(),
            url: "http://h/app/api/items/7?a=1".into(),
            headers: BTreeMap::from([("x-k".into(), "v".into())]),
            query: BTreeMap::from([("a".into(), "1".into())]),
            params: BTreeMap::from([("id".into(), "7".into())]),
            body: Some(Box::new(bytes(Bytes::from_static(b"{\"n\":1}")))),
            ..Default::default()
        };
        let req = InvocationRequest {
            invocation_id: "i".into(),
            input_data: vec![ParameterBinding {
                name: "req".into(),
                rpc_data: Some(RpcData::Data(TypedData { data: Some(Data::Http(Box::new(http))) })),
            }],
            ..Default::default()
        };
        let p = request_payload("items", &req);
        assert_eq!(
            p["Data"]["req"],
            json!({"Url": "http://h/app/api/items/7?a=1", "Method": "POST", "Query": {"a": "1"},
                   "Headers": {"x-k": ["v"]}, "Params": {"id": "7"}, "Body": "{\"n\":1}", "Identities": []})
        );
        assert_eq!(p["Metadata"]["sys"]["MethodName"], "items");
        let now = p["Metadata"]["sys"]["UtcNow"].as_str().unwrap();
        assert!(now.len() == 24 && now.ends_with('Z') && now.starts_with("20"), "{now}");
        assert_eq!(p["Metadata"]["sys"]["RandGuid"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn outputs_logs_and_return_value_map_onto_the_response() {
        let f = Function::new(&http_function("res", None), &app(false)).unwrap();
        let body = br#"{"outputs": {"RES": {"statusCode": 201, "body": {"ok": true}, "headers": {"x-a": ["1", "2"]}}},
                        "Logs": ["one", 2], "ReturnValue": "r"}"#;
        let ((out, ret), logs) = parse_response(&f, body).unwrap();
        assert_eq!(logs, vec!["one", "2"]);
        assert_eq!(out.len(), 1);
        let Some(RpcData::Data(TypedData { data: Some(Data::Http(h)) })) = &out[0].rpc_data else {
            panic!("{out:?}")
        };
        assert_eq!(h.status_code, "201");
        assert_eq!(h.headers["x-a"], "1, 2");
        assert_eq!(h.headers["content-type"], "application/json");
        assert!(matches!(h.body.as_ref().unwrap().data, Some(Data::Bytes(ref b)) if b == "{\"ok\":true}"));
        assert!(matches!(ret, Some(TypedData { data: Some(Data::String(ref s)) }) if s == "r"));
        let f = Function::new(&http_function("$return", None), &app(false)).unwrap();
        let ((out, ret), _) =
            parse_response(&f, br#"{"ReturnValue": {"status": "404", "body": "no"}}"#).unwrap();
        assert!(out.is_empty());
        let Some(TypedData { data: Some(Data::Http(h)) }) = ret else { panic!() };
        assert_eq!(h.status_code, "404");
        assert!(parse_response(&f, b"<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn forwarding_applies_to_http_only_functions_and_fills_the_route() {
        let f = Function::new(&http_function("res", Some("items/{id:int}/{*rest}")), &app(true)).unwrap();
        let fwd = f.forward.as_ref().expect("http-only: forwarded");
        let params = BTreeMap::from([("id".into(), "7".into()), ("rest".into(), "a b/c".into())]);
        assert_eq!(path_of(fwd, &params), "/api/items/7/a%20b/c");
        let f = Function::new(&http_function("res", None), &app(false)).unwrap();
        assert!(!f.forwards(), "not enabled");
        let mut meta = http_function("res", None);
        meta.bindings.insert("queue".into(), binding("queue", binding_info::Direction::Out));
        assert!(!Function::new(&meta, &app(true)).unwrap().forwards(), "another binding: default format");
        let f = Function::new(&http_function("$return", None), &app(true)).unwrap();
        assert_eq!(path_of(f.forward.as_ref().unwrap(), &BTreeMap::new()), "/api/items");
    }
}
