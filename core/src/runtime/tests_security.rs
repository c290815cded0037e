//! Security promises of the runtime, driven message by message as a shell would: admission
//! (single-use expiring worker ids, join tokens, a limit on addresses that keep failing, a cap
//! on streams that never say who they are) and tenant isolation (settings only to the app's
//! workers and never in any output's `Debug`, answers for invocations a worker was not given
//! dropped, a specialized worker never serving another app, resumed or not).

use std::collections::BTreeMap;

use switchboard_proto::Content;
use switchboard_proto::rpc::StreamingMessage;

use super::harness::*;
use super::registry::cap;
use crate::app::ScaleSpec;
use crate::testkit::*;
use crate::*;

const JOIN: &str = "join-secret";
const SECRET_A: &str = "s3cr3t-of-app-a-5f1c";
const SECRET_B: &str = "s3cr3t-of-app-b-9d27";

/// A python pool with a join token (min_idle `min_idle`), and `limits`.
fn setup(min_idle: u32, limits: Limits) -> (H, Vec<Output>) {
    let mut pool = PoolSpec::new(PoolKey::new("python", ""), min_idle, 64);
    pool.join_token = Some(JOIN.into());
    pool.environment = BTreeMap::from([("PATH".into(), "/usr/bin".into())]);
    H::with(Config { seed: [9; 32], pools: vec![pool], limits, ..Config::default() })
}

impl H {
    /// Opens a stream from `peer` and sends `StartStream` with `id`.
    fn start(&mut self, peer: &str, meta: ConnMeta, id: &str) -> (ConnId, Vec<Output>) {
        let (conn, mut outs) = self.open(peer, meta);
        outs.extend(self.input(Input::Message { conn, msg: start_stream(id) }));
        (conn, outs)
    }

    /// A placeholder from a provisioned id.
    fn boot_placeholder(&mut self, id: &WorkerId) -> ConnId {
        let (conn, outs) = self.start("127.0.0.1:40000", ConnMeta::default(), &id.0);
        assert!(admitted(&outs), "{outs:?}");
        self.input(Input::Message { conn, msg: init_response(python_capabilities()) });
        conn
    }
}

fn limits() -> Limits {
    Limits::default()
}

fn join() -> ConnMeta {
    ConnMeta { join_token: Some(JOIN.into()), resume_token: None }
}

fn admitted(outs: &[Output]) -> bool {
    outs.iter().any(|o| matches!(o, Output::Event(Event::WorkerAdmitted { .. })))
}

fn closed(outs: &[Output], conn: ConnId) -> Option<&CloseReason> {
    outs.iter().find_map(|o| match o {
        Output::Close { conn: c, reason } if *c == conn => Some(reason),
        _ => None,
    })
}

fn rejections(outs: &[Output]) -> usize {
    outs.iter().filter(|o| matches!(o, Output::Event(Event::WorkerRejected { .. }))).count()
}

fn limited_events(outs: &[Output]) -> Vec<&Event> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e @ Event::AdmissionLimited { .. }) => Some(e),
            _ => None,
        })
        .collect()
}

fn scale() -> ScaleSpec {
    ScaleSpec { min_workers: 0, max_workers: 4, concurrency: 4, queue_limit: 16 }
}

// ----- admission ---------------------------------------------------------------------------

#[test]
fn a_provisioned_id_admits_one_stream_once() {
    let (mut h, outs) = setup(1, limits());
    let id = provisions(&outs).remove(0);
    let first = h.boot_placeholder(&id);

    let (conn, outs) = h.start("127.0.0.1:40001", ConnMeta::default(), &id.0);
    assert!(
        matches!(closed(&outs, conn), Some(CloseReason::PermissionDenied(m)) if m.contains("already live")),
        "{outs:?}"
    );
    // Once the first stream is gone, the id is spent: replaying it is not a credential.
    h.input(Input::Disconnected { conn: first, reason: "bye".into() });
    let (conn, outs) = h.start("127.0.0.1:40002", ConnMeta::default(), &id.0);
    assert!(
        matches!(closed(&outs, conn), Some(CloseReason::Unauthenticated(m)) if m.contains("already used")),
        "{outs:?}"
    );
    assert!(!admitted(&outs));
}

#[test]
fn a_provisioned_id_expires() {
    let (mut h, outs) = setup(1, limits());
    let id = provisions(&outs).remove(0);
    let outs = h.tick(Config::default().timeouts.provision_ticket);
    assert!(
        outs.iter().any(|o| matches!(o, Output::Release { worker, .. } if *worker == id)),
        "the provisioner is told to stop what it started: {outs:?}"
    );
    let (conn, outs) = h.start("127.0.0.1:40000", ConnMeta::default(), &id.0);
    assert!(matches!(closed(&outs, conn), Some(CloseReason::Unauthenticated(_))), "{outs:?}");
}

#[test]
fn streams_must_say_who_they_are_first_and_once() {
    let (mut h, outs) = setup(1, limits());
    let id = provisions(&outs).remove(0);

    let (conn, _) = h.open("127.0.0.1:40000", ConnMeta::default());
    let outs = h.input(Input::Message { conn, msg: init_response(python_capabilities()) });
    assert!(
        matches!(closed(&outs, conn), Some(CloseReason::ProtocolViolation(m))
            if m == "WorkerInitResponse before StartStream"),
        "{outs:?}"
    );

    let (conn, outs) = h.start("127.0.0.1:40000", ConnMeta::default(), "never-issued");
    assert!(
        matches!(closed(&outs, conn), Some(CloseReason::Unauthenticated(m)) if m.contains("unknown worker id")),
        "{outs:?}"
    );

    for bad in ["", &"x".repeat(300), "a\u{0}b"] {
        let (conn, outs) = h.start("127.0.0.1:40000", ConnMeta::default(), bad);
        assert!(
            matches!(closed(&outs, conn), Some(CloseReason::ProtocolViolation(m)) if m.starts_with("invalid worker id")),
            "{outs:?}"
        );
    }

    let conn = h.boot_placeholder(&id);
    let outs = h.input(Input::Message { conn, msg: start_stream(&id.0) });
    assert!(
        outs.iter().any(|o| matches!(o, Output::Event(Event::WorkerEvicted {
            reason: EvictReason::ProtocolViolation(m), .. }) if m == "StartStream sent by a worker")),
        "{outs:?}"
    );
}

#[test]
fn a_wrong_join_token_is_refused_and_the_right_one_admits() {
    let (mut h, _) = setup(0, limits());
    for wrong in ["", "join-secre", "join-secret-", "JOIN-SECRET"] {
        let meta = ConnMeta { join_token: Some(wrong.into()), resume_token: None };
        let (conn, outs) = h.start("192.0.2.1:5", meta, "w");
        assert!(
            matches!(closed(&outs, conn), Some(CloseReason::PermissionDenied(m)) if m == "join token not valid"),
            "{wrong:?}: {outs:?}"
        );
        assert!(
            outs.iter().any(
                |o| matches!(o, Output::Event(Event::WorkerRejected { peer, .. }) if peer == "192.0.2.1:5")
            ),
            "the rejection names the peer: {outs:?}"
        );
    }
    let (_, outs) = h.start("192.0.2.1:5", join(), "w");
    assert!(admitted(&outs), "{outs:?}");
}

#[test]
fn an_address_that_keeps_failing_is_limited_then_forgiven() {
    let (mut h, outs) = setup(1, limits());
    let ticket = provisions(&outs).remove(0);
    let max = limits().max_admission_failures as usize;
    let attacker = "198.51.100.7";

    let mut reported = 0;
    let mut limited = Vec::new();
    for i in 0..max {
        let (conn, outs) = h.start(&format!("{attacker}:{}", 1000 + i), ConnMeta::default(), "guess");
        assert!(matches!(closed(&outs, conn), Some(CloseReason::Unauthenticated(_))), "{outs:?}");
        reported += rejections(&outs);
        limited.extend(limited_events(&outs).into_iter().cloned());
    }
    assert_eq!(reported, max, "each failure before the limit is reported");
    assert_eq!(
        limited,
        vec![Event::AdmissionLimited {
            address: attacker.into(),
            failures: max as u32,
            within: limits().admission_window,
            cooldown: limits().admission_cooldown,
        }],
        "one event when the limit begins"
    );

    // Limited: even the right join token is not looked at, from any port of the address.
    let (conn, outs) = h.start(&format!("{attacker}:2000"), join(), "joiner");
    assert_eq!(
        closed(&outs, conn),
        Some(&CloseReason::RateLimited(format!(
            "too many failed admissions from {attacker}; retry after 60 s"
        ))),
        "{outs:?}"
    );
    assert!(!admitted(&outs) && rejections(&outs) == 0, "refusals while limited are quiet: {outs:?}");
    // ... and more failures neither report nor extend the limit.
    for _ in 0..50 {
        let (_, outs) = h.start(&format!("{attacker}:2001"), ConnMeta::default(), "guess");
        assert_eq!(rejections(&outs) + limited_events(&outs).len(), 0, "{outs:?}");
    }
    assert_eq!(h.rt.counters().rate_limited, 51);

    // Other addresses are not affected.
    let (_, outs) = h.start("198.51.100.8:1", join(), "other");
    assert!(admitted(&outs), "{outs:?}");
    // A provisioned id is a credential the runtime issued: it still admits (local workers share
    // 127.0.0.1 with anyone on the host).
    let (_, outs) = h.start(&format!("{attacker}:3000"), ConnMeta::default(), &ticket.0);
    assert!(admitted(&outs), "{outs:?}");

    // After the cooldown the address starts afresh, and its record is pruned by the timer.
    h.tick(limits().admission_cooldown);
    let (_, outs) = h.start(&format!("{attacker}:4000"), join(), "joiner");
    assert!(admitted(&outs), "{outs:?}");
    h.tick(limits().admission_window);
    assert_eq!(h.rt.peers.tracked(), 0, "expired records are forgotten");
}

#[test]
fn a_join_token_holder_redialing_over_its_live_stream_is_not_limited() {
    let (mut h, _) = setup(0, limits());
    let (_, outs) = h.start("192.0.2.90:1", join(), "eager");
    assert!(admitted(&outs));
    // Its old stream is not seen dead yet: every redial is refused, none counts as a failure.
    for _ in 0..3 * limits().max_admission_failures {
        let (conn, outs) = h.start("192.0.2.90:2", join(), "eager");
        assert!(
            matches!(closed(&outs, conn), Some(CloseReason::PermissionDenied(m)) if m.contains("already live")),
            "{outs:?}"
        );
        assert!(limited_events(&outs).is_empty(), "{outs:?}");
    }
    // Without the token, replaying a live id is a failed admission like any other.
    for _ in 0..limits().max_admission_failures {
        h.start("192.0.2.90:3", ConnMeta::default(), "eager");
    }
    let (conn, outs) = h.start("192.0.2.90:4", join(), "another");
    assert!(matches!(closed(&outs, conn), Some(CloseReason::RateLimited(_))), "{outs:?}");
}

#[test]
fn failures_only_add_up_within_the_window() {
    let (mut h, _) = setup(0, limits());
    let max = limits().max_admission_failures;
    for round in 0..3 {
        for _ in 0..max - 1 {
            let (conn, outs) = h.start("203.0.113.5:1", ConnMeta::default(), "guess");
            assert!(matches!(closed(&outs, conn), Some(CloseReason::Unauthenticated(_))), "round {round}");
        }
        h.tick(limits().admission_window);
    }
    let (_, outs) = h.start("203.0.113.5:1", join(), "w");
    assert!(admitted(&outs), "{outs:?}");
}

#[test]
fn ipv6_addresses_are_limited_by_their_slash_64() {
    let (mut h, _) = setup(0, limits());
    for i in 0..limits().max_admission_failures {
        h.start(&format!("[2001:db8:7:7::{i:x}]:1"), ConnMeta::default(), "guess");
    }
    let (conn, outs) = h.start("[2001:db8:7:7:ffff::1]:1", join(), "w1");
    assert!(matches!(closed(&outs, conn), Some(CloseReason::RateLimited(_))), "{outs:?}");
    let (_, outs) = h.start("[2001:db8:7:8::1]:1", join(), "w2");
    assert!(admitted(&outs), "another /64: {outs:?}");
}

#[test]
fn the_failure_record_is_bounded() {
    let limits = Limits { max_tracked_addresses: 8, ..limits() };
    let (mut h, _) = setup(0, limits);
    for i in 0..1000u32 {
        let peer = format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255);
        h.start(&peer, ConnMeta::default(), "guess");
        assert!(h.rt.peers.tracked() <= 8);
    }
}

#[test]
fn the_limit_is_off_at_zero() {
    let limits = Limits { max_admission_failures: 0, ..limits() };
    let (mut h, _) = setup(0, limits);
    for _ in 0..100 {
        h.start("192.0.2.9:1", ConnMeta::default(), "guess");
    }
    let (_, outs) = h.start("192.0.2.9:1", join(), "w");
    assert!(admitted(&outs), "{outs:?}");
}

#[test]
fn streams_that_never_start_are_capped_per_address_and_time_out() {
    let limits = Limits { max_unadmitted_per_address: 4, max_admission_failures: 0, ..limits() };
    let (mut h, outs) = setup(1, limits);
    let ticket = provisions(&outs).remove(0);
    let mut silent = Vec::new();
    let mut evicted = Vec::new();
    for _ in 0..10 {
        let (conn, outs) = h.open("192.0.2.50:1", ConnMeta::default());
        silent.push(conn);
        evicted.extend(outs.iter().filter_map(|o| match o {
            Output::Close { conn, reason: CloseReason::Timeout(m) } if m.contains("newer streams") => {
                Some(*conn)
            }
            _ => None,
        }));
    }
    assert_eq!(evicted, silent[..6], "the oldest make room");
    assert_eq!(h.rt.peers.waiting("192.0.2.50"), 4);
    // Another address is unaffected, and a real worker from the crowded one still gets in.
    let (_, outs) = h.start("192.0.2.51:1", join(), "w");
    assert!(admitted(&outs));
    let (_, outs) = h.start("192.0.2.50:2", ConnMeta::default(), &ticket.0);
    assert!(admitted(&outs), "{outs:?}");
    assert_eq!(h.rt.peers.waiting("192.0.2.50"), 3, "it made room too, then was admitted");
    // Silence ends with the StartStream deadline.
    let outs = h.tick(Config::default().timeouts.start_stream);
    for conn in &silent[7..] {
        assert!(
            matches!(closed(&outs, *conn), Some(CloseReason::Timeout(m)) if m.contains("no StartStream"))
        );
    }
    assert_eq!(h.rt.peers.waiting("192.0.2.50"), 0);
}

#[test]
fn silence_counts_against_the_address() {
    let limits = Limits { max_unadmitted_per_address: 0, ..limits() };
    let (mut h, _) = setup(0, limits);
    for _ in 0..limits.max_admission_failures {
        h.open("192.0.2.60:1", ConnMeta::default());
    }
    let outs = h.tick(Config::default().timeouts.start_stream);
    assert_eq!(limited_events(&outs).len(), 1, "{outs:?}");
    let (conn, outs) = h.start("192.0.2.60:1", join(), "w");
    assert!(matches!(closed(&outs, conn), Some(CloseReason::RateLimited(_))), "{outs:?}");
}

// ----- tenant isolation ----------------------------------------------------------------------

/// Two apps with secret settings, each served by its own worker (a's, b's); every output kept.
fn two_tenants() -> (H, ConnId, ConnId, Vec<Output>) {
    let (mut h, outs) = setup(2, limits());
    let mut all: Vec<Output> = outs.iter().map(clone_output).collect();
    let ids = provisions(&outs);
    let placeholders = [h.boot_placeholder(&ids[0]), h.boot_placeholder(&ids[1])];
    h.rt.deploy(h.now, sample_app("a", &["f"], &[("API_KEY", SECRET_A)], scale())).unwrap();
    h.rt.deploy(h.now, sample_app("b", &["f"], &[("API_KEY", SECRET_B)], scale())).unwrap();
    all.extend(h.drain());
    let mut serving = Vec::new();
    for app in ["a", "b"] {
        let (_, outs) = h.invoke(app, "api/f");
        all.extend(outs.iter().map(clone_output));
        let conn = *placeholders
            .iter()
            .find(|c| !sent(&outs, **c).is_empty())
            .unwrap_or_else(|| panic!("{app} specializes a placeholder: {outs:?}"));
        let outs = h.specialize(conn, &outs);
        assert_eq!(invocation_ids(&outs, conn).len(), 1, "{outs:?}");
        all.extend(outs.iter().map(clone_output));
        serving.push(conn);
    }
    assert_ne!(serving[0], serving[1]);
    (h, serving[0], serving[1], all)
}

/// Outputs are not `Clone` (they own boxed messages); tests keep copies of what they look at.
fn clone_output(o: &Output) -> Output {
    match o {
        Output::Send { conn, msg } => Output::Send { conn: *conn, msg: msg.clone() },
        Output::Close { conn, reason } => Output::Close { conn: *conn, reason: reason.clone() },
        Output::Reply { call, outcome } => Output::Reply { call: *call, outcome: outcome.clone() },
        Output::Provision(p) => Output::Provision(p.clone()),
        Output::Release { worker, reason } => {
            Output::Release { worker: worker.clone(), reason: reason.clone() }
        }
        Output::Event(e) => Output::Event(e.clone()),
        Output::Log(l) => Output::Log(l.clone()),
    }
}

#[test]
fn settings_go_only_to_their_apps_worker_and_never_into_debug_output() {
    let (h, wa, wb, all) = two_tenants();
    for o in &all {
        if let Output::Send { conn, msg } = o
            && let Some(Content::FunctionEnvironmentReloadRequest(r)) = &msg.content
        {
            let key = r.environment_variables.get("API_KEY").map(String::as_str);
            let expected = if *conn == wa { SECRET_A } else { SECRET_B };
            assert!(*conn == wa || *conn == wb);
            assert_eq!(key, Some(expected), "each worker gets its own app's settings only");
            assert_eq!(r.environment_variables.get("PATH").map(String::as_str), Some("/usr/bin"));
        }
    }
    // Nothing printable holds a secret: not the outputs (env reloads included), not the
    // runtime, its config, or what the admin API is built from.
    let mut printed: Vec<String> = all.iter().map(|o| format!("{o:?}")).collect();
    printed.push(format!("{:?}", h.rt));
    printed.push(format!("{:?}", h.rt.config()));
    printed.push(format!("{:?}", h.rt.apps()));
    printed.push(format!("{:?}", h.rt.workers(h.now)));
    printed.push(format!("{:?}", sample_app("a", &["f"], &[("API_KEY", SECRET_A)], scale())));
    printed
        .push(format!("{:?}", ConnMeta { join_token: Some(JOIN.into()), resume_token: Some(JOIN.into()) }));
    for text in &printed {
        for secret in [SECRET_A, SECRET_B, JOIN] {
            assert!(!text.contains(secret), "{secret} printed in {text}");
        }
    }
    assert!(printed.iter().any(|t| t.contains("API_KEY")), "the names are still shown");
}

#[test]
fn an_answer_for_another_workers_invocation_is_dropped_and_counted() {
    let (mut h, wa, wb, _) = two_tenants();
    let (call_b, outs) = h.invoke("b", "api/f");
    let id_b = invocation_ids(&outs, wb).pop().expect("b's call goes to b's worker");
    // a's worker claims to answer b's call: dropped, b's caller still waits.
    let outs = h.input(Input::Message { conn: wa, msg: http_response(&id_b, 200, "forged") });
    assert!(!outs.iter().any(|o| matches!(o, Output::Reply { .. })), "{outs:?}");
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Event(Event::ResponseDropped { why: DropReason::NotGiven, .. }))),
        "{outs:?}"
    );
    assert!(!outs.iter().any(|o| matches!(o, Output::Event(Event::WorkerEvicted { .. }))));
    let before = h.rt.counters().unknown_responses;
    let outs = h.input(Input::Message { conn: wb, msg: http_response(&id_b, 200, "real") });
    assert!(outs.iter().any(|o| matches!(o, Output::Reply { call, .. } if *call == call_b)), "{outs:?}");
    assert_eq!(h.rt.counters().unknown_responses, before);
}

#[test]
fn a_specialized_worker_never_serves_another_app_even_after_resume() {
    let mut pool = PoolSpec::new(PoolKey::new("python", ""), 0, 8);
    pool.provisioned = false;
    pool.join_token = Some(JOIN.into());
    let (mut h, _) = H::with(Config { seed: [4; 32], pools: vec![pool], ..Config::default() });
    h.rt.deploy(h.now, sample_app("a", &["f"], &[("API_KEY", SECRET_A)], scale())).unwrap();
    h.rt.deploy(h.now, sample_app("b", &["f"], &[("API_KEY", SECRET_B)], scale())).unwrap();
    let _ = h.drain();

    // A connection-mode worker joins, is specialized for a, loses its stream and resumes.
    let (conn, outs) = h.start("192.0.2.70:1", join(), "cm-1");
    let token = sent(&outs, conn)
        .iter()
        .find_map(|c| match c {
            Content::WorkerInitRequest(r) => r.capabilities.get(cap::RESUME_TOKEN).cloned(),
            _ => None,
        })
        .expect("a resume token");
    let mut caps = python_capabilities();
    caps.insert(cap::RESUME.into(), "true".into());
    h.input(Input::Message { conn, msg: init_response(caps) });
    let (_, outs) = h.invoke("a", "api/f");
    let outs = h.specialize(conn, &outs);
    assert_eq!(invocation_ids(&outs, conn).len(), 1, "a's call runs on it: {outs:?}");
    h.input(Input::Disconnected { conn, reason: "network".into() });
    let meta = ConnMeta { join_token: Some(JOIN.into()), resume_token: Some(token) };
    let (conn2, outs) = h.start("192.0.2.70:2", meta, "cm-1");
    assert!(outs.iter().any(|o| matches!(o, Output::Event(Event::WorkerResumed { .. }))), "{outs:?}");

    // b's calls never reach it: they wait for a worker of b's own.
    for _ in 0..5 {
        let (_, outs) = h.invoke("b", "api/f");
        for o in &outs {
            if let Output::Send { conn: c, msg } = o {
                assert_ne!(*c, conn2, "b's traffic sent to a's worker: {msg:?}");
            }
        }
    }
    let worker = h.rt.workers(h.now).into_iter().find(|w| w.id == "cm-1").unwrap();
    assert_eq!(worker.app.as_deref(), Some("a"));
    // A second worker joins and is specialized for b, with b's settings only.
    let (conn3, outs) = h.start("192.0.2.71:1", join(), "cm-2");
    assert!(admitted(&outs));
    let outs = h.input(Input::Message { conn: conn3, msg: init_response(python_capabilities()) });
    let reload = sent(&outs, conn3)
        .into_iter()
        .find_map(|c| match c {
            Content::FunctionEnvironmentReloadRequest(r) => Some(r.clone()),
            _ => None,
        })
        .expect("b specializes the newcomer");
    assert_eq!(reload.environment_variables.get("API_KEY").map(String::as_str), Some(SECRET_B));
    let outs = h.specialize(conn3, &outs);
    assert_eq!(invocation_ids(&outs, conn3).len(), 4, "b's queued calls (concurrency 4) run there");
}

#[test]
fn an_empty_message_before_start_stream_is_refused() {
    let (mut h, _) = setup(0, limits());
    let (conn, _) = h.open("192.0.2.80:1", ConnMeta::default());
    let outs = h.input(Input::Message { conn, msg: Box::new(StreamingMessage::default()) });
    assert!(
        matches!(closed(&outs, conn), Some(CloseReason::ProtocolViolation(m)) if m == "an unknown message before StartStream"),
        "{outs:?}"
    );
}
