//! Helpers for tests of the core and of code built on it (simulation, fuzzing): sample apps
//! and message builders that speak like the real Python worker.

use std::collections::BTreeMap;
use std::time::Instant;

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    FunctionEnvironmentReloadResponse, FunctionLoadResponse, InvocationResponse, RpcException, RpcHttp,
    StartStream, StatusResult, StreamingMessage, TypedData, WorkerInitResponse, status_result,
    typed_data::Data,
};

use crate::app::{AppFiles, AppOptions, AppSpec, FunctionFiles, ScaleSpec, parse_app};

/// An arbitrary origin for virtual time. Only offsets from it matter to the core, so reading
/// the clock once here does not make tests nondeterministic.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

/// An HTTP function's function.json.
pub fn http_function_json(route: Option<&str>, methods: &[&str]) -> String {
    let route = route.map(|r| format!(r#","route":"{r}""#)).unwrap_or_default();
    let methods = methods.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(",");
    format!(
        r#"{{"scriptFile":"__init__.py","bindings":[
            {{"authLevel":"anonymous","type":"httpTrigger","direction":"in","name":"req","methods":[{methods}]{route}}},
            {{"type":"http","direction":"out","name":"$return"}}]}}"#
    )
}

/// A Python app in `/apps/<name>` with HTTP functions named `fns` (route = name, GET/POST),
/// the given settings and scale.
pub fn sample_app(name: &str, fns: &[&str], settings: &[(&str, &str)], scale: ScaleSpec) -> AppSpec {
    let files = AppFiles {
        directory: format!("/apps/{name}"),
        host_json: Some(r#"{"version":"2.0"}"#.into()),
        local_settings: Some(r#"{"Values":{"FUNCTIONS_WORKER_RUNTIME":"python"}}"#.into()),
        functions: fns
            .iter()
            .map(|f| FunctionFiles {
                name: (*f).to_owned(),
                function_json: http_function_json(None, &["get", "post"]),
                files: vec!["__init__.py".into()],
            })
            .collect(),
    };
    let options = AppOptions {
        settings: settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        scale: Some(scale),
        ..AppOptions::default()
    };
    parse_app(&files, &options).expect("sample apps are valid")
}

/// A message with this content.
pub fn msg(content: Content) -> Box<StreamingMessage> {
    Box::new(StreamingMessage { request_id: "worker-request".into(), content: Some(content) })
}

/// `StartStream`.
pub fn start_stream(worker_id: &str) -> Box<StreamingMessage> {
    msg(Content::StartStream(StartStream { worker_id: worker_id.into() }))
}

/// A successful status.
pub fn ok() -> Option<StatusResult> {
    Some(StatusResult { status: status_result::Status::Success as i32, ..Default::default() })
}

/// A failed status with this message.
pub fn failed(message: &str) -> Option<StatusResult> {
    Some(StatusResult {
        status: status_result::Status::Failure as i32,
        exception: Some(RpcException { message: message.into(), ..Default::default() }),
        ..Default::default()
    })
}

/// The real Python worker 1.1.9's capabilities.
pub fn python_capabilities() -> BTreeMap<String, String> {
    ["RawHttpBodyBytes", "TypedDataCollection", "RpcHttpBodyOnly", "RpcHttpTriggerMetadataRemoved"]
        .into_iter()
        .map(|k| (k.to_owned(), "true".to_owned()))
        .collect()
}

/// `WorkerInitResponse` with these capabilities.
pub fn init_response(capabilities: BTreeMap<String, String>) -> Box<StreamingMessage> {
    msg(Content::WorkerInitResponse(WorkerInitResponse { capabilities, result: ok(), ..Default::default() }))
}

/// A successful `FunctionEnvironmentReloadResponse`.
pub fn env_reload_ok() -> Box<StreamingMessage> {
    msg(Content::FunctionEnvironmentReloadResponse(FunctionEnvironmentReloadResponse {
        result: ok(),
        ..Default::default()
    }))
}

/// A `FunctionLoadResponse`.
pub fn load_response(function_id: &str, result: Option<StatusResult>) -> Box<StreamingMessage> {
    msg(Content::FunctionLoadResponse(FunctionLoadResponse {
        function_id: function_id.into(),
        result,
        is_dependency_downloaded: false,
    }))
}

/// A successful HTTP invocation response with this status and body.
pub fn http_response(invocation_id: &str, status: u16, body: &str) -> Box<StreamingMessage> {
    let http = RpcHttp {
        status_code: status.to_string(),
        body: Some(Box::new(TypedData { data: Some(Data::Bytes(body.to_owned().into())) })),
        ..Default::default()
    };
    msg(Content::InvocationResponse(InvocationResponse {
        invocation_id: invocation_id.into(),
        return_value: Some(TypedData { data: Some(Data::Http(Box::new(http))) }),
        result: ok(),
        ..Default::default()
    }))
}

/// A failed invocation response.
pub fn error_response(invocation_id: &str, message: &str) -> Box<StreamingMessage> {
    msg(Content::InvocationResponse(InvocationResponse {
        invocation_id: invocation_id.into(),
        result: failed(message),
        ..Default::default()
    }))
}

/// A GET request for the front door.
pub fn get(url: &str) -> Box<RpcHttp> {
    Box::new(RpcHttp { method: "GET".into(), url: url.into(), ..Default::default() })
}
