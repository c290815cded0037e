//! Bad input from workers: each gets a specific rejection or eviction, never a panic, and other
//! workers and apps are not affected.

use std::collections::BTreeMap;

use switchboard_core::app::ScaleSpec;
use switchboard_core::proto::rpc::{StreamingMessage, WorkerInitResponse};
use switchboard_core::proto::{Content, Message};
use switchboard_core::testkit::*;
use switchboard_core::{
    CallId, CloseReason, Config, ConnId, ConnMeta, Event, EvictReason, Input, Invoke, Output, Payload,
    PoolKey, PoolSpec, Runtime, Target,
};

struct Rt {
    rt: Runtime,
    now: std::time::Instant,
}

impl Rt {
    fn new() -> (Rt, Vec<String>) {
        let now = epoch();
        let mut pool = PoolSpec::new(PoolKey::new("python", ""), 2, 8);
        pool.join_token = Some("t".into());
        let mut rt = Rt { rt: Runtime::new(Config { pools: vec![pool], ..Config::default() }, now), now };
        let ids = rt
            .drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Provision(p) => Some(p.worker.0),
                _ => None,
            })
            .collect();
        (rt, ids)
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.rt.poll_output()).collect()
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.rt.handle_input(self.now, input);
        self.drain()
    }

    fn boot(&mut self, conn: u64, id: &str) -> ConnId {
        let conn = ConnId(conn);
        self.input(Input::Connected { conn, peer: "p".into(), meta: ConnMeta::default() });
        self.input(Input::Message { conn, msg: start_stream(id) });
        self.input(Input::Message { conn, msg: init_response(python_capabilities()) });
        conn
    }
}

fn evicted(outs: &[Output]) -> Option<&EvictReason> {
    outs.iter().find_map(|o| match o {
        Output::Event(Event::WorkerEvicted { reason, .. }) => Some(reason),
        _ => None,
    })
}

#[test]
fn an_oversized_capability_map_evicts_with_a_reason() {
    let (mut rt, ids) = Rt::new();
    let conn = ConnId(1);
    rt.input(Input::Connected { conn, peer: "p".into(), meta: ConnMeta::default() });
    rt.input(Input::Message { conn, msg: start_stream(&ids[0]) });
    let caps: BTreeMap<String, String> = (0..5000).map(|i| (format!("cap{i}"), "x".into())).collect();
    let outs = rt.input(Input::Message {
        conn,
        msg: msg(Content::WorkerInitResponse(WorkerInitResponse {
            capabilities: caps,
            result: ok(),
            ..Default::default()
        })),
    });
    assert!(
        matches!(evicted(&outs), Some(EvictReason::ProtocolViolation(m)) if m.contains("5000 capabilities")),
        "{outs:?}"
    );
}

#[test]
fn garbage_bytes_become_a_malformed_eviction_not_a_panic() {
    let (mut rt, ids) = Rt::new();
    let good = rt.boot(1, &ids[0]);
    let bad = rt.boot(2, &ids[1]);
    // What a shell sees when a frame does not decode.
    let garbage = [0xff_u8, 0xff, 0xff, 0x0f, 0x12];
    let error = StreamingMessage::decode(&garbage[..]).unwrap_err().to_string();
    let outs = rt.input(Input::Malformed { conn: bad, error });
    assert!(matches!(evicted(&outs), Some(EvictReason::Malformed(_))), "{outs:?}");
    assert!(outs.iter().any(
        |o| matches!(o, Output::Close { conn, reason: CloseReason::ProtocolViolation(_) } if *conn == bad)
    ));
    // The other worker still serves.
    rt.rt.deploy(rt.now, sample_app("a", &["f"], &[], ScaleSpec::default())).unwrap();
    let outs = rt.input(Input::Invoke(Invoke {
        call: CallId(1),
        app: "a".into(),
        target: Target::Function("f".into()),
        payload: Payload::Http(get("/")),
        trace: None,
        timeout: None,
    }));
    assert!(outs.iter().any(|o| matches!(o, Output::Send { conn, .. } if *conn == good)), "{outs:?}");
}

#[test]
fn messages_out_of_order_are_violations() {
    let (mut rt, ids) = Rt::new();
    let conn = ConnId(1);
    rt.input(Input::Connected { conn, peer: "p".into(), meta: ConnMeta::default() });
    rt.input(Input::Message { conn, msg: start_stream(&ids[0]) });
    // A load response before any load was asked for (still initializing).
    let outs = rt.input(Input::Message { conn, msg: load_response("f1", ok()) });
    assert!(
        matches!(evicted(&outs), Some(EvictReason::ProtocolViolation(m)) if m.contains("FunctionLoadResponse")),
        "{outs:?}"
    );
    // StartStream twice.
    let c2 = rt.boot(2, &ids[1]);
    let outs = rt.input(Input::Message { conn: c2, msg: start_stream(&ids[1]) });
    assert!(
        matches!(evicted(&outs), Some(EvictReason::ProtocolViolation(m)) if m.contains("StartStream")),
        "{outs:?}"
    );
}

#[test]
fn an_answer_nobody_asked_for_is_dropped_and_counted() {
    let (mut rt, ids) = Rt::new();
    let conn = rt.boot(1, &ids[0]);
    for id in ["", "x", "00000000-0000-4000-8000-000000000001", &"9".repeat(10_000)] {
        let outs = rt.input(Input::Message { conn, msg: http_response(id, 200, "?") });
        assert!(evicted(&outs).is_none(), "{outs:?}");
        assert!(!outs.iter().any(|o| matches!(o, Output::Reply { .. })));
    }
    assert_eq!(rt.rt.counters().unknown_responses, 4);
}

#[test]
fn an_empty_message_is_ignored() {
    let (mut rt, ids) = Rt::new();
    let conn = rt.boot(1, &ids[0]);
    let outs = rt.input(Input::Message { conn, msg: Box::new(StreamingMessage::default()) });
    assert!(evicted(&outs).is_none());
    assert!(outs.iter().any(|o| matches!(o, Output::Event(Event::MessageIgnored { .. }))));
}
