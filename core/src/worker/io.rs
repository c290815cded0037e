//! What goes into the worker core ([`WorkerInput`]) and what comes out ([`WorkerOutput`],
//! [`WorkerEvent`]).

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_proto::rpc::{
    InvocationRequest, InvocationResponse, RpcFunctionMetadata, RpcLog, StreamingMessage,
};

use crate::io::ConnMeta;

/// Something that happened outside the worker core.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerInput {
    /// The shell opened the `EventStream` the last [`WorkerOutput::Connect`] asked for.
    Connected,
    /// The dial (or gRPC handshake) the last [`WorkerOutput::Connect`] asked for failed.
    ConnectFailed {
        /// What went wrong.
        error: String,
    },
    /// A message from the runtime on the current stream.
    Message(Box<StreamingMessage>),
    /// The current stream ended: closed by the runtime, reset, transport error. Not reported
    /// for a stream the core itself ended with [`WorkerOutput::CloseStream`].
    Disconnected {
        /// Why, as the shell saw it.
        reason: String,
    },
    /// The shell finished [`WorkerOutput::ReloadEnvironment`]: the app's handler is up, or not.
    EnvReloaded {
        /// `Err` carries the message the runtime is told.
        result: Result<(), String>,
    },
    /// The shell finished [`WorkerOutput::LoadFunction`].
    FunctionLoaded {
        /// The function id of the load.
        function_id: String,
        /// `Err` carries the message the runtime is told.
        result: Result<(), String>,
    },
    /// The handler's answer to an [`WorkerOutput::Invoke`] (the invocation id is inside).
    InvocationDone {
        /// The response to deliver to the runtime.
        response: Box<InvocationResponse>,
    },
    /// A local request to stop (SIGTERM): take no new work, finish and deliver what is in
    /// flight within [`super::WorkerConfig::drain_grace`], then exit. A runtime that speaks
    /// connection mode is told (`WorkerActionResponse{Restart}`, reason
    /// `SwitchboardDraining`) and stops routing here; work it routed before it heard is run.
    Drain,
    /// A log line from the handler (e.g. a custom handler's `Logs`), for the runtime. Sent
    /// on the registered stream ahead of what comes after it; dropped while disconnected
    /// (logs are best effort, responses are not).
    Log(Box<RpcLog>),
}

/// Something for the shell to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerOutput {
    /// Dial the runtime now with this request metadata; answer `Connected` or `ConnectFailed`.
    Connect {
        /// Join and resume tokens.
        meta: ConnMeta,
    },
    /// Write this message on the current stream.
    Send(Box<StreamingMessage>),
    /// Drop the current stream (presumed dead), or abort the dial in progress. The shell
    /// reports nothing more about it.
    CloseStream,
    /// Specialize: start the app's handler with this environment; answer `EnvReloaded`.
    ReloadEnvironment {
        /// The whole environment for the handler (pool environment plus app settings).
        environment: BTreeMap<String, String>,
        /// The app's folder.
        app_directory: String,
    },
    /// Load one function into the handler; answer `FunctionLoaded`.
    LoadFunction {
        /// The runtime's id for the function, used by its invocations.
        function_id: String,
        /// The function's metadata (name, folder, script, bindings).
        metadata: Box<RpcFunctionMetadata>,
    },
    /// Run this invocation; answer `InvocationDone`.
    Invoke(Box<InvocationRequest>),
    /// Cancel this running invocation if the handler can (best effort; it is still answered).
    Cancel {
        /// The invocation.
        invocation_id: String,
    },
    /// The runtime did not restore this worker's slot: stop the handler and forget the app;
    /// the worker is a fresh placeholder again. The shell reports nothing more for what it was
    /// asked before (no `EnvReloaded` or `FunctionLoaded` for earlier requests: they would be
    /// taken as answers to new ones; a late `InvocationDone` is dropped).
    ResetApp,
    /// Drained or terminated: flush what was sent, close the stream and exit with this code.
    Exit {
        /// 0 when everything in flight was finished and delivered, else 1.
        code: i32,
        /// What happened, for the log.
        reason: String,
    },
    /// A state change or incident, for logs and metrics.
    Event(WorkerEvent),
}

/// What the worker wants the platform team to see or count.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// The stream is open; `StartStream` was sent.
    Connected,
    /// A dial failed or timed out.
    ConnectFailed {
        /// Why.
        error: String,
    },
    /// The runtime admitted this worker into a fresh slot (first registration, or after the
    /// old slot was lost).
    Registered,
    /// The runtime restored this worker's slot: app and in-flight work kept.
    Resumed {
        /// Responses completed while disconnected, sent now in completion order.
        flushed: usize,
    },
    /// The runtime did not restore the slot this worker had: the app was reset
    /// ([`WorkerOutput::ResetApp`]) and these were given up.
    SlotLost {
        /// Invocations that were still running (the runtime has settled them already).
        running: usize,
        /// Responses completed while disconnected that can no longer be delivered.
        dropped_responses: usize,
    },
    /// The stream ended.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The next dial is scheduled.
    Reconnecting {
        /// Consecutive failures so far (1 for the first redial).
        attempt: u32,
        /// Delay before the dial, jitter included.
        after: Duration,
    },
    /// The runtime sent an invocation this worker already runs or answered (its re-sends
    /// after a resume): not run again.
    DuplicateRequest {
        /// The invocation id.
        invocation: String,
    },
    /// A response sent on an earlier stream was asked for again (lost with that stream):
    /// sent again.
    Redelivered {
        /// The invocation id.
        invocation: String,
    },
    /// An invocation was answered with a failure instead of being run.
    RequestRefused {
        /// The invocation id.
        invocation: String,
        /// The failure message sent.
        reason: String,
    },
    /// A response was dropped, not delivered.
    ResponseDropped {
        /// The invocation id.
        invocation: String,
        /// Why.
        why: ResponseDropReason,
    },
    /// The answer to a runtime request could not be sent: the stream that asked is gone.
    ReplyDropped {
        /// The message type.
        what: String,
    },
    /// Something from the runtime or the shell that does not fit the protocol; ignored, or
    /// answered with a failure where an answer is expected.
    Unexpected {
        /// What arrived.
        what: String,
    },
    /// Draining began: no new invocations; the worker exits when what it holds is delivered.
    Draining {
        /// Who asked.
        cause: DrainCause,
        /// Time allowed.
        grace: Duration,
        /// Invocations running.
        running: usize,
        /// Responses not yet delivered.
        undelivered: usize,
    },
}

/// Why a response was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseDropReason {
    /// The buffer of responses completed while disconnected was full; the oldest went.
    /// A later re-send of the invocation is answered with a failure.
    BufferFull,
    /// The handler answered an invocation that is not running here (already answered, or
    /// forgotten when the slot was lost).
    NotRunning,
}

/// Who asked the worker to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainCause {
    /// The runtime sent `WorkerTerminate`: it has let the slot go, so the worker does not
    /// reconnect.
    Terminate,
    /// A local request ([`WorkerInput::Drain`]): the worker reconnects (resume only) to deliver
    /// what it owes.
    Local,
}
