//! The runtime's scenario-test harness, shared by the `tests*` modules: a runtime driven
//! message by message as a shell drives it, on a hand-moved clock, and helpers that pick
//! outputs apart.

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_proto::Content;
use switchboard_proto::rpc::StreamingMessage;

use crate::testkit::*;
use crate::*;

/// A runtime, its clock, and the next stream and call ids to use.
pub(super) struct H {
    pub rt: Runtime,
    pub now: std::time::Instant,
    pub next_conn: u64,
    pub next_call: u64,
    /// Resume tokens the runtime gave, by worker id (connection-mode tests).
    pub tokens: BTreeMap<String, String>,
}

impl H {
    /// A runtime with `cfg`, and what it said first (the pools' provisions).
    pub fn with(cfg: Config) -> (H, Vec<Output>) {
        let now = epoch();
        let mut h =
            H { rt: Runtime::new(cfg, now), now, next_conn: 1, next_call: 1, tokens: BTreeMap::new() };
        let outs = h.drain();
        (h, outs)
    }

    /// A runtime with `pools` and default settings.
    pub fn new(pools: Vec<PoolSpec>) -> (H, Vec<Output>) {
        H::with(Config { seed: [3; 32], pools, ..Config::default() })
    }

    pub fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.rt.poll_output()).collect()
    }

    pub fn input(&mut self, input: Input) -> Vec<Output> {
        self.rt.handle_input(self.now, input);
        self.drain()
    }

    pub fn tick(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.rt.handle_timeout(self.now);
        self.drain()
    }

    pub fn send(&mut self, conn: ConnId, msg: Box<StreamingMessage>) -> Vec<Output> {
        self.input(Input::Message { conn, msg })
    }

    /// Opens a stream from `peer`.
    pub fn open(&mut self, peer: &str, meta: ConnMeta) -> (ConnId, Vec<Output>) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let outs = self.input(Input::Connected { conn, peer: peer.into(), meta });
        (conn, outs)
    }

    /// Opens a stream from a loopback address; opening alone says nothing.
    pub fn connect(&mut self, meta: ConnMeta) -> ConnId {
        let (conn, outs) = self.open("127.0.0.1:1", meta);
        assert!(outs.is_empty(), "{outs:?}");
        conn
    }

    /// Connects a worker with a provisioned id and completes its init handshake.
    pub fn boot(&mut self, worker: &WorkerId, caps: BTreeMap<String, String>) -> (ConnId, Vec<Output>) {
        let conn = self.connect(ConnMeta::default());
        let outs = self.send(conn, start_stream(&worker.0));
        assert!(sent(&outs, conn).iter().any(|c| matches!(c, Content::WorkerInitRequest(_))), "{outs:?}");
        let outs = self.send(conn, init_response(caps));
        (conn, outs)
    }

    /// A GET of `path` on `app`'s front door.
    pub fn invoke(&mut self, app: &str, path: &str) -> (CallId, Vec<Output>) {
        let call = CallId(self.next_call);
        self.next_call += 1;
        let outs = self.input(Input::Invoke(Invoke {
            call,
            app: app.into(),
            target: Target::Route { method: "GET".into(), path: path.into() },
            payload: Payload::Http(get(path)),
            trace: None,
            timeout: None,
        }));
        (call, outs)
    }

    /// Answers the env reload and every load request found in `outs` for `conn`; returns what
    /// followed (the queued invocations among it).
    pub fn specialize(&mut self, conn: ConnId, outs: &[Output]) -> Vec<Output> {
        assert!(
            sent(outs, conn).iter().any(|c| matches!(c, Content::FunctionEnvironmentReloadRequest(_))),
            "no env reload for {conn}: {outs:?}"
        );
        let mut all = self.send(conn, env_reload_ok());
        let loads: Vec<String> = sent(&all, conn)
            .into_iter()
            .filter_map(|c| match c {
                Content::FunctionLoadRequest(r) => Some(r.function_id.clone()),
                _ => None,
            })
            .collect();
        assert!(!loads.is_empty(), "{all:?}");
        for id in loads {
            all.extend(self.send(conn, load_response(&id, ok())));
        }
        all
    }
}

pub(super) fn provisions(outs: &[Output]) -> Vec<WorkerId> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Provision(p) => Some(p.worker.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn sent(outs: &[Output], conn: ConnId) -> Vec<&Content> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, msg } if *c == conn => msg.content.as_ref(),
            _ => None,
        })
        .collect()
}

pub(super) fn invocation_ids(outs: &[Output], conn: ConnId) -> Vec<String> {
    sent(outs, conn)
        .into_iter()
        .filter_map(|c| match c {
            Content::InvocationRequest(r) => Some(r.invocation_id.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn replies(outs: &[Output]) -> Vec<(CallId, &Outcome)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Reply { call, outcome } => Some((*call, outcome)),
            _ => None,
        })
        .collect()
}

pub(super) fn events(outs: &[Output]) -> Vec<&Event> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

pub(super) fn closes(outs: &[Output]) -> Vec<(ConnId, &CloseReason)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Close { conn, reason } => Some((*conn, reason)),
            _ => None,
        })
        .collect()
}
