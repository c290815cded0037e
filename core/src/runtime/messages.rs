//! Classifies each message a worker sends by the worker's state: handle it, ignore it (and
//! count), or evict the worker for breaking the protocol.

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    RpcLog, StreamingMessage, WorkerActionResponse, WorkerHeartbeat, WorkerInitResponse,
    worker_action_response,
};

use super::registry::{Caps, cap};
use super::specialize::failure;
use super::{Runtime, Timer, WKey};
use crate::event::{Event, EvictReason, WorkerState};
use crate::ids::ConnId;
use crate::io::{CloseReason, Output, WorkerLog};

impl Runtime {
    pub(super) fn on_message(&mut self, conn: ConnId, msg: StreamingMessage) {
        let Some(c) = self.conns.get(&conn) else { return };
        let Some(w) = c.worker else {
            return match msg.content {
                Some(Content::StartStream(start)) => self.on_start_stream(conn, start),
                other => {
                    let what = other.as_ref().map_or("an unknown message", content_name);
                    let why = format!("{what} before StartStream");
                    self.refuse(conn, None, CloseReason::ProtocolViolation(why))
                }
            };
        };
        self.touch(w);
        let Some(content) = msg.content else {
            // A message type newer than ours: ignore it, as workers do with ours.
            let worker = self.workers[&w].id.clone();
            self.counters.ignored += 1;
            return self.emit(Event::MessageIgnored { worker, what: "unknown message type".into() });
        };
        match content {
            Content::WorkerInitResponse(resp) => self.on_init_response(w, resp),
            Content::FunctionEnvironmentReloadResponse(resp) => self.on_env_reload_response(w, resp),
            Content::FunctionMetadataResponse(resp) => self.on_metadata_response(w, resp),
            Content::FunctionLoadResponse(resp) => self.on_load_response(w, resp),
            Content::FunctionLoadResponseCollection(all) => {
                for resp in all.function_load_responses {
                    if !self.workers.contains_key(&w) {
                        break;
                    }
                    self.on_load_response(w, resp);
                }
            }
            Content::InvocationResponse(resp) => self.on_invocation_response(w, resp),
            Content::RpcLog(log) => self.on_rpc_log(w, log),
            Content::WorkerHeartbeat(_) => {
                // Echo so a connection-mode worker can tell a silent runtime from a dead one.
                if self.workers[&w].connection_mode {
                    let msg = StreamingMessage {
                        request_id: String::new(),
                        content: Some(Content::WorkerHeartbeat(WorkerHeartbeat {})),
                    };
                    self.send_to(w, msg);
                }
            }
            Content::WorkerStatusResponse(_) => {}
            Content::WorkerActionResponse(action) => self.on_worker_action(w, action),
            Content::CloseSharedMemoryResourcesResponse(_) | Content::WorkerWarmupResponse(_) => {
                let worker = self.workers[&w].id.clone();
                self.counters.ignored += 1;
                let what = content_name(&content).to_owned();
                self.emit(Event::MessageIgnored { worker, what });
            }
            other => {
                let why = format!("{} sent by a worker", content_name(&other));
                self.evict(w, EvictReason::ProtocolViolation(why));
            }
        }
    }

    fn on_init_response(&mut self, w: WKey, resp: WorkerInitResponse) {
        let limit = self.cfg.limits.max_map_entries;
        if resp.capabilities.len() > limit {
            let why = format!("{} capabilities (limit {limit})", resp.capabilities.len());
            return self.evict(w, EvictReason::ProtocolViolation(why));
        }
        let worker = self.workers.get_mut(&w).expect("message from a live worker");
        if worker.resume_ack_pending {
            // The answer to the init request that confirmed a resume.
            worker.resume_ack_pending = false;
            return;
        }
        if worker.state != WorkerState::Initializing {
            let why = "WorkerInitResponse outside the init phase".to_owned();
            return self.evict(w, EvictReason::ProtocolViolation(why));
        }
        if let Some(error) = failure(resp.result.as_ref()) {
            return self.evict(w, EvictReason::InitFailed(error));
        }
        worker.caps = Caps::parse(&resp.capabilities);
        let pool = worker.pool;
        self.timers.cancel(Timer::Phase(w));
        self.pools[pool].failures = 0;
        self.pools[pool].backoff_until = None;
        self.set_state(w, WorkerState::Placeholder, "init handshake done");
        self.arm_liveness(w);
        self.offer_placeholder(w);
    }

    /// `WorkerActionResponse{action: Restart}`: the worker asks to be replaced. Switchboard's
    /// own worker sends it when it drains on its own (SIGTERM), with reason
    /// [`cap::LEAVE_DRAINING`], and again with [`cap::LEAVE_EXITING`] if it exits before its
    /// work is done. Draining: no new work, in-flight work finishes, then the worker is
    /// released (with `WorkerTerminate` if it handles it) so no resumable slot outlives it.
    /// Exiting: it is gone for good, so its in-flight calls are settled now rather than after
    /// the resume grace. Any other reason (a real worker asking for a restart) drains.
    fn on_worker_action(&mut self, w: WKey, action: WorkerActionResponse) {
        if action.action != worker_action_response::Action::Restart as i32 {
            let worker = self.workers[&w].id.clone();
            self.counters.ignored += 1;
            let what = format!("WorkerActionResponse with unknown action {}", action.action);
            return self.emit(Event::MessageIgnored { worker, what });
        }
        if action.reason == cap::LEAVE_EXITING {
            let why = "it exited before finishing its drain".to_owned();
            return self.evict(w, EvictReason::Exited(why));
        }
        let reason = if action.reason == cap::LEAVE_DRAINING {
            "the worker is draining".to_owned()
        } else {
            format!("the worker asked to be restarted: {}", action.reason)
        };
        self.drain(w, &reason);
    }

    fn on_rpc_log(&mut self, w: WKey, log: RpcLog) {
        let worker = &self.workers[&w];
        let invocation = (!log.invocation_id.is_empty()).then_some(log.invocation_id);
        let function = invocation
            .as_ref()
            .and_then(|id| self.inv_by_wire_id(id))
            .and_then(|i| self.invs.get(&i))
            .map(|inv| inv.function_name().to_owned());
        let app = worker.app.and_then(|(a, _)| self.apps.get(&a)).map(|a| a.name.clone());
        self.out.push_back(Output::Log(WorkerLog {
            worker: worker.id.clone(),
            app,
            function,
            invocation,
            level: log.level,
            category: log.category,
            log_category: log.log_category,
            message: log.message,
        }));
    }
}

/// The protocol name of a message type.
pub(crate) fn content_name(content: &Content) -> &'static str {
    match content {
        Content::StartStream(_) => "StartStream",
        Content::WorkerInitRequest(_) => "WorkerInitRequest",
        Content::WorkerInitResponse(_) => "WorkerInitResponse",
        Content::WorkerHeartbeat(_) => "WorkerHeartbeat",
        Content::WorkerTerminate(_) => "WorkerTerminate",
        Content::WorkerStatusRequest(_) => "WorkerStatusRequest",
        Content::WorkerStatusResponse(_) => "WorkerStatusResponse",
        Content::FileChangeEventRequest(_) => "FileChangeEventRequest",
        Content::WorkerActionResponse(_) => "WorkerActionResponse",
        Content::FunctionLoadRequest(_) => "FunctionLoadRequest",
        Content::FunctionLoadResponse(_) => "FunctionLoadResponse",
        Content::InvocationRequest(_) => "InvocationRequest",
        Content::InvocationResponse(_) => "InvocationResponse",
        Content::InvocationCancel(_) => "InvocationCancel",
        Content::RpcLog(_) => "RpcLog",
        Content::FunctionEnvironmentReloadRequest(_) => "FunctionEnvironmentReloadRequest",
        Content::FunctionEnvironmentReloadResponse(_) => "FunctionEnvironmentReloadResponse",
        Content::CloseSharedMemoryResourcesRequest(_) => "CloseSharedMemoryResourcesRequest",
        Content::CloseSharedMemoryResourcesResponse(_) => "CloseSharedMemoryResourcesResponse",
        Content::FunctionsMetadataRequest(_) => "FunctionsMetadataRequest",
        Content::FunctionMetadataResponse(_) => "FunctionMetadataResponse",
        Content::FunctionLoadRequestCollection(_) => "FunctionLoadRequestCollection",
        Content::FunctionLoadResponseCollection(_) => "FunctionLoadResponseCollection",
        Content::WorkerWarmupRequest(_) => "WorkerWarmupRequest",
        Content::WorkerWarmupResponse(_) => "WorkerWarmupResponse",
    }
}
