//! The runtime's side of connection-mode workers that leave on their own: a worker that drains
//! locally (SIGTERM) says so with `WorkerActionResponse{Restart}` (reason
//! [`cap::LEAVE_DRAINING`]) and is routed no more work; one that exits before its drain is done
//! says [`cap::LEAVE_EXITING`] and its calls are settled at once instead of after the resume
//! grace. Scripted message by message, as a shell would drive the core.

use std::time::Duration;

use switchboard_proto::Content;
use switchboard_proto::rpc::{StreamingMessage, WorkerActionResponse, worker_action_response};

use super::harness::*;
use super::registry::cap;
use crate::app::ScaleSpec;
use crate::testkit::*;
use crate::*;

const JOIN: &str = "join-secret";

/// A runtime with one external pool (workers join with the token) and app `hello`.
fn setup(concurrency: u32) -> H {
    let mut pool = PoolSpec::new(PoolKey::new("python", ""), 0, 8);
    pool.provisioned = false;
    pool.join_token = Some(JOIN.into());
    let (mut h, _) = H::with(Config { seed: [7; 32], pools: vec![pool], ..Config::default() });
    let scale = ScaleSpec { min_workers: 0, max_workers: 2, concurrency, queue_limit: 10 };
    h.rt.deploy(h.now, sample_app("hello", &["hello"], &[], scale)).unwrap();
    let _ = h.drain();
    h
}

impl H {
    /// A worker that joins with the pool's token and advertises connection mode; returns its
    /// stream and what followed its init handshake.
    fn join(&mut self, id: &str) -> (ConnId, Vec<Output>) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let meta = ConnMeta { join_token: Some(JOIN.into()), resume_token: None };
        let _ = self.input(Input::Connected { conn, peer: "127.0.0.1:1".into(), meta });
        let outs = self.send(conn, start_stream(id));
        let token = sent(&outs, conn).iter().find_map(|c| match c {
            Content::WorkerInitRequest(r) => r.capabilities.get(cap::RESUME_TOKEN).cloned(),
            _ => None,
        });
        self.tokens.insert(id.into(), token.expect("a resume token for a connection-mode worker"));
        let mut caps = python_capabilities();
        for key in [cap::RESUME, "HandlesWorkerTerminateMessage"] {
            caps.insert(key.into(), "true".into());
        }
        caps.insert(cap::HEARTBEAT_MS.into(), "500".into());
        let outs = self.send(conn, init_response(caps));
        (conn, outs)
    }

    /// A ready worker `w-1` holding `n` invocations (their wire ids and calls).
    fn ready_with(n: usize) -> (H, ConnId, Vec<(CallId, String)>) {
        let mut h = setup(8);
        let (conn, _) = h.join("w-1");
        let mut calls = Vec::new();
        let (first, outs) = h.invoke("hello", "api/hello");
        calls.push(first);
        let mut ids = invocation_ids(&h.specialize(conn, &outs), conn);
        for _ in 1..n {
            let (call, outs) = h.invoke("hello", "api/hello");
            calls.push(call);
            ids.extend(invocation_ids(&outs, conn));
        }
        assert_eq!(ids.len(), n, "all sent to w-1");
        (h, conn, calls.into_iter().zip(ids).collect())
    }
}

fn leave(reason: &str) -> Box<StreamingMessage> {
    msg(Content::WorkerActionResponse(WorkerActionResponse {
        action: worker_action_response::Action::Restart as i32,
        reason: reason.into(),
    }))
}

fn terminated_and_closed(outs: &[Output], conn: ConnId) -> bool {
    sent(outs, conn).iter().any(|c| matches!(c, Content::WorkerTerminate(_)))
        && outs.iter().any(|o| matches!(o, Output::Close { conn: c, .. } if *c == conn))
}

#[test]
fn a_worker_draining_on_its_own_gets_no_new_work_and_is_released_once_answered() {
    let (mut h, conn, calls) = H::ready_with(2);
    let outs = h.send(conn, leave(cap::LEAVE_DRAINING));
    assert!(
        events(&outs).iter().any(|e| matches!(
            e,
            Event::WorkerState { to: WorkerState::Draining, reason, .. } if reason.contains("draining")
        )),
        "{outs:?}"
    );
    // New work waits for another worker instead of reaching the draining one.
    let (queued, outs) = h.invoke("hello", "api/hello");
    assert!(invocation_ids(&outs, conn).is_empty(), "{outs:?}");
    assert!(replies(&outs).is_empty());
    // The signal is idempotent (the worker re-sends it after a resume).
    let outs = h.send(conn, leave(cap::LEAVE_DRAINING));
    assert!(invocation_ids(&outs, conn).is_empty() && replies(&outs).is_empty(), "{outs:?}");
    let outs = h.send(conn, http_response(&calls[0].1, 200, "a"));
    assert_eq!(replies(&outs).iter().map(|r| r.0).collect::<Vec<_>>(), vec![calls[0].0]);
    assert!(!terminated_and_closed(&outs, conn), "one call still in flight");
    let outs = h.send(conn, http_response(&calls[1].1, 200, "b"));
    assert_eq!(replies(&outs).iter().map(|r| r.0).collect::<Vec<_>>(), vec![calls[1].0]);
    assert!(terminated_and_closed(&outs, conn), "released: no resumable slot outlives it {outs:?}");
    assert!(events(&outs).iter().any(|e| matches!(e, Event::WorkerReleased { .. })));
    assert!(h.rt.workers(h.now).is_empty());
    // The queued call is served by the next worker to join.
    let (other, outs) = h.join("w-2");
    let outs = h.specialize(other, &outs);
    let ids = invocation_ids(&outs, other);
    assert_eq!(ids.len(), 1, "{outs:?}");
    let outs = h.send(other, http_response(&ids[0], 200, "c"));
    assert_eq!(replies(&outs).iter().map(|r| r.0).collect::<Vec<_>>(), vec![queued]);
}

#[test]
fn an_idle_worker_that_drains_is_released_at_once() {
    let mut h = setup(8);
    let (conn, _) = h.join("w-1");
    assert_eq!(h.rt.pools()[0].idle, 1);
    let outs = h.send(conn, leave(cap::LEAVE_DRAINING));
    assert!(terminated_and_closed(&outs, conn), "{outs:?}");
    let pool = &h.rt.pools()[0];
    assert_eq!((pool.idle, pool.members), (0, 0));
    // Its stream then closing is no news.
    let outs = h.input(Input::Disconnected { conn, reason: "closed by the worker".into() });
    assert!(outs.is_empty(), "{outs:?}");
}

#[test]
fn a_worker_exiting_before_its_drain_is_done_is_settled_at_once_not_after_the_resume_grace() {
    let (mut h, conn, calls) = H::ready_with(2);
    let _ = h.send(conn, leave(cap::LEAVE_DRAINING));
    let outs = h.send(conn, http_response(&calls[0].1, 200, "a"));
    assert_eq!(replies(&outs).len(), 1);
    let outs = h.send(conn, leave(cap::LEAVE_EXITING));
    let r = replies(&outs);
    assert_eq!(r.len(), 1, "{outs:?}");
    assert_eq!(r[0].0, calls[1].0);
    assert!(matches!(r[0].1, Outcome::Unavailable { reason: Unavailable::WorkerLost(_), .. }), "{r:?}");
    assert!(
        events(&outs)
            .iter()
            .any(|e| matches!(e, Event::WorkerEvicted { reason: EvictReason::Exited(_), .. }))
    );
    assert!(h.rt.workers(h.now).is_empty(), "no slot kept for a resume");
}

#[test]
fn a_worker_that_loses_its_stream_mid_drain_resumes_and_delivers() {
    let (mut h, conn, calls) = H::ready_with(1);
    let token = h.tokens["w-1"].clone();
    let _ = h.send(conn, leave(cap::LEAVE_DRAINING));
    // The stream drops while draining: the slot is kept so the answer can still arrive.
    let outs = h.input(Input::Disconnected { conn, reason: "reset".into() });
    assert!(replies(&outs).is_empty(), "{outs:?}");
    assert_eq!(h.rt.workers(h.now).len(), 1);
    h.now += Duration::from_millis(100);
    let again = ConnId(h.next_conn);
    h.next_conn += 1;
    let meta = ConnMeta { join_token: None, resume_token: Some(token) };
    let _ = h.input(Input::Connected { conn: again, peer: "127.0.0.1:2".into(), meta });
    let outs = h.send(again, start_stream("w-1"));
    assert_eq!(invocation_ids(&outs, again), vec![calls[0].1.clone()], "re-sent after the resume");
    let _ = h.send(again, leave(cap::LEAVE_DRAINING));
    let outs = h.send(again, http_response(&calls[0].1, 200, "a"));
    assert_eq!(replies(&outs).iter().map(|r| r.0).collect::<Vec<_>>(), vec![calls[0].0]);
    assert!(terminated_and_closed(&outs, again), "{outs:?}");
}

#[test]
fn a_restart_request_from_any_worker_drains_it_and_unknown_actions_are_ignored() {
    let (mut h, conn, calls) = H::ready_with(1);
    let odd = msg(Content::WorkerActionResponse(WorkerActionResponse { action: 7, reason: "?".into() }));
    let outs = h.send(conn, odd);
    assert!(events(&outs).iter().any(|e| matches!(e, Event::MessageIgnored { .. })), "{outs:?}");
    let outs = h.send(conn, leave("out of memory"));
    assert!(
        events(&outs).iter().any(|e| matches!(
            e,
            Event::WorkerState { to: WorkerState::Draining, reason, .. } if reason.contains("out of memory")
        )),
        "{outs:?}"
    );
    let outs = h.send(conn, http_response(&calls[0].1, 200, "a"));
    assert!(terminated_and_closed(&outs, conn));
}
