//! The levers: the workload (calls, cancels, deploys, removals, scale changes, drains) and the
//! faults, each as a method the seeded driver and the fuzz targets both pull; the heal; and
//! what "recovered" means.

use std::time::Duration;

use switchboard_core::app::ScaleSpec;
use switchboard_core::proto::rpc::TypedData;
use switchboard_core::proto::rpc::typed_data::Data;
use switchboard_core::{CallId, Input, Invoke, Payload, Target, WorkerState};

use crate::observer::CallRec;
use crate::payload::{self, Tag};
use crate::procs::Proc;
use crate::world::{Ev, World};

/// What the harness deployed under an app's name.
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    /// Index in the plan's apps.
    pub(crate) plan: usize,
    pub(crate) function_timeout: Duration,
    pub(crate) removed: bool,
}

/// A kind of fault the seeded driver injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A stream is reset.
    Reset,
    /// A worker is cut off from the runtime for a while.
    Partition,
    /// A worker process is stopped for a while.
    Freeze,
    /// A worker process dies.
    Crash,
    /// A worker process is slow for a while.
    Slow,
    /// One stream's path dies while new streams work.
    Blackhole,
    /// Every worker is cut off from the runtime at once.
    Outage,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl World {
    // ---- schedule ----

    /// Arms the seeded driver: the heal at the end of the faulty phase, the workload, and
    /// each fault that is on.
    pub fn arm_driver(&mut self) {
        let heal = self.t0 + self.plan.faulty_for;
        self.at(heal, Ev::Heal);
        if let crate::plan::Shutdown::During(at) = self.plan.shutdown {
            self.at(self.t0 + at, Ev::Shutdown);
        }
        if let Some(w) = self.plan.workload.clone() {
            let d = self.rng.exp(w.call_every);
            self.after(d, Ev::Call);
            let d = self.rng.exp(w.admin_every);
            self.after(d, Ev::Admin);
        }
        for kind in [
            FaultKind::Reset,
            FaultKind::Partition,
            FaultKind::Freeze,
            FaultKind::Crash,
            FaultKind::Slow,
            FaultKind::Blackhole,
            FaultKind::Outage,
        ] {
            if let Some(mean) = self.fault_mean(kind) {
                let d = self.rng.exp(mean);
                self.after(d, Ev::Fault(kind));
            }
        }
    }

    fn fault_mean(&self, kind: FaultKind) -> Option<Duration> {
        let f = &self.plan.faults;
        match kind {
            FaultKind::Reset => f.reset_every,
            FaultKind::Partition => f.partition_every,
            FaultKind::Freeze => f.freeze_every,
            FaultKind::Crash => f.crash_every,
            FaultKind::Slow => f.slow_every,
            FaultKind::Blackhole => f.blackhole_every,
            FaultKind::Outage => f.outage_every,
        }
    }

    pub(crate) fn deploy_initial_apps(&mut self) {
        for i in 0..self.plan.apps.len() {
            let a = &self.plan.apps[i];
            let (scale, timeout) = (a.scale, a.function_timeout);
            self.deploy(i, scale, timeout);
        }
    }

    pub(crate) fn workload_call(&mut self) {
        let Some(w) = self.plan.workload.clone() else { return };
        if self.healed {
            return;
        }
        let n_apps = self.plan.apps.len();
        let app = if self.rng.chance(0.05) {
            "nope".to_owned()
        } else {
            self.plan.apps[self.rng.index(n_apps)].name.clone()
        };
        let function = match self.rng.below(100) {
            0..40 => "f",
            40..70 => "g",
            70..95 => "q",
            _ => "off",
        };
        let run = match self.rng.below(100) {
            0..70 => self.rng.log_duration(ms(1), ms(100)),
            70..95 => self.rng.log_duration(ms(100), ms(2_000)),
            _ => self.rng.log_duration(ms(2_000), ms(12_000)),
        };
        let fail = self.rng.chance(w.failure);
        let timeout = self.rng.chance(0.3).then(|| self.rng.log_duration(ms(200), ms(8_000)));
        let call = self.invoke(&app, function, run, fail, timeout);
        if self.rng.chance(w.cancel) {
            let d = self.rng.log_duration(ms(1), ms(3_000));
            self.after(d, Ev::CancelCall { call });
        }
        let d = self.rng.exp(w.call_every);
        self.after(d, Ev::Call);
    }

    pub(crate) fn workload_admin(&mut self) {
        let Some(w) = self.plan.workload.clone() else { return };
        if self.healed || self.rt.is_shutting_down() {
            return;
        }
        let app = self.rng.index(self.plan.apps.len());
        match self.rng.below(100) {
            0..30 => {
                let (scale, timeout) = self.random_scale(app);
                self.deploy(app, scale, timeout);
            }
            30..45 => {
                // Removed for a while, then deployed again (calls meanwhile find no app).
                self.remove(app);
                let d = self.rng.duration(ms(200), ms(5_000));
                self.after(d, Ev::Restore { app });
            }
            45..70 => {
                let (scale, _) = self.random_scale(app);
                self.scale(app, scale);
            }
            70..85 => {
                let n = self.rng.u64() as usize;
                self.drain_nth(n);
            }
            _ => {
                let pool = self.rng.index(self.plan.pools.len());
                let min_idle = self.rng.range(0, 3) as u32;
                self.resize_pool(pool, min_idle);
            }
        }
        let d = self.rng.exp(w.admin_every);
        self.after(d, Ev::Admin);
    }

    /// A new scale within the plan's bounds (so the pool always has room for every app).
    pub(crate) fn random_scale(&mut self, app: usize) -> (ScaleSpec, Duration) {
        let max_workers = self.plan.apps[app].scale.max_workers;
        let scale = ScaleSpec {
            min_workers: self.rng.range(0, u64::from(max_workers)) as u32,
            max_workers,
            concurrency: self.rng.range(1, 4) as u32,
            queue_limit: self.rng.range(1, 20) as u32,
        };
        (scale, ms(self.rng.range(1_000, 8_000)))
    }

    pub(crate) fn fault(&mut self, kind: FaultKind) {
        if self.healed {
            return;
        }
        let n = self.rng.u64() as usize;
        let f = self.plan.faults.clone();
        match kind {
            FaultKind::Reset => self.reset_nth(n),
            FaultKind::Partition => {
                let len = self.rng.duration(ms(100), f.partition_max);
                let reset = self.rng.chance(f.partition_reset);
                self.partition_nth(n, len, reset);
            }
            FaultKind::Freeze => {
                let len = self.rng.duration(ms(50), f.freeze_max);
                self.freeze_nth(n, len);
            }
            FaultKind::Crash => self.crash_nth(n),
            FaultKind::Slow => {
                let len = self.rng.duration(ms(500), ms(10_000));
                self.slow_nth(n, f.slow_factor, len);
            }
            FaultKind::Blackhole => self.blackhole_nth(n),
            FaultKind::Outage => {
                let len = self.rng.duration(ms(200), f.partition_max.max(ms(1_000)));
                let reset = self.rng.chance(f.partition_reset);
                self.outage(len, reset);
            }
        }
        if let Some(mean) = self.fault_mean(kind) {
            let d = self.rng.exp(mean);
            self.after(d, Ev::Fault(kind));
        }
    }

    // ---- the workload's levers ----

    /// A caller invokes `function` of `app`; the function will run for `run` and raise if
    /// `fail`. Returns the call's id.
    pub fn invoke(
        &mut self,
        app: &str,
        function: &str,
        run: Duration,
        fail: bool,
        timeout: Option<Duration>,
    ) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        self.stats.calls += 1;
        let tag = Tag { call: call.0, run_ms: run.as_millis() as u64, fail };
        let (target, payload) = if function == "q" {
            let data = TypedData { data: Some(Data::Json(tag.encode())) };
            (Target::Function("q".into()), Payload::Data(data))
        } else {
            let target = Target::Route { method: "GET".into(), path: format!("api/{function}") };
            (target, Payload::Http(payload::http_request(app, function, tag)))
        };
        let deployed = self.apps.get(app).filter(|d| !d.removed);
        let deadline =
            deployed.map(|d| self.now + timeout.map_or(d.function_timeout, |t| t.min(d.function_timeout)));
        let broken = deployed.is_some_and(|d| self.plan.apps[d.plan].broken);
        let made = self.elapsed();
        let rec =
            CallRec { app: app.to_owned(), function: function.to_owned(), deadline, fail, broken, made };
        self.obs.call_made(call, rec);
        let invoke = Invoke { call, app: app.to_owned(), target, payload, trace: None, timeout };
        self.rt_input(Input::Invoke(invoke));
        call
    }

    /// The caller of the `n`th open call goes away.
    pub fn cancel_nth(&mut self, n: usize) {
        if let Some(call) = self.obs.nth_open(n) {
            self.rt_input(Input::Cancel { call });
        }
    }

    /// The runtime begins a graceful shutdown (SIGTERM to the runtime): calls are refused,
    /// waiting ones answered, placeholders released, busy workers drain.
    pub fn begin_shutdown(&mut self) {
        if self.rt.is_shutting_down() {
            return;
        }
        self.note(|| "admin: begin shutdown".to_owned());
        self.obs.shutdown_begun = true;
        self.rt.begin_shutdown(self.now);
        self.pump_rt();
    }

    /// Steps until the runtime reports its shutdown complete with every call answered and no
    /// worker left; fails past [`Plan::recovery_bound`].
    pub fn settle_shutdown(&mut self) -> Result<(), String> {
        let deadline = self.now + self.plan.recovery_bound();
        loop {
            if let Some(v) = self.violation() {
                return Err(v.to_owned());
            }
            let done = self.obs.shutdown_complete && self.obs.open_calls() == 0;
            if done {
                let left = self.rt.workers(self.now).len();
                if left > 0 || self.rt.open_calls() > 0 {
                    return Err(format!(
                        "shutdown reported complete with {left} workers and {} calls left",
                        self.rt.open_calls()
                    ));
                }
                return Ok(());
            }
            if self.now >= deadline {
                return Err(format!(
                    "shutdown not complete {:.1}s after the heal (the bound); {} calls open",
                    self.plan.recovery_bound().as_secs_f64(),
                    self.obs.open_calls()
                ));
            }
            self.step(deadline);
        }
    }

    /// Deploys app `i` of the plan (a new version if it is deployed).
    pub fn deploy(&mut self, i: usize, scale: ScaleSpec, function_timeout: Duration) {
        if self.rt.is_shutting_down() {
            return; // refused (`AppError::ShuttingDown`); nothing to check
        }
        let a = &self.plan.apps[i];
        let language = self.plan.pools[a.pool].spec.key.language.clone();
        let spec = payload::app_spec(&a.name, &language, scale, function_timeout, a.broken);
        let name = a.name.clone();
        self.stats.admin += 1;
        self.note(|| format!("admin: deploy {name} {scale:?} timeout {function_timeout:?}"));
        match self.rt.deploy(self.now, spec) {
            Ok(_) => {
                self.apps.insert(name, Deployed { plan: i, function_timeout, removed: false });
            }
            Err(e) => self.violate(format!("deploying {name} failed: {e}")),
        }
        self.pump_rt();
    }

    /// Removes app `i` of the plan, if deployed.
    pub fn remove(&mut self, i: usize) {
        let name = self.plan.apps[i].name.clone();
        let Some(d) = self.apps.get_mut(&name).filter(|d| !d.removed) else { return };
        d.removed = true;
        self.stats.admin += 1;
        self.note(|| format!("admin: remove {name}"));
        if let Err(e) = self.rt.remove_app(self.now, &name) {
            self.violate(format!("removing {name} failed: {e}"));
        }
        self.pump_rt();
    }

    /// Changes app `i`'s scale, if deployed.
    pub fn scale(&mut self, i: usize, scale: ScaleSpec) {
        let name = self.plan.apps[i].name.clone();
        if self.apps.get(&name).is_none_or(|d| d.removed) {
            return;
        }
        self.stats.admin += 1;
        self.note(|| format!("admin: scale {name} {scale:?}"));
        if let Err(e) = self.rt.scale_app(self.now, &name, scale) {
            self.violate(format!("scaling {name} failed: {e}"));
        }
        self.pump_rt();
    }

    /// An operator drains the `n`th worker the runtime lists.
    pub fn drain_nth(&mut self, n: usize) {
        let workers = self.rt.workers(self.now);
        if workers.is_empty() {
            return;
        }
        let id = workers[n % workers.len()].id.clone();
        self.stats.admin += 1;
        self.note(|| format!("admin: drain {id}"));
        if let Err(e) = self.rt.drain_worker(self.now, &id) {
            self.violate(format!("draining {id} failed: {e}"));
        }
        self.pump_rt();
    }

    /// Changes a provisioned pool's `min_idle`, at most to the planned one (so the pool keeps
    /// room for every app).
    pub fn resize_pool(&mut self, pool: usize, min_idle: u32) {
        let Some(plan) = self.plan.pools.get(pool) else { return };
        if !plan.spec.provisioned {
            return;
        }
        let mut spec = plan.spec.clone();
        spec.min_idle = min_idle.min(spec.min_idle);
        self.stats.admin += 1;
        let (key, m) = (spec.key.clone(), spec.min_idle);
        self.note(|| format!("admin: pool {key} min_idle {m}"));
        if let Err(e) = self.rt.upsert_pool(self.now, spec) {
            self.violate(format!("resizing pool {key} failed: {e}"));
        }
        self.pump_rt();
    }

    // ---- the faults' levers ----

    fn nth_alive(&self, n: usize, pred: impl Fn(&crate::procs::Node) -> bool) -> Option<usize> {
        let alive: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].alive() && pred(&self.nodes[i])).collect();
        (!alive.is_empty()).then(|| alive[n % alive.len()])
    }

    /// Resets the `n`th open stream (a middlebox drops the connection, a load balancer
    /// restarts): both ends see it end; bytes in flight are lost.
    pub fn reset_nth(&mut self, n: usize) {
        let open: Vec<_> =
            self.conns.iter().filter(|(_, c)| c.rt_open && c.wk_open).map(|(k, _)| *k).collect();
        if open.is_empty() {
            return;
        }
        let conn = open[n % open.len()];
        self.note(|| format!("fault: reset {conn}"));
        self.reset_conn(conn, "connection reset");
    }

    /// Kills the path of the `n`th open stream (a stale NAT entry, a load balancer that lost
    /// the flow): its bytes vanish both ways, but new streams work. The worker may notice the
    /// silence and dial again (its resume can then supersede the old stream); the shell's
    /// keepalive ends the old stream.
    pub fn blackhole_nth(&mut self, n: usize) {
        let open: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| c.rt_open && c.wk_open && !c.blackholed)
            .map(|(k, _)| *k)
            .collect();
        if open.is_empty() {
            return;
        }
        let conn = open[n % open.len()];
        self.stats.blackholes += 1;
        self.note(|| format!("fault: blackhole {conn}"));
        self.conns.get_mut(&conn).expect("listed").blackholed = true;
        let keepalive = self.plan.faults.keepalive;
        self.after(keepalive, Ev::StreamKeepalive { conn });
    }

    /// Cuts the `n`th live process off from the runtime for `len` (a network partition, a
    /// node losing its route): bytes both ways are held, dials hang; the shell's keepalive
    /// may declare the stream dead meanwhile. At the end the held bytes are delivered, or
    /// (with `reset`) the streams are reset and the bytes lost.
    pub fn partition_nth(&mut self, n: usize, len: Duration, reset: bool) {
        let Some(node) = self.nth_alive(n, |x| !x.partitioned) else { return };
        self.stats.partitions += 1;
        let id = self.nodes[node].id.clone();
        self.note(|| format!("fault: partition {id} for {len:?} (reset at the end: {reset})"));
        let nd = &mut self.nodes[node];
        nd.partitioned = true;
        nd.part_epoch += 1;
        let epoch = nd.part_epoch;
        self.update_reachability(node);
        self.after(len, Ev::HealPartition { node, epoch, reset });
    }

    /// Cuts every live process off from the runtime for `len` (the runtime's own network
    /// fails): as [`World::partition_nth`] for all at once.
    pub fn outage(&mut self, len: Duration, reset: bool) {
        self.note(|| format!("fault: outage for {len:?} (reset at the end: {reset})"));
        let alive =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].alive() && !self.nodes[i].partitioned).count();
        for _ in 0..alive {
            self.partition_nth(0, len, reset);
        }
    }

    /// Stops the `n`th live process for `len` (SIGSTOP, a long GC pause, a VM migration): it
    /// reads nothing and its timers do not fire; its handler stops too.
    pub fn freeze_nth(&mut self, n: usize, len: Duration) {
        let Some(node) = self.nth_alive(n, |x| !x.frozen) else { return };
        self.stats.freezes += 1;
        let id = self.nodes[node].id.clone();
        self.note(|| format!("fault: freeze {id} for {len:?}"));
        let nd = &mut self.nodes[node];
        nd.frozen = true;
        nd.freeze_epoch += 1;
        let epoch = nd.freeze_epoch;
        self.update_reachability(node);
        self.after(len, Ev::Thaw { node, epoch });
    }

    /// Kills the `n`th live process (SIGKILL, the OOM killer, a node failure): its stream is
    /// reset, the provisioner reports the exit; the runtime provisions a replacement, or an
    /// orchestrator restarts an external worker.
    pub fn crash_nth(&mut self, n: usize) {
        let Some(node) = self.nth_alive(n, |_| true) else { return };
        self.stats.crashes += 1;
        let id = self.nodes[node].id.clone();
        self.note(|| format!("fault: crash {id}"));
        self.process_died(node, "killed by signal 9".into(), true);
    }

    /// Makes the `n`th live process `factor` times slower for `len` (a noisy neighbour, CPU
    /// throttling): its handler and its replies take longer.
    pub fn slow_nth(&mut self, n: usize, factor: u32, len: Duration) {
        let Some(node) = self.nth_alive(n, |_| true) else { return };
        self.stats.slow += 1;
        let nd = &mut self.nodes[node];
        nd.slow = factor.max(1);
        nd.slow_epoch += 1;
        let epoch = nd.slow_epoch;
        self.after(len, Ev::Unslow { node, epoch });
    }

    // ---- heal and recovery ----

    /// Ends every fault: partitions heal (held bytes delivered), frozen processes resume, slow
    /// ones speed up; no new faults, no new workload.
    pub fn heal(&mut self) {
        self.healed = true;
        self.note(|| "heal".to_owned());
        for node in 0..self.nodes.len() {
            if self.nodes[node].partitioned {
                self.heal_partition(node, false);
            }
            if self.nodes[node].frozen {
                self.thaw(node);
            }
            self.nodes[node].slow = 1;
        }
    }

    /// Whether the system is back to a quiet, complete state; if not, what is missing.
    /// - every call answered;
    /// - every provisioned pool holds `min_idle` placeholders (as far as its `max` allows) and
    ///   no provision is in flight;
    /// - every live worker process is admitted, in a settled state (placeholder or ready) on
    ///   an open stream, and no process is booting;
    /// - every worker the runtime holds has a live process behind it.
    pub fn recovered(&self) -> Result<(), String> {
        if self.obs.open_calls() > 0 || self.rt.open_calls() > 0 {
            return Err(format!(
                "{} calls open ({} in the runtime): {}",
                self.obs.open_calls(),
                self.rt.open_calls(),
                self.obs.describe_open()
            ));
        }
        if let Some(t) = self.obs.tickets().next() {
            return Err(format!("provision of {t} still in flight"));
        }
        for p in self.rt.pools() {
            let plan = self.plan.pools.iter().find(|x| x.spec.key == p.key).expect("planned pool");
            if !plan.spec.provisioned {
                continue;
            }
            let busy = p.members - p.idle as u32;
            let target = p.min_idle.min(p.max.saturating_sub(busy));
            if (p.idle as u32) < target {
                return Err(format!("pool {} has {} idle placeholders, wants {target}", p.key, p.idle));
            }
        }
        let workers = self.rt.workers(self.now);
        for (i, n) in self.nodes.iter().enumerate() {
            if matches!(n.proc, Proc::Booting) {
                return Err(format!("process {i} ({}) still booting", n.id));
            }
            if !n.alive() {
                continue;
            }
            let Some(w) = workers.iter().find(|w| w.id == n.id) else {
                return Err(format!(
                    "live process {} is not a worker of the runtime: {}",
                    n.id,
                    n.describe()
                ));
            };
            if !matches!(w.state, WorkerState::Placeholder | WorkerState::Ready) {
                return Err(format!("worker {} is {}", w.id, w.state));
            }
            let open = n.conn.and_then(|c| self.conns.get(&c)).is_some_and(|c| c.rt_open && c.wk_open);
            if !open {
                return Err(format!("worker {} has no open stream: {}", n.id, n.describe()));
            }
        }
        for w in &workers {
            let live = self.by_id.get(&w.id).is_some_and(|&i| self.nodes[i].alive());
            if !live {
                return Err(format!("runtime holds worker {} ({}) with no process behind it", w.id, w.state));
            }
        }
        Ok(())
    }

    /// Whether an app is failing fast (backing off after failed specializations).
    pub(crate) fn app_failing(&self, name: &str) -> bool {
        self.rt.app(name).is_some_and(|a| a.failing)
    }

    /// The apps the harness has deployed and not removed, with whether each is broken.
    pub(crate) fn live_apps(&self) -> Vec<(String, bool)> {
        self.apps
            .iter()
            .filter(|(_, d)| !d.removed)
            .map(|(name, d)| (name.clone(), self.plan.apps[d.plan].broken))
            .collect()
    }
}
