//! Worker processes and the provisioner that starts and stops them.
//!
//! Two kinds of worker:
//! - **legacy**: scripted after the real Azure Functions Python worker 1.1.9. It answers what
//!   it is asked, runs invocations concurrently and answers them in completion order, sends no
//!   heartbeats, advertises only the Python worker's capabilities, and exits when its stream
//!   ends or it cannot connect (the host restarts it; here, the runtime provisions another).
//! - **connection mode**: the real `core::worker` state machine (register, heartbeat, notice
//!   silence, redial with backoff and jitter, resume, drain) with a simulated custom handler.
//!
//! Both check, as workers, what they are sent: a legacy worker never sees a Switchboard
//! extension; no worker is sent the settings or the invocations of an app it was not
//! specialized for; no worker runs one invocation twice within one slot.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard_core::proto::Content;
use switchboard_core::proto::rpc::{
    FunctionEnvironmentReloadRequest, FunctionMetadataResponse, InvocationRequest, InvocationResponse,
    RpcException, RpcFunctionMetadata, RpcLog, StartStream, StatusResult, StreamingMessage,
    WorkerStatusResponse, status_result,
};
use switchboard_core::testkit::{
    env_reload_ok, failed, init_response, load_response, msg, ok, python_capabilities,
};
use switchboard_core::worker::{Worker, WorkerConfig, WorkerInput, WorkerOutput};
use switchboard_core::{ConnMeta, Input, ProvisionRequest, WorkerId};

use crate::payload::{self, Tag};
use crate::plan::join_token;
use crate::world::{Ev, World};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a process is doing.
#[derive(Debug)]
pub(crate) enum Proc {
    /// Started, not yet running its code.
    Booting,
    /// A legacy (Python-like) worker.
    Legacy(Box<Legacy>),
    /// A connection-mode worker.
    Conn(Box<ConnProc>),
    /// Gone (or never started).
    Dead,
}

/// A legacy worker's memory.
#[derive(Debug, Default)]
pub(crate) struct Legacy {
    /// Advertises `WorkerStatus` (newer Python workers do), so the runtime probes it.
    status: bool,
    /// Advertises `WorkerIndexing` (the Python v2 programming model): answers
    /// `FunctionsMetadataRequest` with its own function ids.
    indexing: bool,
    /// The app it was specialized for.
    app: Option<String>,
    /// Invocation ids it was asked to run.
    invoked: BTreeSet<String>,
}

/// A connection-mode worker and its handler.
#[derive(Debug)]
pub(crate) struct ConnProc {
    pub(crate) w: Worker,
    /// Bumped when the app is reset: the handler's unfinished work is void.
    handler_gen: u32,
    app: Option<String>,
    invoked: BTreeSet<String>,
}

/// Work inside a process that finishes later.
#[derive(Debug)]
pub(crate) enum Job {
    /// A message to write (a legacy worker's answer, or any worker's duplicate).
    Send { msg: Box<StreamingMessage> },
    /// The handler of a connection-mode worker answers its core.
    Handler { epoch: u32, input: WorkerInput },
    /// A legacy worker gives up dialing.
    ConnectTimeout,
}

/// One worker process slot: an id and the processes that ran under it.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) pool: usize,
    pub(crate) provisioned: bool,
    pub(crate) legacy: bool,
    /// An orchestrator restarts it when it exits (external pools).
    pub(crate) restarts: bool,
    /// Bumped when a process ends: work of the old process is void.
    pub(crate) life: u32,
    pub(crate) proc: Proc,
    pub(crate) conn: Option<switchboard_core::ConnId>,
    pub(crate) frozen: bool,
    pub(crate) held: Vec<Ev>,
    pub(crate) freeze_epoch: u64,
    pub(crate) partitioned: bool,
    pub(crate) part_epoch: u64,
    pub(crate) unreachable: bool,
    pub(crate) reach_epoch: u64,
    pub(crate) slow: u32,
    pub(crate) slow_epoch: u64,
}

impl Node {
    fn new(id: String, pool: usize, provisioned: bool, legacy: bool) -> Node {
        Node {
            id,
            pool,
            provisioned,
            legacy,
            restarts: !provisioned,
            life: 0,
            proc: Proc::Booting,
            conn: None,
            frozen: false,
            held: Vec::new(),
            freeze_epoch: 0,
            partitioned: false,
            part_epoch: 0,
            unreachable: false,
            reach_epoch: 0,
            slow: 1,
            slow_epoch: 0,
        }
    }

    /// A peer with no worker process behind it (the decode fuzz target's strangers).
    pub(crate) fn stranger(id: String) -> Node {
        let mut n = Node::new(id, 0, false, true);
        n.restarts = false;
        n.proc = Proc::Dead;
        n
    }

    /// Running code (not booting, not dead).
    pub(crate) fn alive(&self) -> bool {
        matches!(self.proc, Proc::Legacy(_) | Proc::Conn(_))
    }

    pub(crate) fn describe(&self) -> String {
        let what = match &self.proc {
            Proc::Booting => "booting".to_owned(),
            Proc::Legacy(l) => format!("legacy app {:?}", l.app),
            Proc::Conn(p) => format!(
                "connection-mode app {:?} registered {} running {} buffered {}",
                p.app,
                p.w.is_registered(),
                p.w.running(),
                p.w.buffered()
            ),
            Proc::Dead => "dead".to_owned(),
        };
        format!(
            "{what} conn {:?} frozen {} partitioned {} slow x{}",
            self.conn, self.frozen, self.partitioned, self.slow
        )
    }
}

impl World {
    /// Scales a handler or processing delay by the process's slowness.
    fn slowed(&self, node: usize, d: Duration) -> Duration {
        d * self.nodes[node].slow
    }

    fn job_after(&mut self, node: usize, d: Duration, job: Job) {
        let life = self.nodes[node].life;
        let d = self.slowed(node, d);
        self.after(d, Ev::Proc { node, life, job });
    }

    // ---- the provisioner and the orchestrator ----

    pub(crate) fn start_external_workers(&mut self) {
        for p in 0..self.plan.pools.len() {
            for k in 0..self.plan.pools[p].external {
                let node = self.nodes.len();
                self.nodes.push(Node::new(format!("ext-{p}-{k}"), p, false, false));
                self.by_id.insert(self.nodes[node].id.clone(), node);
                let d = self.rng.duration(Duration::ZERO, ms(500));
                self.after(d, Ev::Boot { node, life: 0 });
            }
        }
    }

    /// The runtime asked for a worker: start a process (after a boot delay), or fail.
    pub(crate) fn provision(&mut self, req: ProvisionRequest) {
        let Some(pool) = self.plan.pools.iter().position(|p| p.spec.key == req.pool) else { return };
        let legacy = self.rng.chance(self.plan.pools[pool].legacy_share);
        let node = self.nodes.len();
        self.nodes.push(Node::new(req.worker.0.clone(), pool, true, legacy));
        self.by_id.insert(req.worker.0.clone(), node);
        if !self.healed && self.rng.chance(self.plan.faults.provision_failure) {
            self.stats.provision_failures += 1;
            self.nodes[node].proc = Proc::Dead;
            let error = "image pull failed".to_owned();
            let d = self.rng.duration(ms(10), ms(500));
            self.after(d, Ev::Report(Box::new(Input::ProvisionFailed { worker: req.worker, error })));
            return;
        }
        // Now and then a slow image pull: the worker id may expire before it connects.
        let d = if !self.healed && self.rng.chance(0.03) {
            self.rng.duration(ms(5_000), ms(15_000))
        } else {
            self.rng.duration(ms(50), ms(800))
        };
        self.after(d, Ev::Boot { node, life: 0 });
    }

    /// The runtime no longer wants a worker: SIGTERM now, SIGKILL after a grace.
    pub(crate) fn release(&mut self, worker: &str) {
        let Some(&node) = self.by_id.get(worker) else { return };
        if matches!(self.nodes[node].proc, Proc::Dead) {
            return;
        }
        let life = self.nodes[node].life;
        let d = self.rng.duration(ms(5), ms(50));
        self.after(d, Ev::Sigterm { node, life });
        self.after(Duration::from_secs(2), Ev::Kill { node, life });
    }

    pub(crate) fn boot(&mut self, node: usize, life: u32) {
        let n = &self.nodes[node];
        if n.life != life || !matches!(n.proc, Proc::Booting) {
            return;
        }
        self.stats.processes += 1;
        if n.legacy {
            let status = self.rng.chance(0.5);
            let indexing = self.rng.chance(0.3);
            self.nodes[node].proc = Proc::Legacy(Box::new(Legacy { status, indexing, ..Legacy::default() }));
            self.dial(node, ConnMeta::default());
            self.job_after(node, ms(5_000), Job::ConnectTimeout);
            return;
        }
        let mut cfg = WorkerConfig {
            seed: self.rng.seed32(),
            join_token: Some(join_token(n.pool)),
            heartbeat_interval: self.rng.duration(ms(200), ms(700)),
            ..WorkerConfig::new(n.id.clone())
        };
        if self.rng.chance(0.4) {
            // Worker-advertised capacity instead of the app's per-worker concurrency.
            let capacity = self.rng.range(1, 6).to_string();
            cfg.capabilities.insert("SwitchboardConcurrency".into(), capacity);
        }
        let w = Worker::new(cfg, self.now);
        self.nodes[node].proc =
            Proc::Conn(Box::new(ConnProc { w, handler_gen: 0, app: None, invoked: BTreeSet::new() }));
        self.pump_conn(node);
    }

    pub(crate) fn sigterm(&mut self, node: usize, life: u32) {
        if self.nodes[node].life != life {
            return;
        }
        match &self.nodes[node].proc {
            Proc::Booting | Proc::Legacy(_) => self.process_died(node, "terminated".into(), false),
            Proc::Conn(_) if self.nodes[node].frozen => {} // SIGTERM waits; SIGKILL does not
            Proc::Conn(_) => self.tell_conn_worker(node, WorkerInput::Drain),
            Proc::Dead => {}
        }
    }

    /// The process ends: its stream closes (reset if it was killed), the provisioner reports
    /// it, an orchestrator restarts it.
    pub(crate) fn process_died(&mut self, node: usize, status: String, killed: bool) {
        let n = &mut self.nodes[node];
        if matches!(n.proc, Proc::Dead) {
            return;
        }
        n.proc = Proc::Dead;
        n.life += 1;
        n.frozen = false;
        n.held.clear();
        n.slow = 1;
        self.close_by_worker(node, killed);
        self.update_reachability(node);
        let n = &self.nodes[node];
        if n.provisioned {
            let worker = WorkerId(n.id.clone());
            let d = self.rng.duration(ms(10), ms(200));
            self.after(d, Ev::Report(Box::new(Input::WorkerExited { worker, status })));
        } else if n.restarts {
            let d = self.rng.duration(ms(300), ms(2_000));
            self.after(d, Ev::Restart { node });
        }
    }

    pub(crate) fn restart(&mut self, node: usize) {
        if matches!(self.nodes[node].proc, Proc::Dead) {
            self.nodes[node].proc = Proc::Booting;
            let life = self.nodes[node].life;
            self.boot(node, life);
        }
    }

    // ---- what a worker process is told ----

    pub(crate) fn worker_connected(&mut self, node: usize) {
        match &self.nodes[node].proc {
            Proc::Legacy(_) => {
                let id = self.nodes[node].id.clone();
                let start = msg(Content::StartStream(StartStream { worker_id: id }));
                self.worker_send(node, start);
            }
            Proc::Conn(_) => self.tell_conn_worker(node, WorkerInput::Connected),
            _ => {}
        }
    }

    pub(crate) fn worker_disconnected(&mut self, node: usize, reason: String) {
        match &self.nodes[node].proc {
            // The Python worker exits when its stream ends.
            Proc::Legacy(_) => self.process_died(node, format!("exit 0: stream ended ({reason})"), false),
            Proc::Conn(_) => self.tell_conn_worker(node, WorkerInput::Disconnected { reason }),
            _ => {}
        }
    }

    pub(crate) fn worker_message(&mut self, node: usize, m: Box<StreamingMessage>) {
        match &self.nodes[node].proc {
            Proc::Legacy(_) => self.legacy_message(node, m),
            Proc::Conn(_) => {
                if let Some(Content::InvocationRequest(req)) = &m.content {
                    self.check_invocation_reaches_its_app(node, req);
                }
                if let Some(Content::FunctionEnvironmentReloadRequest(req)) = &m.content {
                    let app = match &self.nodes[node].proc {
                        Proc::Conn(p) => p.app.clone(),
                        _ => None,
                    };
                    self.check_settings(node, app.as_deref(), req);
                }
                self.tell_conn_worker(node, WorkerInput::Message(m));
            }
            _ => {}
        }
    }

    pub(crate) fn run_job(&mut self, node: usize, job: Job) {
        match job {
            Job::Send { msg } => {
                if self.nodes[node].alive() {
                    self.worker_send(node, msg);
                }
            }
            Job::Handler { epoch, input } => {
                if let Proc::Conn(p) = &self.nodes[node].proc
                    && p.handler_gen == epoch
                {
                    self.tell_conn_worker(node, input);
                }
            }
            Job::ConnectTimeout => {
                if matches!(self.nodes[node].proc, Proc::Legacy(_)) && self.nodes[node].conn.is_none() {
                    self.process_died(node, "exit 1: could not connect to the host".into(), false);
                }
            }
        }
    }

    // ---- worker-side checks ----

    /// An invocation reaching a worker must be for the app the worker was specialized for.
    fn check_invocation_reaches_its_app(&mut self, node: usize, req: &InvocationRequest) {
        let app = match &self.nodes[node].proc {
            Proc::Legacy(l) => l.app.clone(),
            Proc::Conn(p) => p.app.clone(),
            _ => None,
        };
        let Some(tag) = Tag::of_request(req) else { return };
        let Some(want) = self.obs.call_apps.get(&tag.call) else { return };
        if app.as_deref() != Some(want.as_str()) {
            let what = format!(
                "worker {} (specialized for {app:?}) was handed call-{} of app {want}",
                self.nodes[node].id, tag.call
            );
            self.violate(what);
        }
    }

    /// Settings reaching a worker: one app's only, and only once per process.
    fn check_settings(&mut self, node: usize, had: Option<&str>, req: &FunctionEnvironmentReloadRequest) {
        let app = payload::app_of_dir(&req.function_app_directory).unwrap_or("?");
        if let Some(before) = had {
            let what =
                format!("worker {} specialized for {before} was sent {app}'s settings", self.nodes[node].id);
            return self.violate(what);
        }
        for key in req.environment_variables.keys().filter(|k| k.starts_with("SECRET_")) {
            if *key != payload::secret_key(app) {
                let what = format!("worker {} got {key} while specializing for {app}", self.nodes[node].id);
                return self.violate(what);
            }
        }
    }

    // ---- the legacy (Python-like) worker ----

    fn legacy_message(&mut self, node: usize, m: Box<StreamingMessage>) {
        let StreamingMessage { request_id, content } = *m;
        let id = self.nodes[node].id.clone();
        let Some(content) = content else { return };
        match content {
            Content::WorkerInitRequest(req) => {
                if let Some(key) = req.capabilities.keys().find(|k| k.starts_with("Switchboard")) {
                    return self.violate(format!("legacy worker {id} was sent the extension {key}"));
                }
                let (status, indexing) = match &self.nodes[node].proc {
                    Proc::Legacy(l) => (l.status, l.indexing),
                    _ => (false, false),
                };
                let mut capabilities = python_capabilities();
                if status {
                    capabilities.insert("WorkerStatus".into(), "true".into());
                }
                if indexing {
                    capabilities.insert("WorkerIndexing".into(), "true".into());
                }
                let mut reply = init_response(capabilities);
                if !self.healed && self.rng.chance(self.plan.faults.load_failure / 2.0) {
                    // The language worker cannot start (a broken interpreter on this node).
                    if let Some(Content::WorkerInitResponse(r)) = &mut reply.content {
                        r.result = failed("worker init failed: unsupported Python version");
                    }
                }
                reply.request_id = request_id;
                let d = self.rng.duration(ms(1), ms(20));
                self.job_after(node, d, Job::Send { msg: reply });
            }
            Content::FunctionEnvironmentReloadRequest(req) => {
                let had = match &self.nodes[node].proc {
                    Proc::Legacy(l) => l.app.clone(),
                    _ => None,
                };
                self.check_settings(node, had.as_deref(), &req);
                let app = payload::app_of_dir(&req.function_app_directory).unwrap_or("?").to_owned();
                let broken = req.environment_variables.contains_key(payload::BROKEN);
                if let Proc::Legacy(l) = &mut self.nodes[node].proc {
                    l.app = Some(app);
                }
                let mut reply = if broken {
                    msg(Content::FunctionEnvironmentReloadResponse(
                        switchboard_core::proto::rpc::FunctionEnvironmentReloadResponse {
                            result: failed("ModuleNotFoundError: No module named 'requests'"),
                            ..Default::default()
                        },
                    ))
                } else {
                    env_reload_ok()
                };
                reply.request_id = request_id;
                let d = self.rng.duration(ms(20), ms(300));
                self.job_after(node, d, Job::Send { msg: reply });
            }
            Content::FunctionLoadRequest(req) => {
                let flaky = !self.healed && self.rng.chance(self.plan.faults.load_failure);
                let result = if flaky { failed("ImportError: flaky import") } else { ok() };
                let mut reply = load_response(&req.function_id, result);
                reply.request_id = request_id;
                let d = self.rng.duration(ms(2), ms(50));
                self.job_after(node, d, Job::Send { msg: reply });
            }
            Content::InvocationRequest(req) => {
                self.check_invocation_reaches_its_app(node, &req);
                let (app, first) = match &mut self.nodes[node].proc {
                    Proc::Legacy(l) => {
                        (l.app.clone().unwrap_or_default(), l.invoked.insert(req.invocation_id.clone()))
                    }
                    _ => return,
                };
                if !first {
                    return self.violate(format!(
                        "legacy worker {id} was sent invocation {} twice",
                        req.invocation_id
                    ));
                }
                let tag = Tag::of_request(&req);
                let resp = payload::answer(&req, tag, &app, &id);
                let run = ms(tag.map_or(10, |t| t.run_ms));
                if self.rng.chance(0.2) {
                    // The function logs while it runs (attributed to the invocation).
                    let log = msg(Content::RpcLog(RpcLog {
                        invocation_id: req.invocation_id.clone(),
                        category: "Function.f.User".into(),
                        message: "working".into(),
                        level: 2,
                        ..Default::default()
                    }));
                    self.job_after(node, run / 2, Job::Send { msg: log });
                }
                let reply = msg(Content::InvocationResponse(resp));
                self.job_after(node, run, Job::Send { msg: reply });
            }
            Content::WorkerStatusRequest(_) => {
                if !matches!(&self.nodes[node].proc, Proc::Legacy(l) if l.status) {
                    return self
                        .violate(format!("legacy worker {id} was probed without advertising WorkerStatus"));
                }
                let mut reply = msg(Content::WorkerStatusResponse(WorkerStatusResponse {}));
                reply.request_id = request_id;
                self.job_after(node, ms(1), Job::Send { msg: reply });
            }
            Content::FunctionsMetadataRequest(req) if matches!(&self.nodes[node].proc, Proc::Legacy(l) if l.indexing) =>
            {
                // It finds the app's functions itself and names them with its own ids.
                let app = payload::app_of_dir(&req.function_app_directory).unwrap_or("?").to_owned();
                let life = self.nodes[node].life;
                let results = ["f", "g", "off", "q"]
                    .iter()
                    .map(|name| RpcFunctionMetadata {
                        name: (*name).to_owned(),
                        directory: format!("{}/{name}", payload::app_dir(&app)),
                        function_id: format!("{id}-{life}-{name}"),
                        ..Default::default()
                    })
                    .collect();
                let mut reply = msg(Content::FunctionMetadataResponse(FunctionMetadataResponse {
                    function_metadata_results: results,
                    result: ok(),
                    use_default_metadata_indexing: false,
                }));
                reply.request_id = request_id;
                let d = self.rng.duration(ms(5), ms(100));
                self.job_after(node, d, Job::Send { msg: reply });
            }
            other @ (Content::WorkerHeartbeat(_)
            | Content::InvocationCancel(_)
            | Content::WorkerTerminate(_)
            | Content::FunctionsMetadataRequest(_)) => {
                self.violate(format!(
                    "legacy worker {id} was sent {}, which it did not advertise",
                    name(&other)
                ));
            }
            _ => {}
        }
    }

    // ---- the connection-mode worker ----

    /// Takes every output of a connection-mode worker core and does what it asks, as its
    /// shell and handler would.
    pub(crate) fn pump_conn(&mut self, node: usize) {
        loop {
            let out = match &mut self.nodes[node].proc {
                Proc::Conn(p) => p.w.poll_output(),
                _ => None,
            };
            let Some(out) = out else { break };
            match out {
                WorkerOutput::Connect { meta } => self.dial(node, meta),
                WorkerOutput::Send(m) => self.worker_send(node, m),
                WorkerOutput::CloseStream => self.close_by_worker(node, false),
                WorkerOutput::ReloadEnvironment { environment, app_directory } => {
                    let app = payload::app_of_dir(&app_directory).unwrap_or("?").to_owned();
                    let result = if environment.contains_key(payload::BROKEN) {
                        Err("the handler exited: ModuleNotFoundError".to_owned())
                    } else {
                        Ok(())
                    };
                    let epoch = match &mut self.nodes[node].proc {
                        Proc::Conn(p) => {
                            p.app = Some(app);
                            p.handler_gen
                        }
                        _ => continue,
                    };
                    let d = self.rng.duration(ms(20), ms(300));
                    self.job_after(
                        node,
                        d,
                        Job::Handler { epoch, input: WorkerInput::EnvReloaded { result } },
                    );
                }
                WorkerOutput::LoadFunction { function_id, .. } => {
                    let Proc::Conn(p) = &self.nodes[node].proc else { continue };
                    let epoch = p.handler_gen;
                    let d = self.rng.duration(ms(2), ms(50));
                    let flaky = !self.healed && self.rng.chance(self.plan.faults.load_failure);
                    let result = if flaky { Err("flaky import".to_owned()) } else { Ok(()) };
                    let input = WorkerInput::FunctionLoaded { function_id, result };
                    self.job_after(node, d, Job::Handler { epoch, input });
                }
                WorkerOutput::Invoke(req) => {
                    let id = self.nodes[node].id.clone();
                    let Proc::Conn(p) = &mut self.nodes[node].proc else { continue };
                    if !p.invoked.insert(req.invocation_id.clone()) {
                        let what =
                            format!("worker {id} ran invocation {} twice in one slot", req.invocation_id);
                        self.violate(what);
                        continue;
                    }
                    let (epoch, app) = (p.handler_gen, p.app.clone().unwrap_or_default());
                    let tag = Tag::of_request(&req);
                    let response = Box::new(payload::answer(&req, tag, &app, &id));
                    let run = ms(tag.map_or(10, |t| t.run_ms));
                    self.job_after(
                        node,
                        run,
                        Job::Handler { epoch, input: WorkerInput::InvocationDone { response } },
                    );
                }
                WorkerOutput::Cancel { invocation_id } => {
                    // Best effort: half the time the handler stops early and says so.
                    let Proc::Conn(p) = &self.nodes[node].proc else { continue };
                    let epoch = p.handler_gen;
                    if self.rng.chance(0.5) {
                        let response = Box::new(cancelled(invocation_id));
                        let d = self.rng.duration(ms(1), ms(20));
                        self.job_after(
                            node,
                            d,
                            Job::Handler { epoch, input: WorkerInput::InvocationDone { response } },
                        );
                    }
                }
                WorkerOutput::ResetApp => {
                    if let Proc::Conn(p) = &mut self.nodes[node].proc {
                        p.handler_gen += 1;
                        p.app = None;
                        p.invoked.clear();
                    }
                }
                WorkerOutput::Exit { code, reason } => {
                    self.process_died(node, format!("exit {code}: {reason}"), false);
                    return;
                }
                _ => {}
            }
        }
    }
}

fn cancelled(invocation_id: String) -> InvocationResponse {
    InvocationResponse {
        invocation_id,
        result: Some(StatusResult {
            status: status_result::Status::Cancelled as i32,
            exception: Some(RpcException { message: "cancelled".into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn name(content: &Content) -> &'static str {
    match content {
        Content::WorkerHeartbeat(_) => "WorkerHeartbeat",
        Content::InvocationCancel(_) => "InvocationCancel",
        Content::WorkerTerminate(_) => "WorkerTerminate",
        Content::FunctionsMetadataRequest(_) => "FunctionsMetadataRequest",
        _ => "a message",
    }
}
