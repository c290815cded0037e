//! Scenario tests of the runtime: each drives it like a shell would, with workers scripted
//! after the real Python worker (and connection-mode workers where the feature needs one).

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_proto::Content;
use switchboard_proto::rpc::{StreamingMessage, typed_data::Data};

use super::harness::*;
use crate::app::ScaleSpec;
use crate::testkit::*;
use crate::*;

fn pool(min_idle: u32, max: u32) -> PoolSpec {
    let mut p = PoolSpec::new(PoolKey::new("python", ""), min_idle, max);
    p.environment = BTreeMap::from([("PATH".into(), "/usr/bin".into())]);
    p.join_token = Some("join-secret".into());
    p
}

fn scale(max_workers: u32, concurrency: u32, queue_limit: u32) -> ScaleSpec {
    ScaleSpec { min_workers: 0, max_workers, concurrency, queue_limit }
}

fn body_of(outcome: &Outcome) -> String {
    let Outcome::Completed(done) = outcome else { panic!("not completed: {outcome:?}") };
    let http = done.http.as_ref().expect("http response");
    match http.body.as_ref().and_then(|b| b.data.as_ref()) {
        Some(Data::Bytes(b)) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("body {other:?}"),
    }
}

/// A runtime with one pool (min_idle 1), one booted placeholder and one app deployed.
fn with_app(app_scale: ScaleSpec) -> (H, ConnId) {
    let (mut h, outs) = H::new(vec![pool(1, 8)]);
    let ids = provisions(&outs);
    assert_eq!(ids.len(), 1);
    let (conn, _) = h.boot(&ids[0], python_capabilities());
    h.rt.deploy(h.now, sample_app("hello", &["hello", "other"], &[("GREETING", "hi")], app_scale)).unwrap();
    (h, conn)
}

#[test]
fn pool_provisions_min_idle_and_no_more() {
    let (mut h, outs) = H::new(vec![pool(2, 4)]);
    let ids = provisions(&outs);
    assert_eq!(ids.len(), 2);
    let (_, outs) = h.boot(&ids[0], python_capabilities());
    assert!(provisions(&outs).is_empty(), "in-flight provisions count toward min_idle");
    let (_, outs) = h.boot(&ids[1], python_capabilities());
    assert!(provisions(&outs).is_empty());
    let pools = h.rt.pools();
    assert_eq!((pools[0].idle, pools[0].members, pools[0].provisioning), (2, 2, 0));
}

#[test]
fn unknown_worker_id_is_unauthenticated() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let conn = h.connect(ConnMeta::default());
    let outs = h.send(conn, start_stream("made-up"));
    assert!(matches!(closes(&outs)[..], [(c, CloseReason::Unauthenticated(_))] if c == conn), "{outs:?}");
    assert!(events(&outs).iter().any(|e| matches!(e, Event::WorkerRejected { .. })));
}

#[test]
fn message_before_start_stream_is_rejected() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let conn = h.connect(ConnMeta::default());
    let outs = h.send(conn, init_response(BTreeMap::new()));
    assert!(
        matches!(closes(&outs)[..], [(_, CloseReason::ProtocolViolation(m))] if m.contains("before StartStream"))
    );
}

#[test]
fn worker_id_is_single_use_and_duplicate_streams_are_refused() {
    let (mut h, outs) = H::new(vec![pool(1, 4)]);
    let id = provisions(&outs)[0].clone();
    let (_, _) = h.boot(&id, python_capabilities());
    // A second live stream with the same id.
    let conn2 = h.connect(ConnMeta::default());
    let outs = h.send(conn2, start_stream(&id.0));
    assert!(matches!(closes(&outs)[..], [(_, CloseReason::PermissionDenied(_))]), "{outs:?}");
}

#[test]
fn expired_ticket_is_released_and_reprovisioned_after_backoff() {
    let (mut h, outs) = H::new(vec![pool(1, 4)]);
    let id = provisions(&outs)[0].clone();
    let outs = h.tick(Duration::from_secs(61));
    assert!(outs.iter().any(|o| matches!(o, Output::Release { worker, .. } if *worker == id)));
    assert!(provisions(&outs).is_empty(), "backoff first");
    let outs = h.tick(Duration::from_millis(250));
    assert_eq!(provisions(&outs).len(), 1);
    // The expired id no longer admits anyone.
    let conn = h.connect(ConnMeta::default());
    let outs = h.send(conn, start_stream(&id.0));
    assert!(matches!(closes(&outs)[..], [(_, CloseReason::Unauthenticated(_))]));
}

#[test]
fn invocation_specializes_a_placeholder_and_completes() {
    let (mut h, conn) = with_app(scale(2, 4, 10));
    let (call, outs) = h.invoke("hello", "api/hello");
    // The env reload carries the pool environment plus the app's settings.
    let reload = sent(&outs, conn)
        .into_iter()
        .find_map(|c| match c {
            Content::FunctionEnvironmentReloadRequest(r) => Some(r.clone()),
            _ => None,
        })
        .expect("env reload");
    assert_eq!(reload.environment_variables["PATH"], "/usr/bin");
    assert_eq!(reload.environment_variables["GREETING"], "hi");
    assert_eq!(reload.function_app_directory, "/apps/hello");
    let outs = h.specialize(conn, &outs);
    assert!(events(&outs).iter().any(|e| matches!(e, Event::Specialized { app, .. } if app == "hello")));
    let ids = invocation_ids(&outs, conn);
    assert_eq!(ids.len(), 1, "the queued call is sent once ready");
    let outs = h.send(conn, http_response(&ids[0], 200, "Hello"));
    let r = replies(&outs);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, call);
    assert_eq!(body_of(r[0].1), "Hello");
    // The pool refills its placeholder after the specialization took one.
    assert_eq!(h.rt.pools()[0].provisioning, 1);
}

#[test]
fn settings_reach_only_their_app() {
    let (mut h, outs) = H::new(vec![pool(2, 8)]);
    let ids = provisions(&outs);
    let (c1, _) = h.boot(&ids[0], python_capabilities());
    let (c2, _) = h.boot(&ids[1], python_capabilities());
    let one = ScaleSpec { min_workers: 1, ..scale(1, 1, 10) };
    h.rt.deploy(h.now, sample_app("a", &["f"], &[("SECRET_A", "aaa")], one)).unwrap();
    h.rt.deploy(h.now, sample_app("b", &["f"], &[("SECRET_B", "bbb")], one)).unwrap();
    let outs = h.drain();
    let envs: Vec<(ConnId, BTreeMap<String, String>)> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn, msg } => match &msg.content {
                Some(Content::FunctionEnvironmentReloadRequest(r)) => {
                    Some((*conn, r.environment_variables.clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(envs.len(), 2);
    for (conn, env) in envs {
        assert!(conn == c1 || conn == c2);
        assert!(env.contains_key("SECRET_A") != env.contains_key("SECRET_B"), "{env:?}");
    }
    // The admin view never shows setting values.
    assert_eq!(h.rt.app("a").unwrap().spec.settings["SECRET_A"], "***");
}

#[test]
fn queue_then_dispatch_in_order_and_refuse_when_full() {
    let (mut h, conn) = with_app(scale(1, 1, 2));
    let (c1, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let first = invocation_ids(&outs, conn);
    let (c2, outs) = h.invoke("hello", "api/hello");
    assert!(invocation_ids(&outs, conn).is_empty(), "concurrency 1: queued");
    let (_c3, _) = h.invoke("hello", "api/hello");
    let (c4, outs) = h.invoke("hello", "api/hello");
    assert!(
        matches!(replies(&outs)[..], [(c, Outcome::Unavailable { reason: Unavailable::Overloaded, .. })] if c == c4),
        "{outs:?}"
    );
    let outs = h.send(conn, http_response(&first[0], 200, "1"));
    assert_eq!(replies(&outs)[0].0, c1);
    let next = invocation_ids(&outs, conn);
    assert_eq!(next.len(), 1);
    let outs = h.send(conn, http_response(&next[0], 200, "2"));
    assert_eq!(replies(&outs)[0].0, c2, "FIFO");
}

#[test]
fn unknown_app_route_and_method() {
    let (mut h, _) = with_app(scale(1, 1, 2));
    let (_, outs) = h.invoke("nope", "api/hello");
    assert!(matches!(replies(&outs)[..], [(_, Outcome::NotFound(NotFound::App))]));
    let (_, outs) = h.invoke("hello", "api/missing");
    assert!(matches!(replies(&outs)[..], [(_, Outcome::NotFound(NotFound::Route))]));
}

#[test]
fn timeout_settles_once_and_the_late_answer_is_dropped() {
    let mut s = scale(1, 4, 10);
    s.min_workers = 0;
    let (mut h, conn) = with_app(s);
    let (call, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let id = invocation_ids(&outs, conn).remove(0);
    let outs = h.tick(Duration::from_secs(301));
    assert!(matches!(replies(&outs)[..], [(c, Outcome::Timeout)] if c == call), "{outs:?}");
    let outs = h.send(conn, http_response(&id, 200, "late"));
    assert!(replies(&outs).is_empty());
    assert!(events(&outs).iter().any(|e| matches!(e, Event::ResponseDropped { why: DropReason::Late, .. })));
    assert_eq!(h.rt.counters().late_responses, 1);
}

#[test]
fn response_for_an_invocation_never_given_is_dropped() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let (_, outs) = h.invoke("hello", "api/hello");
    let _ = h.specialize(conn, &outs);
    let outs = h.send(conn, http_response("not-an-id", 200, "x"));
    assert!(replies(&outs).is_empty());
    assert!(
        events(&outs).iter().any(|e| matches!(e, Event::ResponseDropped { why: DropReason::NotGiven, .. }))
    );
}

#[test]
fn lost_worker_settles_in_flight_and_pool_refills() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let (call, outs) = h.invoke("hello", "api/hello");
    let replacement = provisions(&outs);
    assert_eq!(replacement.len(), 1, "the pool refills as soon as a placeholder is taken");
    let outs = h.specialize(conn, &outs);
    assert_eq!(invocation_ids(&outs, conn).len(), 1);
    let outs = h.input(Input::Disconnected { conn, reason: "reset".into() });
    assert!(
        matches!(replies(&outs)[..], [(c, Outcome::Unavailable { reason: Unavailable::WorkerLost(_), .. })] if c == call),
        "{outs:?}"
    );
    assert!(outs.iter().any(|o| matches!(o, Output::Release { .. })), "the process is stopped");
    assert!(events(&outs).iter().any(|e| matches!(e, Event::WorkerEvicted { in_flight: 1, .. })));
    // The replacement boots and serves the next call.
    let (c2, _) = h.boot(&replacement[0], python_capabilities());
    let (call2, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(c2, &outs);
    let id = invocation_ids(&outs, c2).remove(0);
    let outs = h.send(c2, http_response(&id, 200, "again"));
    assert_eq!(replies(&outs)[0].0, call2);
}

#[test]
fn function_error_is_reported_and_worker_stays() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let (_, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let id = invocation_ids(&outs, conn).remove(0);
    let outs = h.send(conn, error_response(&id, "RuntimeError: boom"));
    assert!(
        matches!(replies(&outs)[..], [(_, Outcome::Failed(e))] if e.exception.message == "RuntimeError: boom" && !e.expose)
    );
    let (_, outs) = h.invoke("hello", "api/hello");
    assert_eq!(invocation_ids(&outs, conn).len(), 1, "same worker serves the next call");
}

#[test]
fn specialization_failures_make_the_app_fail_fast() {
    let (mut h, outs) = H::new(vec![pool(1, 8)]);
    let mut next = provisions(&outs);
    h.rt.deploy(h.now, sample_app("bad", &["f"], &[], scale(1, 1, 10))).unwrap();
    let (call, _) = h.invoke("bad", "api/f");
    for _ in 0..3 {
        let id = next.pop().expect("a worker to try");
        let (conn, outs) = h.boot(&id, python_capabilities());
        assert!(sent(&outs, conn).iter().any(|c| matches!(c, Content::FunctionEnvironmentReloadRequest(_))));
        let outs = h.send(conn, env_reload_ok());
        let load = sent(&outs, conn)
            .into_iter()
            .find_map(|c| match c {
                Content::FunctionLoadRequest(r) => Some(r.function_id.clone()),
                _ => None,
            })
            .unwrap();
        let outs = h.send(conn, load_response(&load, failed("ImportError: no module named x")));
        next.extend(provisions(&outs));
        if let Some((_, outcome)) = replies(&outs).first() {
            assert!(
                matches!(outcome, Outcome::Unavailable { reason: Unavailable::AppFailing(e), .. } if e.contains("ImportError"))
            );
            assert_eq!(replies(&outs)[0].0, call);
        }
        let _ = h.tick(Duration::from_millis(10));
    }
    let info = h.rt.app("bad").unwrap();
    assert!(info.failing && info.failures == 3, "{info:?}");
    let (_, outs) = h.invoke("bad", "api/f");
    assert!(matches!(
        replies(&outs)[..],
        [(_, Outcome::Unavailable { reason: Unavailable::AppFailing(_), .. })]
    ));
}

#[test]
fn remove_app_drains_then_releases_and_404s() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let (call, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let id = invocation_ids(&outs, conn).remove(0);
    h.rt.remove_app(h.now, "hello").unwrap();
    let outs = h.drain();
    assert!(closes(&outs).is_empty(), "in-flight work finishes first");
    let (_, outs2) = h.invoke("hello", "api/hello");
    assert!(matches!(replies(&outs2)[..], [(_, Outcome::NotFound(NotFound::App))]));
    let outs = h.send(conn, http_response(&id, 200, "done"));
    assert_eq!(replies(&outs)[0].0, call);
    assert!(outs.iter().any(|o| matches!(o, Output::Release { .. })), "{outs:?}");
    assert!(h.rt.workers(h.now).iter().all(|w| w.app.is_none()));
}

#[test]
fn heartbeat_worker_that_goes_silent_is_evicted() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let conn = h.connect(ConnMeta { join_token: Some("join-secret".into()), resume_token: None });
    let outs = h.send(conn, start_stream("cm-1"));
    assert!(events(&outs).iter().any(|e| matches!(e, Event::WorkerAdmitted { via: Admission::Joined, .. })));
    let caps = BTreeMap::from([("SwitchboardHeartbeatMs".to_owned(), "500".to_owned())]);
    let _ = h.send(conn, init_response(caps));
    let _ = h.tick(Duration::from_millis(1500));
    let _ = h.send(conn, msg(Content::WorkerHeartbeat(Default::default())));
    let outs = h.tick(Duration::from_millis(1900));
    assert!(closes(&outs).is_empty(), "heard from 1.9 s ago: alive");
    let outs = h.tick(Duration::from_millis(200));
    assert!(
        events(&outs).iter().any(|e| matches!(e, Event::WorkerEvicted { reason: EvictReason::Silent, .. })),
        "{outs:?}"
    );
}

#[test]
fn bad_join_token_is_permission_denied() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let conn = h.connect(ConnMeta { join_token: Some("wrong".into()), resume_token: None });
    let outs = h.send(conn, start_stream("cm-1"));
    assert!(matches!(closes(&outs)[..], [(_, CloseReason::PermissionDenied(m))] if m.contains("join token")));
}

#[test]
fn resumed_worker_keeps_its_in_flight_calls_and_answers_once() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let conn = h.connect(ConnMeta { join_token: Some("join-secret".into()), resume_token: None });
    let outs = h.send(conn, start_stream("cm-1"));
    let token = sent(&outs, conn)
        .into_iter()
        .find_map(|c| match c {
            Content::WorkerInitRequest(r) => r.capabilities.get("SwitchboardResumeToken").cloned(),
            _ => None,
        })
        .expect("connection-mode workers get a resume token");
    let caps = BTreeMap::from([("SwitchboardResume".to_owned(), "true".to_owned())]);
    let _ = h.send(conn, init_response(caps));
    h.rt.deploy(h.now, sample_app("hello", &["hello"], &[], scale(1, 4, 10))).unwrap();
    let (call, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let id = invocation_ids(&outs, conn).remove(0);
    let outs = h.input(Input::Disconnected { conn, reason: "proxy restarted".into() });
    assert!(replies(&outs).is_empty(), "held during the resume grace");
    let conn2 = h.connect(ConnMeta { join_token: Some("join-secret".into()), resume_token: Some(token) });
    let outs = h.send(conn2, start_stream("cm-1"));
    assert!(events(&outs).iter().any(|e| matches!(e, Event::WorkerResumed { resent: 1, .. })), "{outs:?}");
    assert_eq!(invocation_ids(&outs, conn2), vec![id.clone()], "in-flight call re-sent");
    let _ = h.send(conn2, init_response(BTreeMap::new()));
    let outs = h.send(conn2, http_response(&id, 200, "ok"));
    assert_eq!(replies(&outs).len(), 1);
    assert_eq!(replies(&outs)[0].0, call);
    let outs = h.send(conn2, http_response(&id, 200, "dup"));
    assert!(replies(&outs).is_empty(), "the duplicate is dropped");
}

#[test]
fn resume_grace_expiry_evicts_and_settles() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let conn = h.connect(ConnMeta { join_token: Some("join-secret".into()), resume_token: None });
    let _ = h.send(conn, start_stream("cm-1"));
    let caps = BTreeMap::from([("SwitchboardResume".to_owned(), "true".to_owned())]);
    let _ = h.send(conn, init_response(caps));
    h.rt.deploy(h.now, sample_app("hello", &["hello"], &[], scale(1, 4, 10))).unwrap();
    let (call, outs) = h.invoke("hello", "api/hello");
    let _ = h.specialize(conn, &outs);
    let _ = h.input(Input::Disconnected { conn, reason: "gone".into() });
    let outs = h.tick(Duration::from_secs(16));
    assert!(
        matches!(replies(&outs)[..], [(c, Outcome::Unavailable { reason: Unavailable::WorkerLost(_), .. })] if c == call)
    );
}

#[test]
fn worker_sending_host_messages_is_evicted() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let outs = h.send(conn, msg(Content::InvocationRequest(Default::default())));
    assert!(
        events(&outs)
            .iter()
            .any(|e| matches!(e, Event::WorkerEvicted { reason: EvictReason::ProtocolViolation(_), .. }))
    );
    assert!(matches!(closes(&outs)[..], [(_, CloseReason::ProtocolViolation(_))]));
}

#[test]
fn unknown_message_types_are_ignored_not_fatal() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let outs = h.send(conn, Box::new(StreamingMessage { request_id: String::new(), content: None }));
    assert!(closes(&outs).is_empty());
    assert_eq!(h.rt.counters().ignored, 1);
}

#[test]
fn retry_policy_moves_a_lost_call_to_another_worker() {
    let (mut h, outs) = H::new(vec![pool(2, 8)]);
    let ids = provisions(&outs);
    let (c1, _) = h.boot(&ids[0], python_capabilities());
    let (c2, _) = h.boot(&ids[1], python_capabilities());
    let mut spec = sample_app("r", &["f"], &[], ScaleSpec { min_workers: 2, ..scale(2, 1, 10) });
    spec.functions[0].retry = Some(crate::app::RetryPolicy {
        max_retries: 1,
        strategy: crate::app::RetryStrategy::Fixed(Duration::from_millis(100)),
    });
    h.rt.deploy(h.now, spec).unwrap();
    let outs = h.drain();
    let mut ready = h.specialize(c1, &outs);
    ready.extend(h.specialize(c2, &outs));
    let (call, outs) = h.invoke("r", "api/f");
    let (victim, survivor) = if invocation_ids(&outs, c1).is_empty() { (c2, c1) } else { (c1, c2) };
    let outs = h.input(Input::Disconnected { conn: victim, reason: "crash".into() });
    assert!(replies(&outs).is_empty(), "retried, not failed");
    let outs = h.tick(Duration::from_millis(100));
    let retried = invocation_ids(&outs, survivor);
    assert_eq!(retried.len(), 1, "{outs:?}");
    let retry_count = sent(&outs, survivor).into_iter().find_map(|c| match c {
        Content::InvocationRequest(r) => r.retry_context.as_ref().map(|rc| rc.retry_count),
        _ => None,
    });
    assert_eq!(retry_count, Some(1));
    let outs = h.send(survivor, http_response(&retried[0], 200, "ok"));
    assert_eq!(replies(&outs)[0].0, call);
}

#[test]
fn cancel_settles_once() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let (call, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let id = invocation_ids(&outs, conn).remove(0);
    let outs = h.input(Input::Cancel { call });
    assert!(matches!(replies(&outs)[..], [(c, Outcome::Cancelled)] if c == call));
    assert!(sent(&outs, conn).is_empty(), "the Python worker does not handle cancel: not sent");
    let outs = h.send(conn, http_response(&id, 200, "late"));
    assert!(replies(&outs).is_empty());
    let outs = h.input(Input::Cancel { call });
    assert!(outs.is_empty());
}

#[test]
fn new_version_replaces_old_workers_without_a_gap() {
    let (mut h, outs) = H::new(vec![pool(2, 8)]);
    let ids = provisions(&outs);
    let (c1, _) = h.boot(&ids[0], python_capabilities());
    let (c2, _) = h.boot(&ids[1], python_capabilities());
    let one = ScaleSpec { min_workers: 1, ..scale(2, 4, 10) };
    h.rt.deploy(h.now, sample_app("app", &["f"], &[("V", "1")], one)).unwrap();
    let outs = h.drain();
    let (old, new) = if sent(&outs, c1).is_empty() { (c2, c1) } else { (c1, c2) };
    let _ = h.specialize(old, &outs);
    assert_eq!(h.rt.deploy(h.now, sample_app("app", &["f"], &[("V", "2")], one)), Ok(2));
    let outs = h.drain();
    // The old worker still serves while the new one specializes.
    let (_, during) = h.invoke("app", "api/f");
    assert_eq!(invocation_ids(&during, old).len(), 1);
    let outs = h.specialize(new, &outs);
    assert!(
        events(&outs).iter().any(|e| matches!(e, Event::WorkerState { to: WorkerState::Draining, .. })),
        "old worker drains once the new one is ready: {outs:?}"
    );
    let (_, after) = h.invoke("app", "api/f");
    assert_eq!(invocation_ids(&after, new).len(), 1);
}

#[test]
fn shutdown_refuses_new_work_and_completes() {
    let (mut h, conn) = with_app(scale(1, 4, 10));
    let (_, outs) = h.invoke("hello", "api/hello");
    let outs = h.specialize(conn, &outs);
    let id = invocation_ids(&outs, conn).remove(0);
    h.rt.begin_shutdown(h.now);
    let outs = h.drain();
    assert!(!events(&outs).iter().any(|e| matches!(e, Event::ShutdownComplete)));
    let (_, outs) = h.invoke("hello", "api/hello");
    assert!(matches!(
        replies(&outs)[..],
        [(_, Outcome::Unavailable { reason: Unavailable::ShuttingDown, .. })]
    ));
    let outs = h.send(conn, http_response(&id, 200, "ok"));
    assert!(events(&outs).iter().any(|e| matches!(e, Event::ShutdownComplete)), "{outs:?}");
}

#[test]
fn same_inputs_same_outputs() {
    fn run() -> String {
        let (mut h, conn) = with_app(scale(1, 1, 10));
        let mut log = String::new();
        let (_, outs) = h.invoke("hello", "api/hello");
        let outs = h.specialize(conn, &outs);
        log.push_str(&format!("{outs:?}"));
        let (_, outs) = h.invoke("hello", "api/hello");
        log.push_str(&format!("{outs:?}"));
        log.push_str(&format!("{:?}", h.tick(Duration::from_secs(400))));
        log.replace(&format!("{:?}", h.now), "")
    }
    assert_eq!(run(), run());
}

// expect_worker: workers an earlier incarnation of the runtime started (pods that outlived it).

#[test]
fn expected_worker_is_admitted_once_without_a_provision() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let old = WorkerId("old-pod-worker".into());
    h.rt.expect_worker(h.now, &PoolKey::new("python", ""), old.clone(), Duration::from_secs(5)).unwrap();
    h.rt.upsert_pool(h.now, pool(1, 4)).unwrap();
    let outs = h.drain();
    assert!(provisions(&outs).is_empty(), "the worker exists already: {outs:?}");
    assert_eq!(h.rt.pools()[0].provisioning, 1, "counted as provisioning");
    // Admitted with its old id (boot asserts the init handshake), a placeholder like any other.
    let (_, outs) = h.boot(&old, python_capabilities());
    assert!(provisions(&outs).is_empty(), "{outs:?}");
    assert_eq!(h.rt.workers(h.now)[0].id, old.0);
    let p = &h.rt.pools()[0];
    assert_eq!((p.idle, p.members, p.provisioning), (1, 1, 0));
    assert!(h.rt.workers(h.now)[0].provisioned, "released like a provisioned worker");
    // Single use: the ticket is gone once used.
    let outs = h.tick(Duration::from_secs(6));
    assert!(!outs.iter().any(|o| matches!(o, Output::Release { .. })), "{outs:?}");
}

#[test]
fn expected_worker_that_does_not_come_back_is_released_and_replaced_without_backoff() {
    // The shell's order: the pool starts with min_idle 0, expects, then gets its real bounds.
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let key = PoolKey::new("python", "");
    let old = WorkerId("gone-for-good".into());
    h.rt.expect_worker(h.now, &key, old.clone(), Duration::from_secs(5)).unwrap();
    h.rt.upsert_pool(h.now, pool(1, 4)).unwrap();
    let outs = h.drain();
    assert!(provisions(&outs).is_empty(), "the expected worker counts toward min_idle: {outs:?}");

    let outs = h.tick(Duration::from_millis(4_900));
    assert!(outs.is_empty(), "{outs:?}");
    let outs = h.tick(Duration::from_millis(100));
    assert!(outs.iter().any(|o| matches!(o, Output::Release { worker, .. } if *worker == old)), "{outs:?}");
    assert_eq!(provisions(&outs).len(), 1, "replaced at once, no backoff: {outs:?}");
    assert!(events(&outs).iter().any(
        |e| matches!(e, Event::ProvisionFailed { worker, backoff, .. } if *worker == old && backoff.is_zero())
    ));
    assert_eq!(h.rt.pools()[0].failures, 0);
    // The expired id admits nobody.
    let conn = h.connect(ConnMeta::default());
    let outs = h.send(conn, start_stream(&old.0));
    assert!(matches!(closes(&outs)[..], [(_, CloseReason::Unauthenticated(_))]), "{outs:?}");
}

#[test]
fn expected_worker_whose_process_exits_is_replaced_without_backoff() {
    let (mut h, _) = H::new(vec![pool(0, 4)]);
    let old = WorkerId("exits".into());
    h.rt.expect_worker(h.now, &PoolKey::new("python", ""), old.clone(), Duration::from_secs(30)).unwrap();
    h.rt.upsert_pool(h.now, pool(1, 4)).unwrap();
    assert!(provisions(&h.drain()).is_empty());
    let outs = h.input(Input::WorkerExited { worker: old, status: "pod failed".into() });
    assert_eq!(provisions(&outs).len(), 1, "{outs:?}");
    assert_eq!(h.rt.pools()[0].provisioning, 1);
}

#[test]
fn expect_worker_refuses_unknown_pools_full_pools_known_and_bad_ids() {
    let (mut h, _) = H::new(vec![pool(0, 1)]);
    let key = PoolKey::new("python", "");
    let within = Duration::from_secs(5);
    let r = h.rt.expect_worker(h.now, &PoolKey::new("node", ""), WorkerId("a".into()), within);
    assert_eq!(r, Err(ExpectError::NoPool("node".into())));
    assert_eq!(
        h.rt.expect_worker(h.now, &key, WorkerId(String::new()), within),
        Err(ExpectError::InvalidId(String::new()))
    );
    h.rt.expect_worker(h.now, &key, WorkerId("a".into()), within).unwrap();
    assert_eq!(
        h.rt.expect_worker(h.now, &key, WorkerId("a".into()), within),
        Err(ExpectError::Known("a".into()))
    );
    assert_eq!(
        h.rt.expect_worker(h.now, &key, WorkerId("b".into()), within),
        Err(ExpectError::PoolFull("python".into())),
        "max counts expected workers"
    );
    h.rt.begin_shutdown(h.now);
    let outs = h.drain();
    assert!(
        outs.iter().any(|o| matches!(o, Output::Release { worker, .. } if worker.0 == "a")),
        "shutdown releases expected workers like provisioned ones: {outs:?}"
    );
    assert_eq!(h.rt.expect_worker(h.now, &key, WorkerId("c".into()), within), Err(ExpectError::ShuttingDown));
}
