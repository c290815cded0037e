//! Classifies each message from the runtime by where the stream stands: handle it, answer it,
//! or report it as unexpected and carry on. Nothing the runtime sends makes the worker panic.

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    FunctionMetadataResponse, StreamingMessage, WorkerStatusResponse, WorkerWarmupResponse,
};

use super::app::status;
use super::{Link, Worker};
use crate::runtime::content_name;

impl Worker {
    pub(super) fn on_message(&mut self, msg: StreamingMessage) {
        if !matches!(self.link, Link::Handshaking | Link::Registered) {
            return self.unexpected("a message while no stream is open");
        }
        self.last_heard = self.now;
        let StreamingMessage { request_id, content } = msg;
        let Some(content) = content else {
            // A message type newer than ours: ignore it, as the runtime does with ours.
            return self.unexpected("a message of an unknown type");
        };
        if self.link == Link::Handshaking {
            return match content {
                Content::WorkerInitRequest(req) => self.on_init_request(req, request_id),
                Content::WorkerHeartbeat(_) => {}
                other => self.unexpected(format!("{} before WorkerInitRequest", content_name(&other))),
            };
        }
        match content {
            Content::WorkerHeartbeat(_) => self.on_heartbeat_echo(),
            Content::InvocationRequest(req) => self.on_invocation_request(req),
            Content::InvocationCancel(cancel) => self.on_invocation_cancel(cancel),
            Content::FunctionEnvironmentReloadRequest(req) => self.on_env_reload_request(req, request_id),
            Content::FunctionLoadRequest(req) => self.on_load_request(req, request_id),
            Content::FunctionLoadRequestCollection(all) => {
                // Answered one by one: this worker does not advertise load-response collections.
                for req in all.function_load_requests {
                    self.on_load_request(req, request_id.clone());
                }
            }
            Content::FunctionsMetadataRequest(_) => {
                // This worker does not index: the runtime's function.json metadata stands.
                let resp = FunctionMetadataResponse {
                    function_metadata_results: Vec::new(),
                    result: status(Ok(())),
                    use_default_metadata_indexing: true,
                };
                self.send(request_id, Content::FunctionMetadataResponse(resp));
            }
            Content::WorkerStatusRequest(_) => {
                self.send(request_id, Content::WorkerStatusResponse(WorkerStatusResponse {}));
            }
            Content::WorkerWarmupRequest(_) => {
                let resp = WorkerWarmupResponse { result: status(Ok(())) };
                self.send(request_id, Content::WorkerWarmupResponse(resp));
            }
            Content::WorkerTerminate(terminate) => self.on_terminate(terminate),
            Content::WorkerInitRequest(_) => self.unexpected("a second WorkerInitRequest on one stream"),
            other => self.unexpected(format!("{} from the runtime", content_name(&other))),
        }
    }
}
