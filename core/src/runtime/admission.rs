//! Admission: who may become a worker. A stream must send `StartStream` first, with a worker id
//! the runtime issued (single use, expiring), or carry a pool's join token, or a resume token
//! for a slot it holds. Everything else is refused with a reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchboard_proto::Content;
use switchboard_proto::rpc::{StartStream, StreamingMessage, WorkerInitRequest};

use super::registry::cap;
use super::{Runtime, Timer, WKey, peers};
use crate::error::ExpectError;
use crate::event::{Admission, Event, EvictReason, WorkerState};
use crate::ids::{ConnId, PoolKey, WorkerId};
use crate::io::{CloseReason, ConnMeta, Output, ProvisionRequest};

/// A worker id the runtime issued and nobody has used yet.
#[derive(Debug)]
pub(super) struct Ticket {
    pub(super) pool: usize,
    pub(super) seq: u64,
    /// Registered by [`Runtime::expect_worker`] for a worker an earlier incarnation started:
    /// if it never comes back, that says nothing about the pool's health (no backoff).
    pub(super) adopted: bool,
}

/// Longest worker id accepted.
const MAX_WORKER_ID: usize = 256;

impl Runtime {
    pub(super) fn on_connected(&mut self, conn: ConnId, peer: String, meta: ConnMeta) {
        if self.conns.contains_key(&conn) {
            // The shell numbers streams; a reused number is a shell bug, and the old stream's
            // state must not be overwritten. Refuse the newcomer.
            self.out.push_back(Output::Close {
                conn,
                reason: CloseReason::ProtocolViolation("stream number already in use".into()),
            });
            return;
        }
        let address = peers::address_of(&peer);
        self.conns.insert(conn, super::registry::Conn { peer, meta, worker: None });
        let at = self.now + self.cfg.timeouts.start_stream;
        self.timers.set(Timer::ConnStart(conn), at);
        // One address may hold only so many streams that have not said who they are. The oldest
        // makes room: a worker sends StartStream at once, so the oldest is the likeliest squatter,
        // and refusing newcomers instead would let a squatter lock out real workers that share
        // its address (every local worker comes from 127.0.0.1).
        let cap = self.cfg.limits.max_unadmitted_per_address;
        if let Some(oldest) = self.peers.wait(&address, conn, cap) {
            let why = format!("no StartStream while {cap} newer streams from {address} waited");
            self.refuse(oldest, None, CloseReason::Timeout(why));
        }
    }

    pub(super) fn on_conn_start_timeout(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| c.worker.is_none()) {
            self.refuse(conn, None, CloseReason::Timeout("no StartStream within the deadline".into()));
        }
    }

    /// A stream stops waiting for its `StartStream`: it said who it is, was refused, or ended.
    pub(super) fn stop_waiting(&mut self, conn: ConnId) {
        self.timers.cancel(Timer::ConnStart(conn));
        if let Some(c) = self.conns.get(&conn)
            && c.worker.is_none()
        {
            let address = peers::address_of(&c.peer);
            self.peers.done_waiting(&address, conn);
        }
    }

    /// Refuses a stream that has not become a worker, for a reason that says nothing about its
    /// address (the runtime is shutting down, the pool is full).
    pub(super) fn reject(&mut self, conn: ConnId, worker: Option<WorkerId>, reason: CloseReason) {
        self.stop_waiting(conn);
        let Some(c) = self.conns.remove(&conn) else { return };
        self.counters.rejected += 1;
        self.emit(Event::WorkerRejected { conn, peer: c.peer, worker, reason: reason.message().to_owned() });
        self.out.push_back(Output::Close { conn, reason });
    }

    /// Refuses a stream that failed admission (no valid credential, garbage or silence before
    /// `StartStream`) and counts the failure against its address. While the address is limited
    /// its failures are refused quietly: one event said it is limited, and a flood must not
    /// become a flood of log lines.
    pub(super) fn refuse(&mut self, conn: ConnId, worker: Option<WorkerId>, reason: CloseReason) {
        let Some(c) = self.conns.get(&conn) else { return };
        let address = peers::address_of(&c.peer);
        if self.peers.limited(&address, self.now).is_some() {
            self.stop_waiting(conn);
            self.conns.remove(&conn);
            self.counters.rejected += 1;
            self.out.push_back(Output::Close { conn, reason });
            return;
        }
        let limited = self.peers.failed(&address, self.now, &self.cfg.limits);
        self.reject(conn, worker, reason);
        if let Some(limited) = limited {
            let limits = &self.cfg.limits;
            let within = limits.admission_window;
            self.emit(Event::AdmissionLimited {
                address,
                failures: limited.failures,
                within,
                cooldown: limited.cooldown,
            });
        }
        self.arm_peers_timer();
    }

    /// Refuses a stream of a limited address without looking at its credential.
    fn refuse_limited(&mut self, conn: ConnId, address: &str, left: Duration) {
        self.stop_waiting(conn);
        if self.conns.remove(&conn).is_none() {
            return;
        }
        self.counters.rejected += 1;
        self.counters.rate_limited += 1;
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let why = format!("too many failed admissions from {address}; retry after {secs} s");
        self.out.push_back(Output::Close { conn, reason: CloseReason::RateLimited(why) });
    }

    fn arm_peers_timer(&mut self) {
        match self.peers.next_expiry() {
            Some(at) => self.timers.set(Timer::Peers, at),
            None => self.timers.cancel(Timer::Peers),
        }
    }

    pub(super) fn on_peers_timer(&mut self) {
        self.peers.prune(self.now);
        self.arm_peers_timer();
    }

    /// The first message of a stream.
    pub(super) fn on_start_stream(&mut self, conn: ConnId, start: StartStream) {
        self.timers.cancel(Timer::ConnStart(conn));
        let id = start.worker_id;
        if id.is_empty() || id.len() > MAX_WORKER_ID || id.chars().any(char::is_control) {
            let why = format!("invalid worker id ({} bytes)", id.len());
            return self.refuse(conn, None, CloseReason::ProtocolViolation(why));
        }
        let id = WorkerId(id);
        let Some(c) = self.conns.get(&conn) else { return };
        let meta = c.meta.clone();
        let address = peers::address_of(&c.peer);
        if let Some(left) = self.peers.limited(&address, self.now) {
            // Only a credential the runtime issued is looked at: a provisioned id (real workers
            // of local pools share 127.0.0.1 with whoever is failing) or a resume token for a
            // slot that exists. Both are long random secrets; a join token is the operator's
            // and may be guessable, so it waits for the cooldown.
            let issued = self.tickets.contains_key(&id.0)
                || (meta.resume_token.is_some() && self.worker_ids.contains_key(&id.0));
            if !issued {
                return self.refuse_limited(conn, &address, left);
            }
        }
        self.stop_waiting(conn);

        // A valid join token proves the stream is one of a pool's workers: a conflict over its id
        // (its old stream not yet seen dead, a stale resume token) is then not a failed
        // admission, or a worker that redials eagerly would lock its own address out.
        let conflict = |rt: &mut Self, id: WorkerId, why: &str| {
            let reason = CloseReason::PermissionDenied(why.into());
            match meta.join_token.as_deref().and_then(|t| rt.join_pool(t)) {
                Some(_) => rt.reject(conn, Some(id), reason),
                None => rt.refuse(conn, Some(id), reason),
            }
        };
        if let Some(token) = &meta.resume_token
            && let Some(&w) = self.worker_ids.get(&id.0)
        {
            let valid = self.workers[&w].resume_token.as_deref().is_some_and(|t| ct_eq(t, token));
            if valid {
                return self.resume(conn, w);
            }
            return conflict(self, id, "resume token does not match this worker");
        }
        if self.worker_ids.contains_key(&id.0) {
            return conflict(self, id, "a stream with this worker id is already live");
        }
        if self.shutting_down {
            return self.reject(conn, Some(id), CloseReason::Released("the runtime is shutting down".into()));
        }
        if let Some(ticket) = self.tickets.remove(&id.0) {
            self.ticket_ids.remove(&ticket.seq);
            self.timers.cancel(Timer::Ticket(ticket.seq));
            self.pools[ticket.pool].provisioning -= 1;
            self.add_worker(conn, id, ticket.pool, Admission::Provisioned, true);
            return;
        }
        if let Some(token) = &meta.join_token {
            let Some(pool) = self.join_pool(token) else {
                return self.refuse(
                    conn,
                    Some(id),
                    CloseReason::PermissionDenied("join token not valid".into()),
                );
            };
            if self.pools[pool].members + self.pools[pool].provisioning >= self.pools[pool].spec.max {
                let why = format!("pool {} is full", self.pools[pool].spec.key);
                return self.reject(conn, Some(id), CloseReason::PermissionDenied(why));
            }
            self.add_worker(conn, id, pool, Admission::Joined, false);
            return;
        }
        let why = if meta.resume_token.is_some() {
            "resume token presented for a worker this runtime does not hold"
        } else {
            "unknown worker id: not issued by this runtime, already used, or expired"
        };
        self.refuse(conn, Some(id), CloseReason::Unauthenticated(why.into()));
    }

    /// The pool whose join token `token` is. Every pool's token is compared, so the time taken
    /// does not reveal which pool (or how much of a token) matched.
    fn join_pool(&self, token: &str) -> Option<usize> {
        let mut found = None;
        for (i, pool) in self.pools.iter().enumerate() {
            if let Some(t) = &pool.spec.join_token
                && ct_eq(t, token)
            {
                found = Some(i);
            }
        }
        found
    }

    /// Sends `WorkerInitRequest`; connection-mode workers also get their resume token.
    pub(super) fn send_init_request(&mut self, w: WKey, resumed: bool) {
        let worker = &self.workers[&w];
        let mut capabilities = BTreeMap::new();
        if worker.connection_mode
            && let Some(token) = &worker.resume_token
        {
            capabilities.insert(cap::RESUME_TOKEN.to_owned(), token.clone());
            capabilities.insert(cap::RESUMED.to_owned(), resumed.to_string());
        }
        let msg = StreamingMessage {
            request_id: String::new(),
            content: Some(Content::WorkerInitRequest(WorkerInitRequest {
                host_version: self.cfg.host_version.clone(),
                capabilities,
                log_categories: BTreeMap::new(),
                worker_directory: String::new(),
                function_app_directory: String::new(),
            })),
        };
        self.send_to(w, msg);
        if !resumed {
            let at = self.now + self.cfg.timeouts.init;
            self.timers.set(Timer::Phase(w), at);
        }
    }

    /// Gives a reconnected worker its slot back: app, functions, in-flight invocations.
    fn resume(&mut self, conn: ConnId, w: WKey) {
        let old_conn = self.workers[&w].conn;
        if let Some(old) = old_conn {
            // The worker says its old stream is dead; believe the holder of the token.
            self.conns.remove(&old);
            self.out.push_back(Output::Close {
                conn: old,
                reason: CloseReason::Released("superseded by a resumed stream".into()),
            });
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.worker = Some(w);
        }
        self.timers.cancel(Timer::Resume(w));
        let now = self.now;
        let worker = self.workers.get_mut(&w).expect("resuming a known worker");
        let away = now.saturating_duration_since(worker.state_since);
        worker.conn = Some(conn);
        worker.last_seen = now;
        worker.probing = false;
        worker.resume_ack_pending = true;
        let back_to = if worker.state == WorkerState::Disconnected { worker.resume_to } else { worker.state };
        let id = worker.id.clone();
        let peer = self.conns.get(&conn).map(|c| c.peer.clone()).unwrap_or_default();
        let pool = self.pools[worker.pool].spec.key.clone();
        self.emit(Event::WorkerAdmitted { worker: id.clone(), pool, peer, via: Admission::Resumed });
        self.send_init_request(w, true);
        self.set_state(w, back_to, "resumed");
        let resent = self.resend_in_flight(w);
        self.counters.resumes += 1;
        self.emit(Event::WorkerResumed { worker: id, after: away, resent });
        self.arm_liveness(w);
        self.worker_became_available(w);
    }

    /// Issues a worker id for a pool and asks the provisioner to start a worker with it.
    pub(super) fn provision(&mut self, pool: usize) {
        let seq = self.key();
        let worker = WorkerId(self.rng.uuid());
        let request_id = self.rng.uuid();
        self.tickets.insert(worker.0.clone(), Ticket { pool, seq, adopted: false });
        self.ticket_ids.insert(seq, worker.0.clone());
        let at = self.now + self.cfg.timeouts.provision_ticket;
        self.timers.set(Timer::Ticket(seq), at);
        self.pools[pool].provisioning += 1;
        self.counters.provisions += 1;
        let key = self.pools[pool].spec.key.clone();
        self.emit(Event::ProvisionRequested { worker: worker.clone(), pool: key.clone() });
        self.out.push_back(Output::Provision(ProvisionRequest { worker, request_id, pool: key }));
    }

    /// Expects a worker this run did not provision: one an earlier incarnation of this runtime
    /// started (a pod that outlived a restart) and that may connect again with its old id.
    ///
    /// The id becomes a single-use ticket like a provisioned one, counted as provisioning for
    /// the pool, but no [`Output::Provision`] goes out: the worker already exists. If it has not
    /// connected `within`, the ticket expires like any other: [`Output::Release`] asks the
    /// provisioner to stop it and the pool provisions a replacement, without backoff (an old
    /// worker that does not come back says nothing about the pool's health).
    ///
    /// Register expected workers before the pool provisions their replacements (the shell
    /// adds the pool with `min_idle` 0, expects, then sets the real bounds), or the pool may
    /// briefly hold more workers than it needs; extras are released once they are idle.
    pub fn expect_worker(
        &mut self,
        now: Instant,
        pool: &PoolKey,
        worker: WorkerId,
        within: Duration,
    ) -> Result<(), ExpectError> {
        self.advance(now);
        let id = worker.0;
        if id.is_empty() || id.len() > MAX_WORKER_ID || id.chars().any(char::is_control) {
            return Err(ExpectError::InvalidId(id));
        }
        if self.shutting_down {
            return Err(ExpectError::ShuttingDown);
        }
        let Some(p) = self.pool_index(pool) else { return Err(ExpectError::NoPool(pool.to_string())) };
        if self.tickets.contains_key(&id) || self.worker_ids.contains_key(&id) {
            return Err(ExpectError::Known(id));
        }
        let pool = &mut self.pools[p];
        if pool.members + pool.provisioning >= pool.spec.max {
            return Err(ExpectError::PoolFull(pool.spec.key.to_string()));
        }
        pool.provisioning += 1;
        let seq = self.key();
        self.tickets.insert(id.clone(), Ticket { pool: p, seq, adopted: true });
        self.ticket_ids.insert(seq, id);
        self.timers.set(Timer::Ticket(seq), self.now + within);
        Ok(())
    }

    pub(super) fn on_ticket_expired(&mut self, seq: u64) {
        let Some(id) = self.ticket_ids.remove(&seq) else { return };
        let Some(ticket) = self.tickets.remove(&id) else { return };
        self.pools[ticket.pool].provisioning -= 1;
        let worker = WorkerId(id);
        // Stop whatever was started: it may still be booting and would be refused anyway.
        self.out.push_back(Output::Release {
            worker: worker.clone(),
            reason: "did not connect before its worker id expired".into(),
        });
        self.ticket_failed(ticket, worker, "did not connect before its worker id expired".into());
    }

    pub(super) fn on_provision_failed(&mut self, worker: WorkerId, error: String) {
        let Some(ticket) = self.tickets.remove(&worker.0) else { return };
        self.ticket_ids.remove(&ticket.seq);
        self.timers.cancel(Timer::Ticket(ticket.seq));
        self.pools[ticket.pool].provisioning -= 1;
        self.ticket_failed(ticket, worker, error);
    }

    /// A ticket ended without its worker: a failed provision, or an adopted worker that did not
    /// come back (refilled at once, no backoff).
    fn ticket_failed(&mut self, ticket: Ticket, worker: WorkerId, reason: String) {
        if ticket.adopted {
            let key = self.pools[ticket.pool].spec.key.clone();
            self.emit(Event::ProvisionFailed { worker, pool: key, reason, backoff: Duration::ZERO });
            self.reconcile_pool(ticket.pool);
        } else {
            self.provision_failed(ticket.pool, worker, reason);
        }
    }

    fn provision_failed(&mut self, pool: usize, worker: WorkerId, reason: String) {
        let backoff = self.pool_failure(pool);
        let key = self.pools[pool].spec.key.clone();
        self.emit(Event::ProvisionFailed { worker, pool: key, reason, backoff });
        self.reconcile_pool(pool);
    }

    pub(super) fn on_worker_exited(&mut self, worker: WorkerId, status: String) {
        if self.tickets.contains_key(&worker.0) {
            let error = format!("exited before connecting: {status}");
            return self.on_provision_failed(worker, error);
        }
        if let Some(&w) = self.worker_ids.get(&worker.0) {
            self.evict(w, EvictReason::Exited(status));
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub(super) fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
