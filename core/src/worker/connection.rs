//! The stream: dial, register (fresh or resumed), heartbeat, notice silence, redial with
//! capped exponential backoff and seeded jitter.

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_proto::Content;
use switchboard_proto::rpc::{
    StartStream, StatusResult, WorkerHeartbeat, WorkerInitRequest, WorkerInitResponse, status_result,
};

use super::{DrainCause, Link, Timer, Worker, WorkerEvent, WorkerOutput};
use crate::io::ConnMeta;
use crate::runtime::cap;

/// Heartbeats awaiting their echo that are tracked at most.
const MAX_UNECHOED: usize = 1024;

impl Worker {
    /// Asks the shell to dial, with the join token and (once known) the resume token.
    pub(super) fn dial(&mut self) {
        // A local drain only reconnects to deliver what the old slot is owed: without the join
        // token a runtime that lost the slot refuses the stream instead of admitting a fresh
        // worker that would leave at once.
        let join = self.drain.as_ref().is_none_or(|d| d.cause != DrainCause::Local);
        let meta = ConnMeta {
            join_token: self.cfg.join_token.clone().filter(|_| join),
            resume_token: self.resume_token.clone(),
        };
        self.link = Link::Dialing;
        self.timers.set(Timer::Dial, self.now + self.cfg.connect_timeout);
        self.out.push_back(WorkerOutput::Connect { meta });
    }

    pub(super) fn on_connected(&mut self) {
        if self.link != Link::Dialing {
            self.unexpected("Connected while no dial was in progress");
            if self.link == Link::Down {
                // A stream nobody asked for (or one whose dial was aborted): drop it. With a
                // live stream, `CloseStream` would end that one instead.
                self.out.push_back(WorkerOutput::CloseStream);
            }
            return;
        }
        self.timers.cancel(Timer::Dial);
        self.stream += 1;
        self.link = Link::Handshaking;
        self.last_heard = self.now;
        self.heartbeats.clear();
        self.emit(WorkerEvent::Connected);
        let worker_id = self.cfg.worker_id.clone();
        self.send(String::new(), Content::StartStream(StartStream { worker_id }));
        self.timers.set(Timer::Silence, self.now + self.cfg.runtime_silence);
    }

    pub(super) fn on_connect_failed(&mut self, error: String) {
        if self.link != Link::Dialing {
            return self.unexpected(format!("ConnectFailed while no dial was in progress: {error}"));
        }
        self.timers.cancel(Timer::Dial);
        self.link = Link::Down;
        self.emit(WorkerEvent::ConnectFailed { error });
        self.after_link_loss();
    }

    pub(super) fn on_dial_timeout(&mut self) {
        if self.link != Link::Dialing {
            return;
        }
        self.out.push_back(WorkerOutput::CloseStream);
        let error = format!("no connection within {:?}", self.cfg.connect_timeout);
        self.link = Link::Down;
        self.emit(WorkerEvent::ConnectFailed { error });
        self.after_link_loss();
    }

    pub(super) fn on_disconnected(&mut self, reason: String) {
        match self.link {
            // A stream that ends before the shell said it opened is a failed dial.
            Link::Dialing => self.on_connect_failed(reason),
            Link::Handshaking | Link::Registered => self.lose_link(reason, false),
            Link::Down | Link::Exited => {
                self.unexpected(format!("Disconnected with no stream open: {reason}"))
            }
        }
    }

    /// The stream is gone (or presumed dead, and then closed here).
    pub(super) fn lose_link(&mut self, reason: String, close: bool) {
        if close {
            self.out.push_back(WorkerOutput::CloseStream);
        }
        self.link = Link::Down;
        self.timers.cancel(Timer::Heartbeat);
        self.timers.cancel(Timer::Silence);
        // Echoes of this stream's heartbeats will never come.
        self.heartbeats.clear();
        self.emit(WorkerEvent::Disconnected { reason });
        self.after_link_loss();
    }

    /// After a failed dial or a lost stream: finish a drain that has nothing left to deliver,
    /// else schedule the next dial.
    fn after_link_loss(&mut self) {
        if self.drain.is_some() {
            self.check_drained();
            if self.link == Link::Exited
                || self.drain.as_ref().is_some_and(|d| d.cause == DrainCause::Terminate)
            {
                return;
            }
        }
        self.failures = self.failures.saturating_add(1);
        let after = self.jittered(self.cfg.reconnect.delay(self.failures));
        let at = self.now + after;
        if self.drain.as_ref().is_some_and(|d| at >= d.deadline) {
            return; // the drain deadline ends the process first
        }
        self.timers.set(Timer::Redial, at);
        self.emit(WorkerEvent::Reconnecting { attempt: self.failures, after });
    }

    pub(super) fn on_redial_timer(&mut self) {
        if self.link == Link::Down {
            self.dial();
        }
    }

    /// `base` spread uniformly over ± `jitter_percent` of itself.
    fn jittered(&mut self, base: Duration) -> Duration {
        let base_ns = base.as_nanos();
        let spread = base_ns * u128::from(self.cfg.jitter_percent) / 100;
        if spread == 0 {
            return base;
        }
        let offset = u128::from(self.rng.u64()) % (2 * spread + 1);
        Duration::from_nanos(u64::try_from(base_ns - spread + offset).unwrap_or(u64::MAX))
    }

    /// The runtime's answer to `StartStream`: registered, in a fresh slot or our old one.
    pub(super) fn on_init_request(&mut self, req: WorkerInitRequest, request_id: String) {
        let token = req.capabilities.get(cap::RESUME_TOKEN).filter(|t| !t.is_empty()).cloned();
        let resumed = token.is_some() && req.capabilities.get(cap::RESUMED).is_some_and(|v| v == "true");
        // A runtime that gives no token does not speak connection mode: it neither resumes
        // nor echoes heartbeats, so an old token is meaningless to it.
        self.resume_token = token;
        let capabilities = self.capabilities();
        let response = WorkerInitResponse {
            worker_version: self.cfg.worker_version.clone(),
            capabilities,
            result: Some(StatusResult {
                status: status_result::Status::Success as i32,
                ..Default::default()
            }),
            worker_metadata: None,
        };
        self.send(request_id, Content::WorkerInitResponse(response));
        self.link = Link::Registered;
        self.failures = 0;
        self.timers.set(Timer::Heartbeat, self.now + self.cfg.heartbeat_interval);
        if resumed {
            let flushed = self.flush_buffered();
            self.emit(WorkerEvent::Resumed { flushed });
            if self.drain.as_ref().is_some_and(|d| d.cause == DrainCause::Local) {
                // The signal may have been lost with the old stream; it is idempotent.
                self.send_leave(cap::LEAVE_DRAINING);
            }
        } else {
            self.forget_lost_slot();
            self.emit(WorkerEvent::Registered);
        }
        if self.drain.is_some() {
            self.check_drained();
        }
    }

    /// What `WorkerInitResponse` advertises.
    fn capabilities(&self) -> BTreeMap<String, String> {
        let ms = self.cfg.heartbeat_interval.as_millis().max(1).to_string();
        let mut caps = BTreeMap::from([(cap::HEARTBEAT_MS.to_owned(), ms)]);
        for key in [
            cap::RESUME,
            cap::HANDLES_WORKER_TERMINATE,
            cap::HANDLES_INVOCATION_CANCEL,
            cap::WORKER_STATUS,
            cap::RAW_HTTP_BODY_BYTES,
            cap::RPC_HTTP_TRIGGER_METADATA_REMOVED,
            cap::TYPED_DATA_COLLECTION,
        ] {
            caps.insert(key.to_owned(), "true".to_owned());
        }
        caps.extend(self.cfg.capabilities.iter().map(|(k, v)| (k.clone(), v.clone())));
        caps
    }

    pub(super) fn on_heartbeat_timer(&mut self) {
        if self.link == Link::Registered {
            self.send_heartbeat();
            self.timers.set(Timer::Heartbeat, self.now + self.cfg.heartbeat_interval);
        }
    }

    /// Sends a heartbeat; its echo will confirm every response sent before it.
    pub(super) fn send_heartbeat(&mut self) {
        // Only a runtime that speaks connection mode echoes, and its silence bound keeps the
        // queue short. Past the cap an echo pairs with an older heartbeat, which confirms less
        // than it could: never more.
        if self.resume_token.is_some() && self.heartbeats.len() < MAX_UNECHOED {
            self.heartbeats.push_back(self.ledger.next_seq());
        }
        self.send(String::new(), Content::WorkerHeartbeat(WorkerHeartbeat {}));
    }

    /// A `WorkerHeartbeat` from the runtime: the echo of our oldest unechoed one.
    pub(super) fn on_heartbeat_echo(&mut self) {
        // An unsolicited heartbeat (none outstanding) only counts as life.
        if let Some(seq) = self.heartbeats.pop_front() {
            self.ledger.confirm_below(seq);
            if self.drain.is_some() {
                self.check_drained();
            }
        }
    }

    /// Whether silence from the runtime means a dead stream: always while handshaking (it
    /// answers `StartStream` at once), and while registered with a runtime that echoes
    /// heartbeats (one that gave a resume token). Others are left to the transport.
    fn silence_watched(&self) -> bool {
        match self.link {
            Link::Handshaking => true,
            Link::Registered => self.resume_token.is_some(),
            _ => false,
        }
    }

    pub(super) fn on_silence_timer(&mut self) {
        if !self.silence_watched() {
            return;
        }
        let silent = self.now.saturating_duration_since(self.last_heard);
        if silent >= self.cfg.runtime_silence {
            return self.lose_link(format!("no message from the runtime for {silent:?}"), true);
        }
        self.timers.set(Timer::Silence, self.last_heard + self.cfg.runtime_silence);
    }
}
