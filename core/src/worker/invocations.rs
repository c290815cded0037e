//! Invocations: run each id once, deliver each answer (now, or after a resume), ignore the
//! runtime's re-sends, refuse work while draining.

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    InvocationCancel, InvocationRequest, InvocationResponse, RpcException, StatusResult, status_result,
};

use super::ledger::Known;
use super::{Link, ResponseDropReason, Worker, WorkerEvent, WorkerOutput};

impl Worker {
    pub(super) fn on_invocation_request(&mut self, req: InvocationRequest) {
        let id = req.invocation_id.clone();
        match self.ledger.get(&id) {
            Some(Known::Sent) => {
                if let Some(resp) = self.ledger.take_for_resend(&id, self.stream) {
                    // Asked again after a resume: the answer was lost with the old stream.
                    self.emit(WorkerEvent::Redelivered { invocation: id });
                    self.write_response(resp);
                } else {
                    // Written on this stream: the runtime re-sent before reading it.
                    self.emit(WorkerEvent::DuplicateRequest { invocation: id });
                }
            }
            Some(Known::Dropped) => {
                let reason = format!(
                    "the worker dropped this invocation's response: more than {} responses completed \
                     while it was disconnected",
                    self.cfg.max_buffered_responses
                );
                self.refuse(id, reason);
            }
            Some(Known::Running | Known::Buffered | Known::Delivered) => {
                self.emit(WorkerEvent::DuplicateRequest { invocation: id });
            }
            None if id.is_empty() => self.unexpected("InvocationRequest without an invocation id"),
            None if self.refuses_new_work() => self.refuse(id, "worker is draining".to_owned()),
            None if !self.app.is_loaded(&req.function_id) => {
                let reason = format!("function {:?} is not loaded on this worker", req.function_id);
                self.refuse(id, reason);
            }
            None => {
                self.ledger.start(id);
                self.out.push_back(WorkerOutput::Invoke(Box::new(req)));
            }
        }
    }

    pub(super) fn on_invocation_cancel(&mut self, cancel: InvocationCancel) {
        // Not running (already answered, or never seen): nothing to cancel.
        if self.ledger.get(&cancel.invocation_id) == Some(Known::Running) {
            self.out.push_back(WorkerOutput::Cancel { invocation_id: cancel.invocation_id });
        }
    }

    pub(super) fn on_invocation_done(&mut self, resp: InvocationResponse) {
        if !self.ledger.finish(&resp.invocation_id) {
            let invocation = resp.invocation_id;
            return self
                .emit(WorkerEvent::ResponseDropped { invocation, why: ResponseDropReason::NotRunning });
        }
        self.deliver(resp);
        if self.drain.is_some() {
            self.check_drained();
        }
    }

    /// Answers an invocation with a failure instead of running it.
    fn refuse(&mut self, invocation_id: String, reason: String) {
        self.emit(WorkerEvent::RequestRefused { invocation: invocation_id.clone(), reason: reason.clone() });
        let resp = InvocationResponse {
            invocation_id,
            result: Some(StatusResult {
                status: status_result::Status::Failure as i32,
                exception: Some(RpcException { message: reason, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.deliver(resp);
    }

    /// Writes a response now if registered, else keeps it for the resume.
    fn deliver(&mut self, resp: InvocationResponse) {
        if self.link == Link::Registered {
            return self.write_response(resp);
        }
        if let Some(invocation) = self.ledger.buffer(resp) {
            self.emit(WorkerEvent::ResponseDropped { invocation, why: ResponseDropReason::BufferFull });
        }
    }

    fn write_response(&mut self, resp: InvocationResponse) {
        self.send(String::new(), Content::InvocationResponse(resp.clone()));
        self.ledger.record_sent(resp, self.stream);
    }

    /// After a resume: writes what completed while disconnected, in completion order.
    pub(super) fn flush_buffered(&mut self) -> usize {
        let buffered = self.ledger.take_buffered();
        let n = buffered.len();
        for resp in buffered {
            self.write_response(resp);
        }
        n
    }

    /// After a fresh registration: whatever this worker held belonged to a slot the runtime no
    /// longer has (it settled those calls already). Reset the app and forget it all.
    pub(super) fn forget_lost_slot(&mut self) {
        let had = self.app.has_app() || self.ledger.holds_work();
        let (running, dropped_responses) = self.ledger.reset();
        if let Some(drain) = &mut self.drain {
            drain.lost += running + dropped_responses;
        }
        if had {
            self.app = Default::default();
            self.out.push_back(WorkerOutput::ResetApp);
            self.emit(WorkerEvent::SlotLost { running, dropped_responses });
        }
    }
}
