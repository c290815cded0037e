//! Property test: random operation sequences against the real runtime core, checked after
//! every step against a reference model of what must hold.
//!
//! The model follows the outputs like an observer on the wire: which calls are open, which
//! stream was told which app's settings, which function ids were loaded on which stream. After
//! each step it checks:
//! - a call is answered at most once, and only if it was made;
//! - an invocation goes only to a stream whose worker was specialized for the invocation's app
//!   and loaded that function;
//! - an app's settings go only to a stream being specialized for that app (once: it never
//!   serves another app);
//! - pool counts stay within bounds;
//!
//! and at the end, after every worker is gone and time has passed every deadline, that every
//! call got exactly one answer. Each case also runs twice to check determinism.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use switchboard_core::app::ScaleSpec;
use switchboard_core::proto::Content;
use switchboard_core::proto::rpc::StreamingMessage;
use switchboard_core::testkit::*;
use switchboard_core::{
    CallId, Config, ConnId, ConnMeta, Input, Invoke, Output, Payload, PoolKey, PoolSpec, Runtime, Target,
};

const APPS: [&str; 3] = ["alpha", "beta", "gamma"];
const MAX: u32 = 5;

#[derive(Debug, Clone)]
enum Op {
    /// Deploy (or update) app `0..3`.
    Deploy(usize, u32),
    /// Remove app `0..3`.
    Remove(usize),
    /// Connect a worker with the oldest outstanding provisioned id.
    ConnectProvisioned,
    /// Connect a worker with the join token (or a wrong one).
    ConnectJoin(bool),
    /// A stream sends `StartStream` with an id nobody issued.
    ConnectUnknown,
    /// Worker `n` (mod live workers) answers the oldest request it holds (ok or failure).
    Answer(usize, bool),
    /// Worker `n` answers an invocation it was never given, or repeats an old answer.
    BogusAnswer(usize),
    /// Worker `n` sends a message only the runtime may send.
    Violation(usize),
    /// Worker `n`'s stream ends.
    Disconnect(usize),
    /// An HTTP call to app `0..4` (3 = unknown app).
    Invoke(usize),
    /// The caller of the `n`th open call goes away.
    Cancel(usize),
    /// Time passes.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3usize, 0..3u32).prop_map(|(a, m)| Op::Deploy(a, m)),
        1 => (0..3usize).prop_map(Op::Remove),
        4 => Just(Op::ConnectProvisioned),
        1 => any::<bool>().prop_map(Op::ConnectJoin),
        1 => Just(Op::ConnectUnknown),
        10 => (0..8usize, prop::bool::weighted(0.9)).prop_map(|(n, ok)| Op::Answer(n, ok)),
        1 => (0..8usize).prop_map(Op::BogusAnswer),
        1 => (0..8usize).prop_map(Op::Violation),
        1 => (0..8usize).prop_map(Op::Disconnect),
        6 => (0..4usize).prop_map(Op::Invoke),
        1 => (0..8usize).prop_map(Op::Cancel),
        2 => prop_oneof![Just(50u64), Just(1_000), Just(20_000), Just(400_000)].prop_map(Op::Advance),
    ]
}

/// A scripted worker that behaves like the real Python worker: answers what it is asked,
/// in order, when the test says so.
#[derive(Debug)]
struct Scripted {
    conn: ConnId,
    inbox: VecDeque<Box<StreamingMessage>>,
    answered: Vec<String>,
}

/// What the model knows about one stream.
#[derive(Debug, Default)]
struct StreamModel {
    /// The app whose settings this stream received.
    app: Option<String>,
    /// Function ids loaded on it.
    loaded: BTreeSet<String>,
}

struct World {
    rt: Runtime,
    now: Instant,
    next_conn: u64,
    next_call: u64,
    tickets: VecDeque<String>,
    workers: Vec<Scripted>,
    streams: BTreeMap<ConnId, StreamModel>,
    /// Open calls and the app each was made to.
    open: BTreeMap<CallId, String>,
    answered: BTreeSet<CallId>,
    log: Vec<String>,
}

fn app_dir(app: &str) -> String {
    format!("/apps/{app}")
}

impl World {
    fn new() -> World {
        let now = switchboard_core::testkit::epoch();
        let mut pool = PoolSpec::new(PoolKey::new("python", ""), 2, MAX);
        pool.join_token = Some("join".into());
        let cfg = Config { seed: [5; 32], pools: vec![pool], ..Config::default() };
        let mut w = World {
            rt: Runtime::new(cfg, now),
            now,
            next_conn: 1,
            next_call: 1,
            tickets: VecDeque::new(),
            workers: Vec::new(),
            streams: BTreeMap::new(),
            open: BTreeMap::new(),
            answered: BTreeSet::new(),
            log: Vec::new(),
        };
        w.drain();
        w
    }

    fn input(&mut self, input: Input) {
        self.rt.handle_input(self.now, input);
        self.drain();
    }

    /// Takes every output, checks it against the model, and delivers messages to workers.
    fn drain(&mut self) {
        while let Some(out) = self.rt.poll_output() {
            self.log.push(format!("{out:?}"));
            match out {
                Output::Provision(p) => self.tickets.push_back(p.worker.0),
                Output::Send { conn, msg } => self.observe_send(conn, msg),
                Output::Close { conn, .. } => self.workers.retain(|w| w.conn != conn),
                Output::Reply { call, .. } => {
                    assert!(self.answered.insert(call), "{call} answered twice");
                    assert!(self.open.remove(&call).is_some(), "{call} answered but never made");
                }
                _ => {}
            }
        }
    }

    fn observe_send(&mut self, conn: ConnId, msg: Box<StreamingMessage>) {
        let stream = self.streams.entry(conn).or_default();
        match &msg.content {
            Some(Content::FunctionEnvironmentReloadRequest(r)) => {
                let app = APPS
                    .iter()
                    .find(|a| app_dir(a) == r.function_app_directory)
                    .expect("env reload for a known app");
                assert!(stream.app.is_none(), "{conn} specialized twice (for {:?} then {app})", stream.app);
                for other in APPS.iter().filter(|o| *o != app) {
                    assert!(
                        !r.environment_variables.contains_key(&format!("SECRET_{other}")),
                        "{other}'s settings sent to a worker specialized for {app}"
                    );
                }
                assert_eq!(r.environment_variables.get(&format!("SECRET_{app}")), Some(&format!("s-{app}")));
                stream.app = Some((*app).to_owned());
            }
            Some(Content::FunctionLoadRequest(r)) => {
                assert!(stream.app.is_some(), "function load on {conn} before its env reload");
                stream.loaded.insert(r.function_id.clone());
            }
            Some(Content::InvocationRequest(r)) => {
                assert!(stream.app.is_some(), "invocation on {conn}, which no app specialized");
                assert!(
                    stream.loaded.contains(&r.function_id),
                    "invocation of a function not loaded on {conn}"
                );
            }
            _ => {}
        }
        if let Some(w) = self.workers.iter_mut().find(|w| w.conn == conn) {
            w.inbox.push_back(msg);
        }
    }

    fn connect(&mut self, meta: ConnMeta, id: String) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.workers.push(Scripted { conn, inbox: VecDeque::new(), answered: Vec::new() });
        self.input(Input::Connected { conn, peer: "model".into(), meta });
        self.input(Input::Message { conn, msg: start_stream(&id) });
    }

    fn worker(&self, n: usize) -> Option<usize> {
        (!self.workers.is_empty()).then(|| n % self.workers.len())
    }

    fn apply(&mut self, op: &Op) {
        self.log.push(format!("--- {op:?}"));
        match *op {
            Op::Deploy(a, min) => {
                let app = APPS[a];
                let secret = format!("SECRET_{app}");
                let value = format!("s-{app}");
                let scale = ScaleSpec { min_workers: min, max_workers: 3, concurrency: 2, queue_limit: 4 };
                let spec = sample_app(app, &["f", "g"], &[(&secret, &value)], scale);
                let _ = self.rt.deploy(self.now, spec);
                self.drain();
            }
            Op::Remove(a) => {
                let _ = self.rt.remove_app(self.now, APPS[a]);
                self.drain();
            }
            Op::ConnectProvisioned => {
                if let Some(id) = self.tickets.pop_front() {
                    self.connect(ConnMeta::default(), id);
                }
            }
            Op::ConnectJoin(good) => {
                let token = if good { "join" } else { "nope" };
                let meta = ConnMeta { join_token: Some(token.into()), resume_token: None };
                let id = format!("joined-{}", self.next_conn);
                self.connect(meta, id);
            }
            Op::ConnectUnknown => self.connect(ConnMeta::default(), "made-up".into()),
            Op::Answer(n, ok) => {
                let Some(i) = self.worker(n) else { return };
                let Some(msg) = self.workers[i].inbox.pop_front() else { return };
                let conn = self.workers[i].conn;
                let reply = match msg.content {
                    Some(Content::WorkerInitRequest(_)) => Some(init_response(python_capabilities())),
                    Some(Content::FunctionEnvironmentReloadRequest(_)) => {
                        Some(if ok { env_reload_ok() } else { msg_failed_reload() })
                    }
                    Some(Content::FunctionLoadRequest(r)) => Some(load_response(
                        &r.function_id,
                        if ok { switchboard_core::testkit::ok() } else { failed("boom") },
                    )),
                    Some(Content::InvocationRequest(r)) => {
                        self.workers[i].answered.push(r.invocation_id.clone());
                        Some(if ok {
                            http_response(&r.invocation_id, 200, "ok")
                        } else {
                            error_response(&r.invocation_id, "E")
                        })
                    }
                    _ => None,
                };
                if let Some(reply) = reply {
                    self.input(Input::Message { conn, msg: reply });
                }
            }
            Op::BogusAnswer(n) => {
                let Some(i) = self.worker(n) else { return };
                let conn = self.workers[i].conn;
                let id = self.workers[i].answered.first().cloned().unwrap_or_else(|| "never-given".into());
                self.input(Input::Message { conn, msg: http_response(&id, 200, "bogus") });
            }
            Op::Violation(n) => {
                let Some(i) = self.worker(n) else { return };
                let conn = self.workers[i].conn;
                self.input(Input::Message { conn, msg: msg(Content::InvocationRequest(Default::default())) });
            }
            Op::Disconnect(n) => {
                let Some(i) = self.worker(n) else { return };
                let conn = self.workers.remove(i).conn;
                self.input(Input::Disconnected { conn, reason: "cut".into() });
            }
            Op::Invoke(a) => {
                let app = APPS.get(a).copied().unwrap_or("nope");
                let call = CallId(self.next_call);
                self.next_call += 1;
                self.open.insert(call, app.to_owned());
                self.input(Input::Invoke(Invoke {
                    call,
                    app: app.into(),
                    target: Target::Route { method: "GET".into(), path: "api/f".into() },
                    payload: Payload::Http(get("/api/f")),
                    trace: None,
                    timeout: None,
                }));
            }
            Op::Cancel(n) => {
                if let Some(&call) = self.open.keys().nth(n % self.open.len().max(1)) {
                    self.input(Input::Cancel { call });
                }
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.rt.handle_timeout(self.now);
                self.drain();
            }
        }
        self.check_bounds();
    }

    fn check_bounds(&self) {
        for pool in self.rt.pools() {
            assert!(pool.members + pool.provisioning <= pool.max, "pool over max: {pool:?}");
            assert!(pool.idle as u32 <= pool.members, "{pool:?}");
        }
    }

    /// Heal: every worker goes away, time passes every deadline; every call must be answered.
    fn finish(&mut self) {
        for conn in self.workers.drain(..).map(|w| w.conn).collect::<Vec<_>>() {
            self.rt.handle_input(self.now, Input::Disconnected { conn, reason: "end".into() });
            self.drain();
        }
        for _ in 0..4 {
            self.now += Duration::from_secs(400);
            self.rt.handle_timeout(self.now);
            self.drain();
        }
        assert!(self.open.is_empty(), "calls never answered: {:?}", self.open);
        assert_eq!(self.rt.open_calls(), 0);
    }
}

fn msg_failed_reload() -> Box<StreamingMessage> {
    msg(Content::FunctionEnvironmentReloadResponse(
        switchboard_core::proto::rpc::FunctionEnvironmentReloadResponse {
            result: failed("env reload failed"),
            ..Default::default()
        },
    ))
}

fn run(ops: &[Op]) -> Vec<String> {
    let mut world = World::new();
    for op in ops {
        world.apply(op);
    }
    world.finish();
    world.log
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_core_keeps_its_promises(ops in prop::collection::vec(op(), 1..120)) {
        let first = run(&ops);
        let second = run(&ops);
        prop_assert_eq!(first, second, "same inputs, different outputs");
    }
}
