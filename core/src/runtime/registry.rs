//! Streams and workers: their records, state transitions, and how they leave.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_proto::Content;
use switchboard_proto::rpc::{StreamingMessage, WorkerTerminate};

use super::specialize::Specializing;
use super::{AKey, IKey, Runtime, Timer, WKey};
use crate::event::{Admission, Event, EvictReason, WorkerState};
use crate::ids::{ConnId, WorkerId};
use crate::io::{CloseReason, ConnMeta, Output};

/// A live stream.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) peer: String,
    pub(super) meta: ConnMeta,
    /// Set once `StartStream` admitted it.
    pub(super) worker: Option<WKey>,
}

/// What a worker said it can do in its `WorkerInitResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Caps {
    /// `WorkerStatus`: answers status probes.
    pub(super) status: bool,
    /// `HandlesWorkerTerminateMessage`.
    pub(super) terminate: bool,
    /// `HandlesInvocationCancelMessage`.
    pub(super) cancel: bool,
    /// `RpcHttpTriggerMetadataRemoved`: no copy of the HTTP request in trigger metadata.
    pub(super) trigger_metadata_removed: bool,
    /// `RawHttpBodyBytes`: bodies as bytes.
    pub(super) raw_body_bytes: bool,
    /// `WorkerIndexing`: answers `FunctionsMetadataRequest`.
    pub(super) indexing: bool,
    /// `SwitchboardHeartbeatMs`: sends `WorkerHeartbeat` at this interval.
    pub(super) heartbeat: Option<Duration>,
    /// `SwitchboardResume`: may reconnect and resume with its token.
    pub(super) resume: bool,
    /// `SwitchboardConcurrency`: its own capacity.
    pub(super) concurrency: Option<u32>,
}

/// Capability keys of Switchboard's connection-mode extensions.
pub mod cap {
    /// Heartbeat interval in milliseconds (worker → runtime).
    pub const HEARTBEAT_MS: &str = "SwitchboardHeartbeatMs";
    /// The worker can resume (worker → runtime).
    pub const RESUME: &str = "SwitchboardResume";
    /// The worker's capacity (worker → runtime).
    pub const CONCURRENCY: &str = "SwitchboardConcurrency";
    /// The resume token (runtime → connection-mode worker).
    pub const RESUME_TOKEN: &str = "SwitchboardResumeToken";
    /// "true" when the runtime restored the worker's slot (runtime → connection-mode worker).
    pub const RESUMED: &str = "SwitchboardResumed";
    /// The worker indexes functions itself (answers `FunctionsMetadataRequest`).
    pub const WORKER_INDEXING: &str = "WorkerIndexing";
    /// `WorkerActionResponse{Restart}.reason` of a worker that drains on its own (worker →
    /// runtime): route it no new work, release it once its in-flight work is answered.
    /// Sent again after each resume until then; idempotent.
    pub const LEAVE_DRAINING: &str = "SwitchboardDraining";
    /// `WorkerActionResponse{Restart}.reason` of a worker that exits before its drain is done
    /// (worker → runtime): it will not resume; settle what it held now.
    pub const LEAVE_EXITING: &str = "SwitchboardExiting";

    // Standard FunctionRpc capability names (worker → host) that Switchboard's own worker sends.

    /// Handles `WorkerTerminate` (drains and exits).
    pub const HANDLES_WORKER_TERMINATE: &str = "HandlesWorkerTerminateMessage";
    /// Handles `InvocationCancel`.
    pub const HANDLES_INVOCATION_CANCEL: &str = "HandlesInvocationCancelMessage";
    /// Answers `WorkerStatusRequest`.
    pub const WORKER_STATUS: &str = "WorkerStatus";
    /// Takes HTTP bodies as bytes.
    pub const RAW_HTTP_BODY_BYTES: &str = "RawHttpBodyBytes";
    /// Needs no copy of the HTTP request in trigger metadata.
    pub const RPC_HTTP_TRIGGER_METADATA_REMOVED: &str = "RpcHttpTriggerMetadataRemoved";
    /// Understands collection types in `TypedData`.
    pub const TYPED_DATA_COLLECTION: &str = "TypedDataCollection";
}

impl Caps {
    pub(super) fn parse(map: &BTreeMap<String, String>) -> Caps {
        let on = |k: &str| {
            map.get(k).is_some_and(|v| {
                let v = v.trim();
                !(v.is_empty() || v.eq_ignore_ascii_case("false") || v == "0")
            })
        };
        Caps {
            status: on("WorkerStatus"),
            terminate: on("HandlesWorkerTerminateMessage"),
            cancel: on("HandlesInvocationCancelMessage"),
            trigger_metadata_removed: on("RpcHttpTriggerMetadataRemoved"),
            raw_body_bytes: on("RawHttpBodyBytes"),
            indexing: on(cap::WORKER_INDEXING),
            heartbeat: map
                .get(cap::HEARTBEAT_MS)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            resume: on(cap::RESUME),
            concurrency: map
                .get(cap::CONCURRENCY)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| *n > 0),
        }
    }
}

/// A worker: an admitted stream's identity and everything the runtime tracks about it.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) id: WorkerId,
    pub(super) pool: usize,
    /// The live stream; `None` while disconnected within the resume grace.
    pub(super) conn: Option<ConnId>,
    pub(super) peer: String,
    /// The runtime asked for this worker (so it may be released through the provisioner).
    pub(super) provisioned: bool,
    pub(super) state: WorkerState,
    /// The state to return to after a resume.
    pub(super) resume_to: WorkerState,
    pub(super) caps: Caps,
    pub(super) connection_mode: bool,
    pub(super) resume_token: Option<String>,
    /// A resumed worker owes a `WorkerInitResponse`.
    pub(super) resume_ack_pending: bool,
    pub(super) last_seen: Instant,
    pub(super) probing: bool,
    pub(super) state_since: Instant,
    /// The app and version it is specialized for.
    pub(super) app: Option<(AKey, u32)>,
    /// Function ids on this worker, aligned with its app version's functions.
    pub(super) function_ids: Option<Arc<Vec<String>>>,
    pub(super) spec: Option<Box<Specializing>>,
    pub(super) in_flight: Vec<IKey>,
    pub(super) capacity: u32,
    /// Invocation ids settled without this worker's answer (timed out, cancelled), so a late
    /// answer is told apart from one for an invocation it was never given.
    pub(super) abandoned: VecDeque<IKey>,
    /// Since when it has had nothing in flight (`None` while busy).
    pub(super) idle_since: Option<Instant>,
}

impl Worker {
    pub(super) fn routable(&self) -> bool {
        self.state == WorkerState::Ready && self.conn.is_some()
    }
}

impl Runtime {
    /// Creates the worker record for an admitted stream and starts its init handshake.
    pub(super) fn add_worker(
        &mut self,
        conn: ConnId,
        id: WorkerId,
        pool: usize,
        via: Admission,
        provisioned: bool,
    ) -> WKey {
        let w = WKey(self.key());
        let (peer, connection_mode) = {
            let c = self.conns.get_mut(&conn).expect("admitting a live stream");
            c.worker = Some(w);
            (c.peer.clone(), c.meta.connection_mode())
        };
        let resume_token = connection_mode.then(|| self.rng.token());
        self.pools[pool].members += 1;
        self.pools[pool].initializing += 1; // born Initializing, without a transition
        self.worker_ids.insert(id.0.clone(), w);
        self.workers.insert(
            w,
            Worker {
                id: id.clone(),
                pool,
                conn: Some(conn),
                peer: peer.clone(),
                provisioned,
                state: WorkerState::Initializing,
                resume_to: WorkerState::Initializing,
                caps: Caps::default(),
                connection_mode,
                resume_token,
                resume_ack_pending: false,
                last_seen: self.now,
                probing: false,
                state_since: self.now,
                app: None,
                function_ids: None,
                spec: None,
                in_flight: Vec::new(),
                capacity: 1,
                abandoned: VecDeque::new(),
                idle_since: None,
            },
        );
        let pool_key = self.pools[pool].spec.key.clone();
        self.emit(Event::WorkerAdmitted { worker: id, pool: pool_key, peer, via });
        self.send_init_request(w, false);
        w
    }

    /// Moves a worker to a new state and reports it.
    pub(super) fn set_state(&mut self, w: WKey, to: WorkerState, reason: &str) {
        let Some(worker) = self.workers.get_mut(&w) else { return };
        let from = worker.state;
        if from == to {
            return;
        }
        worker.state = to;
        worker.state_since = self.now;
        // Membership sets follow the state, here and nowhere else.
        let pool = &mut self.pools[worker.pool];
        match from {
            WorkerState::Initializing => pool.initializing -= 1,
            WorkerState::Placeholder => {
                pool.idle.remove(&w);
                pool.idle_provisioned -= u32::from(worker.provisioned);
            }
            _ => {}
        }
        match to {
            WorkerState::Initializing => pool.initializing += 1,
            WorkerState::Placeholder => {
                pool.idle.insert(w);
                pool.idle_provisioned += u32::from(worker.provisioned);
            }
            _ => {}
        }
        if let Some((version, app)) = worker.app.and_then(|(a, v)| Some((v, self.apps.get_mut(&a)?))) {
            match from {
                WorkerState::Ready => app.ready.retain(|s| s.w != w),
                WorkerState::Specializing => app.specializing -= 1,
                _ => {}
            }
            match to {
                WorkerState::Ready => app.ready.push(super::apps::Slot {
                    w,
                    version,
                    in_flight: worker.in_flight.len() as u32,
                    capacity: worker.capacity,
                }),
                WorkerState::Specializing => app.specializing += 1,
                _ => {}
            }
        }
        let app = worker.app.and_then(|(a, _)| self.apps.get(&a)).map(|a| a.name.clone());
        let event =
            Event::WorkerState { worker: worker.id.clone(), app, from, to, reason: reason.to_owned() };
        self.emit(event);
    }

    /// Sends a message to a worker's live stream, if it has one.
    pub(super) fn send_to(&mut self, w: WKey, msg: StreamingMessage) {
        if let Some(conn) = self.workers.get(&w).and_then(|wk| wk.conn) {
            self.send(conn, msg);
        }
    }

    /// Removes a worker that misbehaved, died or vanished: settles or retries its in-flight
    /// calls, ends its stream, releases its process, and lets pool and app refill.
    pub(super) fn evict(&mut self, w: WKey, reason: EvictReason) {
        let Some(worker) = self.workers.get(&w) else { return };
        let close = match &reason {
            EvictReason::ProtocolViolation(m) | EvictReason::Malformed(m) => {
                CloseReason::ProtocolViolation(m.clone())
            }
            EvictReason::Silent
            | EvictReason::ProbeTimeout
            | EvictReason::PhaseTimeout(_)
            | EvictReason::DrainTimeout => CloseReason::Timeout(reason.to_string()),
            _ => CloseReason::Released(reason.to_string()),
        };
        let app = worker.app.and_then(|(a, _)| self.apps.get(&a)).map(|a| a.name.clone());
        let event = Event::WorkerEvicted {
            worker: worker.id.clone(),
            pool: self.pools[worker.pool].spec.key.clone(),
            app,
            reason: reason.clone(),
            in_flight: worker.in_flight.len(),
        };
        // A worker that never reached the placeholder state counts as a failed provision.
        let failed_early = worker.state == WorkerState::Initializing && worker.provisioned;
        let pool = worker.pool;
        let lost = format!("worker {} {}", worker.id, reason);
        self.emit(event);
        self.counters.evictions += 1;
        self.fail_in_flight(w, &lost);
        let release = !matches!(reason, EvictReason::Exited(_));
        self.remove_worker(w, Some(close), release, &reason.to_string());
        if failed_early {
            self.pool_failure(pool);
        }
    }

    /// Lets a worker go on the runtime's own initiative (drained, idle, extra, tainted).
    /// It must have nothing in flight.
    pub(super) fn release(&mut self, w: WKey, reason: &str) {
        let Some(worker) = self.workers.get(&w) else { return };
        debug_assert!(worker.in_flight.is_empty(), "released workers have nothing in flight");
        let app = worker.app.and_then(|(a, _)| self.apps.get(&a)).map(|a| a.name.clone());
        let event = Event::WorkerReleased { worker: worker.id.clone(), app, reason: reason.to_owned() };
        if worker.caps.terminate
            && let Some(conn) = worker.conn
        {
            let grace = self.cfg.timeouts.terminate_grace;
            let msg = StreamingMessage {
                request_id: String::new(),
                content: Some(Content::WorkerTerminate(WorkerTerminate {
                    grace_period: Some(prost_duration(grace)),
                })),
            };
            self.send(conn, msg);
        }
        self.emit(event);
        self.remove_worker(w, Some(CloseReason::Released(reason.to_owned())), true, reason);
    }

    /// Forgets a worker: stream, timers, pool and app membership. In-flight calls must have
    /// been settled or moved already.
    fn remove_worker(&mut self, w: WKey, close: Option<CloseReason>, release: bool, reason: &str) {
        self.set_state(w, WorkerState::Gone, reason);
        let Some(worker) = self.workers.remove(&w) else { return };
        for timer in [Timer::Phase(w), Timer::Liveness(w), Timer::Resume(w), Timer::Drain(w), Timer::Idle(w)]
        {
            self.timers.cancel(timer);
        }
        self.worker_ids.remove(&worker.id.0);
        if let Some(conn) = worker.conn {
            self.conns.remove(&conn);
            if let Some(reason) = close {
                self.out.push_back(Output::Close { conn, reason });
            }
        }
        if release && worker.provisioned {
            self.out.push_back(Output::Release { worker: worker.id.clone(), reason: reason.to_owned() });
        }
        let pool = worker.pool;
        self.pools[pool].members -= 1;
        if let Some((a, version)) = worker.app {
            self.app_lost_worker(a, version, w);
        }
        self.reconcile_pool(pool);
    }

    /// Remembers an invocation id this worker will not be answered for.
    pub(super) fn abandon(&mut self, w: WKey, i: IKey) {
        let cap = self.cfg.limits.remembered_abandoned;
        if let Some(worker) = self.workers.get_mut(&w) {
            if worker.abandoned.len() >= cap {
                worker.abandoned.pop_front();
            }
            worker.abandoned.push_back(i);
        }
    }
}

/// A `std::time::Duration` as a protobuf duration.
pub(crate) fn prost_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
