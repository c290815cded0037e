//! The simulated apps and what travels through them.
//!
//! Every call carries a tag (`call=17;ms=250;fail=0`) in an HTTP header or in its queue
//! message. The simulated workers read it to know how long to run and whether to raise, and
//! echo `call=17 app=alpha` in their answer, so the observer can tell that the answer a caller
//! got is the answer to *its* call, from a worker of *its* app.

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_core::app::{AppFiles, AppOptions, AppSpec, FunctionFiles, ScaleSpec, parse_app};
use switchboard_core::proto::rpc::{
    InvocationRequest, InvocationResponse, RpcException, RpcHttp, StatusResult, TypedData, parameter_binding,
    status_result, typed_data::Data,
};
use switchboard_core::testkit::http_function_json;
use switchboard_core::{CallId, Outcome};

/// Functions of every simulated app: `f` (HTTP), `g` (HTTP, retried when its worker is lost),
/// `q` (queue trigger, retried on failure too), `off` (disabled).
pub const FUNCTIONS: [&str; 3] = ["f", "g", "q"];

/// The app's secret setting: only workers specialized for it may ever see it.
pub fn secret_key(app: &str) -> String {
    format!("SECRET_{app}")
}

/// The secret's value.
pub fn secret_value(app: &str) -> String {
    format!("s-{app}")
}

/// The setting that makes a worker's environment reload fail (a broken app).
pub const BROKEN: &str = "SIM_BROKEN";

/// The app's folder.
pub fn app_dir(app: &str) -> String {
    format!("/apps/{app}")
}

/// The app named by a folder, if it is one of ours.
pub fn app_of_dir(dir: &str) -> Option<&str> {
    dir.strip_prefix("/apps/").map(|rest| rest.split('/').next().unwrap_or(rest))
}

/// Builds the app's spec from function.json texts, as the shell would from its folder.
pub fn app_spec(
    name: &str,
    language: &str,
    scale: ScaleSpec,
    function_timeout: Duration,
    broken: bool,
) -> AppSpec {
    let http_with_retry = http_function_json(None, &["get", "post"]).replacen(
        '{',
        r#"{"retry": {"strategy": "fixedDelay", "maxRetryCount": 2, "delayInterval": "00:00:00.200"}, "#,
        1,
    );
    let queue = r#"{"scriptFile": "__init__.py",
        "retry": {"strategy": "exponentialBackoff", "maxRetryCount": 3,
                  "minimumInterval": "00:00:00.100", "maximumInterval": "00:00:01"},
        "bindings": [{"type": "queueTrigger", "direction": "in", "name": "msg", "queueName": "q"}]}"#;
    let disabled = http_function_json(None, &["get"]).replacen('{', r#"{"disabled": true, "#, 1);
    let function = |name: &str, json: String| FunctionFiles {
        name: name.to_owned(),
        function_json: json,
        files: vec!["__init__.py".into()],
    };
    let files = AppFiles {
        directory: app_dir(name),
        host_json: Some(if language == "custom" {
            r#"{"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": "handler"}}}"#
                .into()
        } else {
            r#"{"version": "2.0"}"#.into()
        }),
        local_settings: None,
        functions: vec![
            function("f", http_function_json(None, &["get", "post"])),
            function("g", http_with_retry),
            function("q", queue.to_owned()),
            function("off", disabled),
        ],
    };
    let mut settings = BTreeMap::from([(secret_key(name), secret_value(name))]);
    if broken {
        settings.insert(BROKEN.into(), "1".into());
    }
    let options = AppOptions {
        language: Some(language.to_owned()),
        settings,
        scale: Some(scale),
        function_timeout: Some(function_timeout),
        ..AppOptions::default()
    };
    parse_app(&files, &options).expect("the simulated apps are valid")
}

/// What a call asks of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The caller.
    pub call: u64,
    /// How long the function runs.
    pub run_ms: u64,
    /// Whether it raises.
    pub fail: bool,
}

impl Tag {
    /// The tag as text.
    pub fn encode(&self) -> String {
        format!("call={};ms={};fail={}", self.call, self.run_ms, u8::from(self.fail))
    }

    /// Parses [`Tag::encode`]'s text.
    pub fn decode(text: &str) -> Option<Tag> {
        let mut call = None;
        let mut run_ms = None;
        let mut fail = None;
        for part in text.split(';') {
            let (k, v) = part.split_once('=')?;
            match k {
                "call" => call = v.parse().ok(),
                "ms" => run_ms = v.parse().ok(),
                "fail" => fail = Some(v == "1"),
                _ => return None,
            }
        }
        Some(Tag { call: call?, run_ms: run_ms?, fail: fail? })
    }

    /// The tag an invocation request carries, if any.
    pub fn of_request(req: &InvocationRequest) -> Option<Tag> {
        let binding = req.input_data.first()?;
        let Some(parameter_binding::RpcData::Data(data)) = &binding.rpc_data else { return None };
        match data.data.as_ref()? {
            Data::Http(http) => Tag::decode(http.headers.get("x-sim")?),
            Data::Json(s) | Data::String(s) => Tag::decode(s),
            _ => None,
        }
    }
}

/// The HTTP request of a call with this tag.
pub fn http_request(app: &str, function: &str, tag: Tag) -> Box<RpcHttp> {
    Box::new(RpcHttp {
        method: "GET".into(),
        url: format!("http://front-door/{app}/api/{function}"),
        headers: BTreeMap::from([("x-sim".to_owned(), tag.encode())]),
        ..Default::default()
    })
}

/// How a simulated function answers: it echoes its call and the app it runs in.
pub fn answer(req: &InvocationRequest, tag: Option<Tag>, app: &str, worker: &str) -> InvocationResponse {
    let call = tag.map_or_else(|| "?".to_owned(), |t| t.call.to_string());
    if tag.is_some_and(|t| t.fail) {
        return InvocationResponse {
            invocation_id: req.invocation_id.clone(),
            result: Some(StatusResult {
                status: status_result::Status::Failure as i32,
                exception: Some(RpcException {
                    message: format!("raised call={call}"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    let text = format!("call={call} app={app} worker={worker}");
    let is_http = req.input_data.first().is_some_and(|b| {
        matches!(&b.rpc_data, Some(parameter_binding::RpcData::Data(TypedData { data: Some(Data::Http(_)) })))
    });
    let return_value = if is_http {
        let http = RpcHttp {
            status_code: "200".into(),
            body: Some(Box::new(TypedData { data: Some(Data::Bytes(text.into())) })),
            ..Default::default()
        };
        TypedData { data: Some(Data::Http(Box::new(http))) }
    } else {
        TypedData { data: Some(Data::String(text)) }
    };
    InvocationResponse {
        invocation_id: req.invocation_id.clone(),
        return_value: Some(return_value),
        result: Some(StatusResult { status: status_result::Status::Success as i32, ..Default::default() }),
        ..Default::default()
    }
}

/// The text a completed call's answer carries (HTTP body or return value).
pub fn answer_text(outcome: &Outcome) -> Option<String> {
    let Outcome::Completed(done) = outcome else { return None };
    let data = match &done.http {
        Some(http) => http.body.as_ref()?.data.as_ref()?,
        None => done.return_value.as_ref()?.data.as_ref()?,
    };
    match data {
        Data::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Data::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Checks that an answer names this call and app: `call=17 app=alpha worker=...`.
pub fn check_answer(text: &str, call: CallId, app: &str) -> Result<(), String> {
    let mut parts = text.split(' ');
    let want_call = format!("call={}", call.0);
    let want_app = format!("app={app}");
    match (parts.next(), parts.next()) {
        (Some(c), Some(a)) if c == want_call && a == want_app => Ok(()),
        _ => Err(format!("{call} of app {app} got the answer {text:?}")),
    }
}
