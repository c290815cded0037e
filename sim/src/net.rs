//! The simulated network: streams between worker processes and the runtime's shell, each
//! FIFO in both directions with its own latency and jitter; partitions that hold bytes (and
//! heal by delivering them or by a reset), blackholed streams, resets, and the shell's
//! keepalive that ends a stream whose peer has been unreachable too long. Dials into a
//! partition hang (the dialer's own timeout ends them).

use std::time::{Duration, Instant};

use switchboard_core::proto::rpc::StreamingMessage;
use switchboard_core::{ConnId, Input};

use crate::procs::{Job, Node, Proc};
use crate::world::{Ev, World};

/// A stream between a worker process and the runtime's shell.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) node: usize,
    /// The runtime's shell still has the stream.
    pub(crate) rt_open: bool,
    /// The worker's side still has it.
    pub(crate) wk_open: bool,
    pub(crate) latency: Duration,
    /// Each direction is FIFO: nothing arrives before what was sent earlier.
    pub(crate) last_to_rt: Instant,
    pub(crate) last_to_wk: Instant,
    /// Held by a partition, in arrival order.
    pub(crate) held: Vec<Ev>,
    /// This stream's path is dead (both ways) while new streams work.
    pub(crate) blackholed: bool,
}

impl World {
    pub(crate) fn partitioned(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.blackholed || self.nodes[c.node].partitioned)
    }

    pub(crate) fn hold(&mut self, conn: ConnId, ev: Ev) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.held.push(ev);
        }
    }

    /// The worker process behind `conn`, if the stream is still its current one.
    pub(crate) fn worker_side(&self, conn: ConnId) -> Option<usize> {
        let c = self.conns.get(&conn)?;
        (c.wk_open && self.nodes[c.node].conn == Some(conn)).then_some(c.node)
    }

    pub(crate) fn delay(&mut self, conn: ConnId) -> Duration {
        let jitter = self.plan.faults.jitter;
        let j = if jitter.is_zero() || self.healed {
            Duration::ZERO
        } else {
            self.rng.duration(Duration::ZERO, jitter)
        };
        self.conns[&conn].latency + j
    }

    /// Schedules something on the runtime → worker direction of `conn`, in order.
    pub(crate) fn send_to_worker(&mut self, conn: ConnId, ev: impl FnOnce(ConnId) -> Ev) {
        let d = self.delay(conn);
        let c = self.conns.get_mut(&conn).expect("a known stream");
        let at = (self.now + d).max(c.last_to_wk);
        c.last_to_wk = at;
        self.at(at, ev(conn));
    }

    /// Schedules something on the worker → runtime direction of `conn`, in order.
    pub(crate) fn send_to_runtime(&mut self, conn: ConnId, ev: impl FnOnce(ConnId) -> Ev) {
        let d = self.delay(conn);
        let c = self.conns.get_mut(&conn).expect("a known stream");
        let at = (self.now + d).max(c.last_to_rt);
        c.last_to_rt = at;
        self.at(at, ev(conn));
    }

    /// A worker dials: the runtime's shell accepts at once; the worker hears back one
    /// latency later. A dial into a partition hangs (the worker's own timeout ends it).
    pub(crate) fn dial(&mut self, node: usize, meta: switchboard_core::ConnMeta) {
        if self.nodes[node].partitioned {
            return;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let (lo, hi) = self.plan.faults.latency;
        let latency = self.rng.duration(lo, hi);
        self.conns.insert(
            conn,
            Conn {
                node,
                rt_open: true,
                wk_open: true,
                latency,
                last_to_rt: self.now,
                last_to_wk: self.now,
                held: Vec::new(),
                blackholed: false,
            },
        );
        self.nodes[node].conn = Some(conn);
        let peer = format!("10.0.{}.{}:50000", self.nodes[node].pool, node);
        self.rt_input(Input::Connected { conn, peer, meta });
        self.send_to_worker(conn, |conn| Ev::DialDone { conn });
    }

    /// Opens a stream from a peer with no worker process behind it.
    pub(crate) fn open_stranger(&mut self, meta: switchboard_core::ConnMeta) -> ConnId {
        let node = self.nodes.len();
        self.nodes.push(Node::stranger(format!("stranger-{node}")));
        self.dial(node, meta);
        self.nodes[node].conn.expect("a stranger is never partitioned")
    }

    /// Both ends of a stream see it end; bytes in flight are lost.
    pub(crate) fn reset_conn(&mut self, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.held.clear();
        let worker_side = c.wk_open;
        self.stats.resets += 1;
        self.end_runtime_side(conn, reason);
        if worker_side {
            self.handle(Ev::WorkerReset { conn, reason: reason.to_owned() });
        }
    }

    /// Streams of a process that either end still has.
    pub(crate) fn conns_of(&self, node: usize) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.node == node && (c.rt_open || c.wk_open))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Re-evaluates whether a process is reachable; when it stops being so, the shell's
    /// keepalive starts counting.
    pub(crate) fn update_reachability(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let unreachable = n.partitioned || n.frozen;
        if unreachable != n.unreachable {
            n.unreachable = unreachable;
            n.reach_epoch += 1;
            if unreachable {
                let epoch = n.reach_epoch;
                let keepalive = self.plan.faults.keepalive;
                self.after(keepalive, Ev::Keepalive { node, epoch });
            }
        }
    }

    pub(crate) fn on_keepalive(&mut self, node: usize, epoch: u64) {
        if self.nodes[node].reach_epoch != epoch || !self.nodes[node].unreachable {
            return;
        }
        for conn in self.conns_of(node) {
            if self.conns[&conn].rt_open {
                self.reset_conn(conn, "keepalive timeout");
            }
        }
    }

    /// A partition ends: held bytes are delivered in order, or lost with a reset.
    pub(crate) fn heal_partition(&mut self, node: usize, reset: bool) {
        self.nodes[node].partitioned = false;
        self.update_reachability(node);
        for conn in self.conns_of(node) {
            if reset {
                self.reset_conn(conn, "connection reset after a partition");
            } else {
                let held = std::mem::take(&mut self.conns.get_mut(&conn).expect("listed").held);
                for ev in held {
                    self.handle(ev);
                }
            }
        }
        // A process that died while cut off: its kernel's reset finally gets through.
        if !self.nodes[node].alive() {
            for conn in self.conns_of(node) {
                self.end_runtime_side(conn, "connection reset by peer");
            }
        }
    }

    /// A frozen process resumes: it reads what arrived meanwhile, then its timers fire.
    pub(crate) fn thaw(&mut self, node: usize) {
        self.nodes[node].frozen = false;
        self.update_reachability(node);
        for ev in std::mem::take(&mut self.nodes[node].held) {
            self.handle(ev);
        }
        if let Proc::Conn(p) = &mut self.nodes[node].proc {
            p.w.handle_timeout(self.now);
        }
        self.pump_conn(node);
    }

    /// A worker writes a message on its current stream.
    pub(crate) fn worker_send(&mut self, node: usize, msg: Box<StreamingMessage>) {
        let Some(conn) = self.nodes[node].conn else { return };
        if !self.conns.get(&conn).is_some_and(|c| c.wk_open) {
            return;
        }
        let duplicate = !self.healed
            && self.plan.faults.duplicate_answer > 0.0
            && matches!(msg.content, Some(switchboard_core::proto::Content::InvocationResponse(_)))
            && self.rng.chance(self.plan.faults.duplicate_answer);
        if duplicate {
            self.stats.duplicates += 1;
            let later = self.rng.duration(Duration::ZERO, Duration::from_secs(2));
            let life = self.nodes[node].life;
            self.after(later, Ev::Proc { node, life, job: Job::Send { msg: msg.clone() } });
        }
        self.send_to_runtime(conn, |conn| Ev::ToRuntime { conn, msg });
    }

    /// A worker closes its current stream (or aborts its dial).
    pub(crate) fn close_by_worker(&mut self, node: usize, reset: bool) {
        let Some(conn) = self.nodes[node].conn.take() else { return };
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.wk_open = false;
        if reset {
            let d = c.latency;
            self.after(d, Ev::RstToRuntime { conn });
        } else {
            self.send_to_runtime(conn, |conn| Ev::ClosedByWorker { conn });
        }
    }
}
