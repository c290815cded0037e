//! What goes into the runtime core ([`Input`]) and what comes out ([`Output`]).

use std::time::Duration;

use switchboard_proto::rpc::{
    InvocationResponse, ParameterBinding, RpcException, RpcHttp, RpcTraceContext, StreamingMessage, TypedData,
};

use crate::event::Event;
use crate::ids::{CallId, ConnId, PoolKey, WorkerId};
use crate::redact::{self, Secret};

/// Something that happened outside the core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// A worker opened an `EventStream`; `StartStream` must come next.
    Connected {
        /// The shell's number for this stream.
        conn: ConnId,
        /// The peer address, for logs and rate limits.
        peer: String,
        /// Extensions carried in the request metadata.
        meta: ConnMeta,
    },
    /// A message arrived on a stream.
    Message {
        /// The stream.
        conn: ConnId,
        /// The decoded message.
        msg: Box<StreamingMessage>,
    },
    /// A frame on a stream could not be decoded (garbage, truncated, too large).
    Malformed {
        /// The stream.
        conn: ConnId,
        /// What the decoder said.
        error: String,
    },
    /// A stream ended (closed by the worker, reset, transport error, keepalive timeout).
    Disconnected {
        /// The stream.
        conn: ConnId,
        /// Why, as the shell saw it.
        reason: String,
    },
    /// A caller wants a function run; answered exactly once with [`Output::Reply`].
    Invoke(Invoke),
    /// The caller went away (HTTP client disconnected); its call is cancelled if still open.
    Cancel {
        /// The call.
        call: CallId,
    },
    /// The provisioner could not start a worker it was asked for.
    ProvisionFailed {
        /// The worker id of the provision request.
        worker: WorkerId,
        /// What went wrong.
        error: String,
    },
    /// A worker process (or pod) the provisioner started has ended.
    WorkerExited {
        /// The worker id it was started with.
        worker: WorkerId,
        /// Exit status as text.
        status: String,
    },
}

/// Extensions a connection-mode worker sends as gRPC request metadata. Real workers send none.
/// `Debug` shows whether a token is there, never the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnMeta {
    /// `x-switchboard-join-token`: admits a worker into the pool that owns the token.
    pub join_token: Option<String>,
    /// `x-switchboard-resume-token`: reclaims a disconnected worker's slot.
    pub resume_token: Option<String>,
}

impl std::fmt::Debug for ConnMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnMeta")
            .field("join_token", &Secret(&self.join_token))
            .field("resume_token", &Secret(&self.resume_token))
            .finish()
    }
}

impl ConnMeta {
    /// True when the worker speaks Switchboard's connection-mode extensions.
    pub fn connection_mode(&self) -> bool {
        self.join_token.is_some() || self.resume_token.is_some()
    }
}

/// A request to run a function.
#[derive(Debug, Clone)]
pub struct Invoke {
    /// The caller, answered exactly once.
    pub call: CallId,
    /// App name.
    pub app: String,
    /// Which function.
    pub target: Target,
    /// The trigger's input.
    pub payload: Payload,
    /// W3C trace context to pass to the worker.
    pub trace: Option<RpcTraceContext>,
    /// A deadline shorter than the app's function timeout, if the caller has one.
    pub timeout: Option<Duration>,
}

/// How the caller names the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By name (admin API, timers).
    Function(String),
    /// By HTTP route: `path` is what follows `/<app>/` on the front door, without the query.
    Route {
        /// HTTP method.
        method: String,
        /// Path after the app segment, e.g. `api/items/42`.
        path: String,
    },
}

/// The trigger input of an invocation.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An HTTP request (route parameters are filled in by the core).
    Http(Box<RpcHttp>),
    /// Any other trigger data (a timer's JSON, an admin call's body).
    Data(TypedData),
}

/// Something for the shell to do. `Debug` hides the environment (the app's settings) of a
/// `FunctionEnvironmentReloadRequest` being sent.
#[non_exhaustive]
pub enum Output {
    /// Write this message on the stream.
    Send {
        /// The stream.
        conn: ConnId,
        /// The message.
        msg: Box<StreamingMessage>,
    },
    /// End the stream with this status, after the messages already sent on it.
    Close {
        /// The stream.
        conn: ConnId,
        /// Why; maps to a gRPC status.
        reason: CloseReason,
    },
    /// Answer a caller. Exactly one per [`Input::Invoke`].
    Reply {
        /// The caller.
        call: CallId,
        /// What happened.
        outcome: Outcome,
    },
    /// Start a worker for a pool; it must connect with `worker_id` before the ticket expires.
    Provision(ProvisionRequest),
    /// Stop a worker process or pod: it is no longer wanted, or it misbehaved.
    Release {
        /// The worker id it was provisioned with.
        worker: WorkerId,
        /// Why.
        reason: String,
    },
    /// A state change or incident, for logs and metrics.
    Event(Event),
    /// A log line a worker sent (`RpcLog`), attributed.
    Log(WorkerLog),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Send { conn, msg } => {
                f.debug_struct("Send").field("conn", conn).field("msg", &redact::Message(msg)).finish()
            }
            Output::Close { conn, reason } => {
                f.debug_struct("Close").field("conn", conn).field("reason", reason).finish()
            }
            Output::Reply { call, outcome } => {
                f.debug_struct("Reply").field("call", call).field("outcome", outcome).finish()
            }
            Output::Provision(request) => f.debug_tuple("Provision").field(request).finish(),
            Output::Release { worker, reason } => {
                f.debug_struct("Release").field("worker", worker).field("reason", reason).finish()
            }
            Output::Event(event) => f.debug_tuple("Event").field(event).finish(),
            Output::Log(log) => f.debug_tuple("Log").field(log).finish(),
        }
    }
}

/// A request to the provisioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    /// The id the worker must present in `StartStream` (`--workerId`).
    pub worker: WorkerId,
    /// `--requestId`.
    pub request_id: String,
    /// The pool it is for.
    pub pool: PoolKey,
}

/// Why the runtime ends a stream. Shells map these to gRPC status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The worker presented no credential the runtime accepts (gRPC `UNAUTHENTICATED`).
    Unauthenticated(String),
    /// The credential was valid in form but not for this (gRPC `PERMISSION_DENIED`).
    PermissionDenied(String),
    /// The worker broke the protocol (gRPC `FAILED_PRECONDITION` / `INVALID_ARGUMENT`).
    ProtocolViolation(String),
    /// The worker missed a deadline or went silent (gRPC `DEADLINE_EXCEEDED`).
    Timeout(String),
    /// The runtime no longer wants this worker (gRPC `OK`): released, drained, shut down.
    Released(String),
    /// The stream's address failed admission too often and is refused for a while (gRPC
    /// `RESOURCE_EXHAUSTED`); the message says when to retry.
    RateLimited(String),
}

impl CloseReason {
    /// The explanation.
    pub fn message(&self) -> &str {
        match self {
            CloseReason::Unauthenticated(m)
            | CloseReason::PermissionDenied(m)
            | CloseReason::ProtocolViolation(m)
            | CloseReason::Timeout(m)
            | CloseReason::Released(m)
            | CloseReason::RateLimited(m) => m,
        }
    }
}

/// The one answer a caller gets.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The function ran and succeeded.
    Completed(Box<Completed>),
    /// The function ran and failed (raised).
    Failed(Box<FunctionError>),
    /// No answer within the deadline (HTTP 504).
    Timeout,
    /// The caller cancelled.
    Cancelled,
    /// The call was accepted but could not run (HTTP 503, or 502 when a worker was lost).
    Unavailable {
        /// Why.
        reason: Unavailable,
        /// When the caller may try again.
        retry_after: Duration,
    },
    /// There is nothing to call (HTTP 404).
    NotFound(NotFound),
}

/// A successful invocation's results.
#[derive(Debug, Clone, Default)]
pub struct Completed {
    /// The HTTP response, taken from the function's http output binding (`$return` or named).
    pub http: Option<RpcHttp>,
    /// The return value when it is not the HTTP response.
    pub return_value: Option<TypedData>,
    /// Other output bindings.
    pub output_data: Vec<ParameterBinding>,
}

impl Completed {
    /// Splits a worker's response according to the function's HTTP output binding.
    pub(crate) fn from_response(resp: InvocationResponse, http_output: Option<&str>) -> Self {
        let InvocationResponse { return_value, mut output_data, .. } = resp;
        let mut done = Completed { http: None, return_value, output_data: Vec::new() };
        match http_output {
            Some("$return") => {
                if let Some(TypedData { data: Some(switchboard_proto::rpc::typed_data::Data::Http(http)) }) =
                    done.return_value.take()
                {
                    done.http = Some(*http);
                }
            }
            Some(name) => {
                if let Some(i) = output_data.iter().position(|b| b.name == name) {
                    let binding = output_data.swap_remove(i);
                    if let Some(switchboard_proto::rpc::parameter_binding::RpcData::Data(TypedData {
                        data: Some(switchboard_proto::rpc::typed_data::Data::Http(http)),
                    })) = binding.rpc_data
                    {
                        done.http = Some(*http);
                    }
                }
            }
            None => {}
        }
        done.output_data = output_data;
        done
    }
}

/// A function's failure.
#[derive(Debug, Clone)]
pub struct FunctionError {
    /// What the worker reported (message, stack trace).
    pub exception: RpcException,
    /// Whether the app opted in to showing error messages to HTTP callers
    /// (`SWITCHBOARD_EXPOSE_ERRORS`); admin callers may always see them.
    pub expose: bool,
}

/// Why an accepted call could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No worker became ready before the queue deadline.
    NoWorker,
    /// The app's queue is full (backpressure).
    Overloaded,
    /// The worker running it was lost and the function's retry policy did not allow a retry.
    WorkerLost(String),
    /// The app was removed while the call waited.
    AppRemoved,
    /// The app cannot be specialized (its last error).
    AppFailing(String),
    /// The runtime is shutting down.
    ShuttingDown,
    /// The function is disabled in its function.json.
    Disabled,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NoWorker => f.write_str("no worker became ready in time"),
            Unavailable::Overloaded => f.write_str("the app's queue is full"),
            Unavailable::WorkerLost(why) => write!(f, "the worker running it was lost: {why}"),
            Unavailable::AppRemoved => f.write_str("the app was removed"),
            Unavailable::AppFailing(why) => write!(f, "the app cannot start: {why}"),
            Unavailable::ShuttingDown => f.write_str("the runtime is shutting down"),
            Unavailable::Disabled => f.write_str("the function is disabled"),
        }
    }
}

/// What was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFound {
    /// No app of that name.
    App,
    /// The app has no function of that name.
    Function,
    /// No HTTP route of the app matches the path.
    Route,
    /// A route matches but not for this method.
    Method,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotFound::App => "no such app",
            NotFound::Function => "no such function",
            NotFound::Route => "no route matches",
            NotFound::Method => "method not allowed for this route",
        })
    }
}

/// A worker's `RpcLog`, attributed to its app, function, invocation and worker.
#[derive(Debug, Clone)]
pub struct WorkerLog {
    /// The worker.
    pub worker: WorkerId,
    /// Its app, when specialized.
    pub app: Option<String>,
    /// The function, when the log belongs to a known invocation.
    pub function: Option<String>,
    /// The invocation id, when the worker set one.
    pub invocation: Option<String>,
    /// `Trace`=0 .. `Critical`=5, `None`=6, as on the wire.
    pub level: i32,
    /// Category as sent.
    pub category: String,
    /// User (0) or System (1) or CustomMetric (2).
    pub log_category: i32,
    /// The message.
    pub message: String,
}
