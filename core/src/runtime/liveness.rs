//! Liveness (is the worker there?) kept apart from readiness (can it work now?).
//!
//! Any message counts as life. Workers that advertise heartbeats must send them; workers that
//! advertise `WorkerStatus` are probed when silent; the rest rely on the shell's HTTP/2
//! keepalive and process watch. A disconnected worker that can resume keeps its slot for the
//! grace period; otherwise it is evicted and its in-flight calls settled.

use switchboard_proto::Content;
use switchboard_proto::rpc::{StreamingMessage, WorkerStatusRequest};

use super::{Runtime, Timer, WKey};
use crate::event::{EvictReason, WorkerState};
use crate::ids::ConnId;
use crate::io::CloseReason;

impl Runtime {
    /// Arms the liveness check for a worker that can be checked.
    pub(super) fn arm_liveness(&mut self, w: WKey) {
        let Some(worker) = self.workers.get(&w) else { return };
        let at = if let Some(interval) = worker.caps.heartbeat {
            worker.last_seen + self.cfg.timeouts.heartbeat.max(interval * 2)
        } else if worker.caps.status {
            worker.last_seen + self.cfg.timeouts.status_probe_after
        } else {
            return;
        };
        self.timers.set(Timer::Liveness(w), at);
    }

    /// Lazy check: the timer fires at the earliest moment the worker could be overdue and is
    /// re-armed from `last_seen` when it is not.
    pub(super) fn on_liveness_timer(&mut self, w: WKey) {
        let now = self.now;
        let Some(worker) = self.workers.get_mut(&w) else { return };
        if worker.conn.is_none() {
            return;
        }
        let silent = now.saturating_duration_since(worker.last_seen);
        if let Some(interval) = worker.caps.heartbeat {
            let limit = self.cfg.timeouts.heartbeat.max(interval * 2);
            if silent >= limit {
                return self.evict(w, EvictReason::Silent);
            }
            let at = worker.last_seen + limit;
            self.timers.set(Timer::Liveness(w), at);
        } else if worker.caps.status {
            if worker.probing {
                if silent >= self.cfg.timeouts.status_probe_after + self.cfg.timeouts.status_probe_timeout {
                    return self.evict(w, EvictReason::ProbeTimeout);
                }
            } else if silent >= self.cfg.timeouts.status_probe_after {
                worker.probing = true;
                let msg = StreamingMessage {
                    request_id: String::new(),
                    content: Some(Content::WorkerStatusRequest(WorkerStatusRequest {})),
                };
                self.send_to(w, msg);
                self.timers.set(Timer::Liveness(w), now + self.cfg.timeouts.status_probe_timeout);
                return;
            }
            let worker = &self.workers[&w];
            let at = if worker.probing {
                worker.last_seen
                    + self.cfg.timeouts.status_probe_after
                    + self.cfg.timeouts.status_probe_timeout
            } else {
                worker.last_seen + self.cfg.timeouts.status_probe_after
            };
            self.timers.set(Timer::Liveness(w), at);
        }
    }

    /// Any message is a sign of life.
    pub(super) fn touch(&mut self, w: WKey) {
        let now = self.now;
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.last_seen = now;
            worker.probing = false;
        }
    }

    pub(super) fn on_disconnected(&mut self, conn: ConnId, reason: String) {
        self.stop_waiting(conn);
        let Some(c) = self.conns.remove(&conn) else { return };
        let Some(w) = c.worker else { return };
        let worker = &self.workers[&w];
        let resumable = worker.caps.resume
            && worker.resume_token.is_some()
            && !self.shutting_down
            && matches!(worker.state, WorkerState::Placeholder | WorkerState::Ready | WorkerState::Draining);
        if !resumable {
            return self.evict(w, EvictReason::Disconnected(reason));
        }
        let worker = self.workers.get_mut(&w).expect("live worker");
        worker.conn = None;
        worker.resume_to = worker.state;
        self.timers.cancel(Timer::Liveness(w));
        self.timers.cancel(Timer::Idle(w));
        self.set_state(w, WorkerState::Disconnected, &format!("stream ended ({reason}); may resume"));
        let at = self.now + self.cfg.timeouts.resume_grace;
        self.timers.set(Timer::Resume(w), at);
    }

    pub(super) fn on_resume_expired(&mut self, w: WKey) {
        if self.workers.get(&w).is_some_and(|wk| wk.state == WorkerState::Disconnected) {
            self.evict(w, EvictReason::ResumeExpired);
        }
    }

    pub(super) fn on_malformed(&mut self, conn: ConnId, error: String) {
        match self.conns.get(&conn).map(|c| c.worker) {
            Some(Some(w)) => self.evict(w, EvictReason::Malformed(error)),
            Some(None) => {
                let reason = CloseReason::ProtocolViolation(format!("malformed frame: {error}"));
                self.refuse(conn, None, reason)
            }
            None => {}
        }
    }

    pub(super) fn on_drain_timeout(&mut self, w: WKey) {
        if self.workers.get(&w).is_some_and(|wk| wk.state == WorkerState::Draining) {
            self.evict(w, EvictReason::DrainTimeout);
        }
    }

    /// An idle ready worker is released when its app has more than it wants.
    pub(super) fn on_idle_timer(&mut self, w: WKey) {
        let Some(worker) = self.workers.get(&w) else { return };
        let Some(since) = worker.idle_since else { return }; // busy: re-armed when idle again
        let due = since + self.cfg.timeouts.idle_release;
        if due > self.now {
            return self.timers.set(Timer::Idle(w), due);
        }
        if !worker.routable() || !worker.in_flight.is_empty() {
            return;
        }
        let Some((a, _)) = worker.app else { return };
        let app = &self.apps[&a];
        if app.ready.len() as u32 > self.app_wanted(app) {
            self.release(w, "idle");
        }
    }
}
