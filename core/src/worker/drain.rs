//! Drain: take no new work, finish and deliver what is in flight, exit; or exit with code 1
//! when the grace runs out first.

use std::time::{Duration, Instant};

use switchboard_proto::Content;
use switchboard_proto::rpc::{WorkerActionResponse, WorkerTerminate, worker_action_response};

use super::{DrainCause, Link, Timer, Worker, WorkerEvent, WorkerOutput};
use crate::runtime::cap;

/// A drain under way.
#[derive(Debug)]
pub(super) struct Drain {
    pub(super) cause: DrainCause,
    pub(super) deadline: Instant,
    /// Invocations given up because the runtime lost the slot during the drain.
    pub(super) lost: usize,
}

impl Worker {
    pub(super) fn on_terminate(&mut self, terminate: WorkerTerminate) {
        let grace = match terminate.grace_period {
            Some(d) => {
                Duration::new(u64::try_from(d.seconds).unwrap_or(0), u32::try_from(d.nanos).unwrap_or(0))
            }
            None => self.cfg.drain_grace,
        };
        self.start_drain(DrainCause::Terminate, grace);
    }

    pub(super) fn start_drain(&mut self, cause: DrainCause, grace: Duration) {
        let deadline = self.now + grace;
        if let Some(d) = &mut self.drain {
            // Already draining: a terminate from the runtime may shorten it and stops redials.
            if cause == DrainCause::Terminate {
                d.cause = cause;
                d.deadline = d.deadline.min(deadline);
                let at = d.deadline;
                self.timers.set(Timer::Drain, at);
                self.stop_redialing();
                self.check_drained();
            }
            return;
        }
        self.drain = Some(Drain { cause, deadline, lost: 0 });
        self.timers.set(Timer::Drain, deadline);
        let (running, undelivered) = (self.ledger.running(), self.undelivered());
        self.emit(WorkerEvent::Draining { cause, grace, running, undelivered });
        if cause == DrainCause::Terminate {
            self.stop_redialing();
        } else {
            self.send_leave(cap::LEAVE_DRAINING);
        }
        self.check_drained();
    }

    /// Tells a runtime that speaks connection mode that this worker is leaving (see
    /// [`cap::LEAVE_DRAINING`], [`cap::LEAVE_EXITING`]): `WorkerActionResponse{Restart}`, which
    /// a runtime reads as "replace me". Others get nothing: they would not know what it means.
    pub(super) fn send_leave(&mut self, reason: &str) {
        if self.link == Link::Registered && self.resume_token.is_some() {
            let action = WorkerActionResponse {
                action: worker_action_response::Action::Restart as i32,
                reason: reason.to_owned(),
            };
            self.send(String::new(), Content::WorkerActionResponse(action));
        }
    }

    /// Whether new invocations are refused: while terminated (the runtime let the slot go), or
    /// while draining on our own for a runtime that cannot be told to stop routing. A runtime
    /// that was told may still send what it routed before it heard: that work is run.
    pub(super) fn refuses_new_work(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| d.cause == DrainCause::Terminate || self.resume_token.is_none())
    }

    /// The runtime let the slot go: no more dials.
    fn stop_redialing(&mut self) {
        self.timers.cancel(Timer::Redial);
        if self.link == Link::Dialing {
            self.timers.cancel(Timer::Dial);
            self.out.push_back(WorkerOutput::CloseStream);
            self.link = Link::Down;
        }
    }

    /// Responses the runtime may not have: buffered, plus written but unconfirmed when the
    /// runtime confirms (echoes heartbeats; it gave a resume token).
    fn undelivered(&self) -> usize {
        let unconfirmed = if self.resume_token.is_some() { self.ledger.unconfirmed() } else { 0 };
        self.ledger.buffered() + unconfirmed
    }

    /// Exits if the drain is done.
    pub(super) fn check_drained(&mut self) {
        let Some((cause, lost)) = self.drain.as_ref().map(|d| (d.cause, d.lost)) else { return };
        if self.ledger.running() > 0 {
            return;
        }
        let undelivered = self.undelivered();
        if cause == DrainCause::Terminate {
            // The runtime released the slot; it abandoned whatever it was not answered for.
            let reason = if undelivered == 0 {
                "terminated by the runtime; nothing in flight".to_owned()
            } else {
                format!("terminated by the runtime; {undelivered} responses it no longer wants were dropped")
            };
            return self.exit(0, reason);
        }
        if undelivered == 0 && lost > 0 {
            let reason =
                format!("drained, but the runtime lost this worker's slot and {lost} invocations with it");
            return self.exit(1, reason);
        }
        if undelivered == 0 {
            return self.exit(0, "drained: every invocation finished and was delivered".to_owned());
        }
        if self.resume_token.is_none() {
            let reason = format!("drained, but {undelivered} responses could not be delivered (no resume)");
            return self.exit(1, reason);
        }
        // Registered with unconfirmed responses: ask for a confirmation now rather than at
        // the next heartbeat. Disconnected: the redial will resume and deliver.
        let covered = self.heartbeats.back().is_some_and(|&seq| seq >= self.ledger.next_seq());
        if self.link == Link::Registered && self.ledger.buffered() == 0 && !covered {
            self.send_heartbeat();
        }
    }

    pub(super) fn on_drain_timeout(&mut self) {
        let (running, undelivered) = (self.ledger.running(), self.undelivered());
        let reason = format!(
            "drain grace ended with {running} invocations still running and {undelivered} responses undelivered"
        );
        self.exit(1, reason);
    }

    fn exit(&mut self, code: i32, reason: String) {
        if code != 0 && self.drain.as_ref().is_some_and(|d| d.cause == DrainCause::Local) {
            // Leaving with work unfinished: the runtime need not keep the slot for a resume.
            self.send_leave(cap::LEAVE_EXITING);
        }
        self.link = Link::Exited;
        for timer in [Timer::Dial, Timer::Redial, Timer::Heartbeat, Timer::Silence, Timer::Drain] {
            self.timers.cancel(timer);
        }
        self.out.push_back(WorkerOutput::Exit { code, reason });
    }
}
