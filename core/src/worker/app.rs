//! Specialization from the worker's side: environment reload (start the app's handler), then
//! one load per function. One-way: a worker specialized for an app never takes another.

use std::collections::BTreeMap;

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    FunctionEnvironmentReloadRequest, FunctionEnvironmentReloadResponse, FunctionLoadRequest,
    FunctionLoadResponse, RpcException, StatusResult, status_result,
};

use super::{Link, Worker, WorkerEvent, WorkerOutput};
use crate::runtime::content_name;

/// A request whose answer the shell is working on.
#[derive(Debug)]
struct Pending {
    /// The stream that asked; the answer goes to no other.
    stream: u64,
    request_id: String,
}

/// The app's handler, as far as the protocol knows it.
#[derive(Debug, Default)]
enum Env {
    /// No app: a warm placeholder.
    #[default]
    Placeholder,
    /// The shell is starting the handler.
    Reloading(Pending),
    /// The handler is up.
    Loaded,
    /// Starting the handler failed; the runtime releases this worker.
    Failed,
}

#[derive(Debug)]
enum Function {
    Loading(Pending),
    Loaded,
    Failed,
}

/// What this worker is specialized for.
#[derive(Debug, Default)]
pub(super) struct AppState {
    env: Env,
    functions: BTreeMap<String, Function>,
}

impl AppState {
    /// Whether the worker has left the placeholder state.
    pub(super) fn has_app(&self) -> bool {
        !matches!(self.env, Env::Placeholder) || !self.functions.is_empty()
    }

    pub(super) fn is_loaded(&self, function_id: &str) -> bool {
        matches!(self.functions.get(function_id), Some(Function::Loaded))
    }
}

impl Worker {
    pub(super) fn on_env_reload_request(
        &mut self,
        req: FunctionEnvironmentReloadRequest,
        request_id: String,
    ) {
        let refusal = match self.app.env {
            Env::Placeholder => {
                self.app.env = Env::Reloading(Pending { stream: self.stream, request_id });
                self.out.push_back(WorkerOutput::ReloadEnvironment {
                    environment: req.environment_variables,
                    app_directory: req.function_app_directory,
                });
                return;
            }
            Env::Reloading(_) => "an environment reload is already in progress",
            Env::Loaded | Env::Failed => "this worker is already specialized (specialization is one-way)",
        };
        self.unexpected(format!("FunctionEnvironmentReloadRequest refused: {refusal}"));
        let resp = FunctionEnvironmentReloadResponse { result: status(Err(refusal)), ..Default::default() };
        self.send(request_id, Content::FunctionEnvironmentReloadResponse(resp));
    }

    pub(super) fn on_env_reloaded(&mut self, result: Result<(), String>) {
        let pending = match std::mem::take(&mut self.app.env) {
            Env::Reloading(pending) => pending,
            other => {
                self.app.env = other;
                return self.unexpected("EnvReloaded with no environment reload in progress");
            }
        };
        self.app.env = if result.is_ok() { Env::Loaded } else { Env::Failed };
        let result = status(result.as_ref().copied().map_err(String::as_str));
        let resp = FunctionEnvironmentReloadResponse { result, ..Default::default() };
        self.reply(pending, Content::FunctionEnvironmentReloadResponse(resp));
    }

    pub(super) fn on_load_request(&mut self, req: FunctionLoadRequest, request_id: String) {
        let FunctionLoadRequest { function_id, metadata, .. } = req;
        let refusal = match (&self.app.env, metadata, self.app.functions.get(&function_id)) {
            (Env::Loaded, _, Some(Function::Loaded)) => {
                // Loaded already: the same answer again.
                let resp = FunctionLoadResponse { function_id, result: status(Ok(())), ..Default::default() };
                return self.send(request_id, Content::FunctionLoadResponse(resp));
            }
            (Env::Loaded, _, Some(Function::Loading(_))) => {
                return self.unexpected(format!("FunctionLoadRequest for {function_id:?} while it loads"));
            }
            (Env::Loaded, Some(metadata), _) => {
                let pending = Pending { stream: self.stream, request_id };
                self.app.functions.insert(function_id.clone(), Function::Loading(pending));
                let metadata = Box::new(metadata);
                self.out.push_back(WorkerOutput::LoadFunction { function_id, metadata });
                return;
            }
            (Env::Loaded, None, _) => "FunctionLoadRequest without metadata",
            (Env::Placeholder | Env::Reloading(_), _, _) => {
                "no app environment: FunctionLoadRequest before a completed FunctionEnvironmentReloadRequest"
            }
            (Env::Failed, _, _) => "the app environment failed to load",
        };
        self.unexpected(format!("FunctionLoadRequest for {function_id:?} refused: {refusal}"));
        let resp = FunctionLoadResponse { function_id, result: status(Err(refusal)), ..Default::default() };
        self.send(request_id, Content::FunctionLoadResponse(resp));
    }

    pub(super) fn on_function_loaded(&mut self, function_id: String, result: Result<(), String>) {
        let pending = match self.app.functions.remove(&function_id) {
            Some(Function::Loading(pending)) => pending,
            other => {
                if let Some(state) = other {
                    self.app.functions.insert(function_id.clone(), state);
                }
                return self.unexpected(format!("FunctionLoaded for {function_id:?}, which is not loading"));
            }
        };
        let state = if result.is_ok() { Function::Loaded } else { Function::Failed };
        self.app.functions.insert(function_id.clone(), state);
        let result = status(result.as_ref().copied().map_err(String::as_str));
        let resp = FunctionLoadResponse { function_id, result, ..Default::default() };
        self.reply(pending, Content::FunctionLoadResponse(resp));
    }

    /// Answers a request on the stream that asked, if it is still the registered one.
    fn reply(&mut self, pending: Pending, content: Content) {
        if self.link == Link::Registered && pending.stream == self.stream {
            self.send(pending.request_id, content);
        } else {
            let what = content_name(&content).to_owned();
            self.emit(WorkerEvent::ReplyDropped { what });
        }
    }
}

/// A `StatusResult`: success, or failure with this message.
pub(super) fn status(result: Result<(), &str>) -> Option<StatusResult> {
    Some(match result {
        Ok(()) => StatusResult { status: status_result::Status::Success as i32, ..Default::default() },
        Err(message) => StatusResult {
            status: status_result::Status::Failure as i32,
            exception: Some(RpcException { message: message.to_owned(), ..Default::default() }),
            ..Default::default()
        },
    })
}
