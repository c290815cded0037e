//! End to end: a real [`crate::Runtime`] and real workers over the in-memory network, on a
//! virtual clock. The network itself asserts that no call is answered twice and no worker
//! runs an invocation twice.

use std::time::Duration;

use super::net::{Net, body, ok_handler};
use crate::app::{AppSpec, ScaleSpec};
use crate::testkit::sample_app;
use crate::worker::{WorkerConfig, WorkerEvent, WorkerInput};
use crate::{CallId, Config, Event, EvictReason, Outcome, PoolKey, PoolSpec, Unavailable};

const JOIN: &str = "join-secret";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rt_config() -> Config {
    let mut pool = PoolSpec::new(PoolKey::new("python", ""), 0, 8);
    pool.provisioned = false; // external pool: workers come on their own with the token
    pool.join_token = Some(JOIN.into());
    Config { seed: [9; 32], pools: vec![pool], ..Config::default() }
}

fn worker_config(id: &str, seed: u8) -> WorkerConfig {
    WorkerConfig { seed: [seed; 32], join_token: Some(JOIN.into()), ..WorkerConfig::new(id) }
}

fn app(max_workers: u32, concurrency: u32) -> AppSpec {
    let scale = ScaleSpec { min_workers: 0, max_workers, concurrency, queue_limit: 100 };
    sample_app("hello", &["hello"], &[], scale)
}

/// A runtime and one registered placeholder worker `w-1`, whose handler answers at once
/// (`auto`) or when the test says (parked).
fn one_worker(auto: bool) -> (Net, usize) {
    let mut net = Net::new(rt_config());
    let w = net.add_worker(worker_config("w-1", 1), ok_handler());
    net.nodes[w].auto = auto;
    assert!(net.run_until(secs(1), |n| n.placeholders() == 1), "the worker registers");
    (net, w)
}

/// Invokes `n` calls and waits until worker `w` has them all parked.
fn park(net: &mut Net, w: usize, n: usize) -> Vec<CallId> {
    let calls: Vec<CallId> = (0..n).map(|_| net.invoke("hello", "api/hello")).collect();
    assert!(
        net.run_until(secs(5), |net| net.nodes[w].parked.len() == n),
        "{n} invocations reach the handler"
    );
    calls
}

fn assert_all_ok(net: &Net, calls: &[CallId]) {
    for call in calls {
        let replies = &net.replies[call];
        assert_eq!(replies.len(), 1, "{call}: {replies:?}");
        assert_eq!(body(&replies[0]).as_deref(), Some("ok"), "{call}: {replies:?}");
    }
}

fn worker_lost(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Unavailable { reason: Unavailable::WorkerLost(_), .. })
}

fn evicted_silent(net: &Net) -> Option<std::time::Instant> {
    net.rt_events.iter().find_map(|(at, e)| {
        matches!(e, Event::WorkerEvicted { reason: EvictReason::Silent, .. }).then_some(*at)
    })
}

#[test]
fn registers_specializes_and_serves_end_to_end() {
    let (mut net, w) = one_worker(true);
    assert!(net.events_of(w).contains(&WorkerEvent::Registered));
    net.deploy(app(1, 4));
    let call = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&call)));
    assert_all_ok(&net, &[call]);
    // Heartbeats keep both ends content: no eviction, no reconnect.
    net.run_for(secs(30));
    assert!(net.nodes[w].w.is_registered());
    assert_eq!(net.count_events(w, |e| matches!(e, WorkerEvent::Connected)), 1);
    assert!(!net.rt_events.iter().any(|(_, e)| matches!(e, Event::WorkerEvicted { .. })));
    let call = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(1), |n| n.replies.contains_key(&call)));
}

#[test]
fn a_cut_with_20_in_flight_resumes_and_answers_each_call_exactly_once() {
    let (mut net, w) = one_worker(false);
    net.deploy(app(1, 32));
    let calls = park(&mut net, w, 20);
    net.finish(w, 5); // these answers are on the wire...
    net.cut(w); // ...and are lost with the stream
    net.finish(w, 10); // completed while disconnected: kept
    assert_eq!(net.nodes[w].w.buffered(), 10);
    assert!(net.run_until(secs(5), |n| n.nodes[w].w.is_registered()), "resumed");
    net.finish(w, 5); // still running through the resume
    assert!(net.run_until(secs(5), |n| n.replies.len() == 20));
    net.run_for(secs(5)); // room for a duplicate to show up
    assert_all_ok(&net, &calls);
    assert_eq!(net.nodes[w].invoked.len(), 20, "each ran once");
    assert!(net.events_of(w).contains(&WorkerEvent::Resumed { flushed: 10 }));
    assert_eq!(net.count_events(w, |e| matches!(e, WorkerEvent::Redelivered { .. })), 5);
    assert_eq!(net.nodes[w].resets, 0);
    assert!(net.rt_events.iter().any(|(_, e)| matches!(e, Event::WorkerResumed { resent: 20, .. })));
    let c = net.rt.counters();
    assert_eq!((c.unknown_responses, c.late_responses), (0, 0), "no response reached the runtime twice");
}

#[test]
fn a_frozen_worker_is_evicted_in_bound_and_rejoins_without_a_duplicate_reply() {
    let (mut net, w) = one_worker(false);
    net.deploy(app(1, 8));
    let calls = park(&mut net, w, 3);
    net.run_for(secs(1));
    let frozen_at = net.now;
    net.set_frozen(w, true);
    assert!(net.run_until(secs(10), |n| evicted_silent(n).is_some()));
    // The runtime's bound: max(2 s, 2 × 500 ms) after the last heartbeat it got, which left
    // at most one heartbeat interval before the freeze and arrived one latency later.
    let after = evicted_silent(&net).unwrap() - frozen_at;
    let (earliest, latest) = (secs(2) - Duration::from_millis(500), secs(2) + net.latency);
    assert!(after >= earliest && after <= latest, "evicted {after:?} after the freeze");
    for call in &calls {
        assert!(worker_lost(&net.replies[call][0]), "{:?}", net.replies[call]);
    }
    // The runtime's close reaches the (frozen) worker's socket; the handler finishes
    // meanwhile; the process thaws a while later.
    net.run_for(Duration::from_millis(10));
    net.finish(w, 3);
    net.run_for(secs(1));
    net.set_frozen(w, false);
    assert!(net.run_until(secs(5), |n| n.nodes[w].w.is_registered() && n.placeholders() == 1));
    assert_eq!(net.nodes[w].resets, 1);
    assert!(
        net.events_of(w).contains(&WorkerEvent::SlotLost { running: 0, dropped_responses: 3 }),
        "{:#?}",
        net.events_of(w)
    );
    net.run_for(secs(2));
    for call in &calls {
        assert_eq!(net.replies[call].len(), 1);
    }
    net.nodes[w].auto = true;
    let call = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&call)));
    assert_all_ok(&net, &[call]);
}

#[test]
fn a_partition_is_noticed_at_both_ends_and_the_worker_rejoins_once_it_heals() {
    let (mut net, w) = one_worker(false);
    net.deploy(app(1, 8));
    let calls = park(&mut net, w, 2);
    net.run_for(secs(1));
    let cut_at = net.now;
    net.set_blackholed(w, true);
    let worker_noticed = |n: &Net| {
        n.events_of(w)
            .iter()
            .any(|e| matches!(e, WorkerEvent::Disconnected { reason } if reason.contains("no message")))
    };
    assert!(net.run_until(secs(5), |n| evicted_silent(n).is_some() && worker_noticed(n)));
    assert!(net.now - cut_at <= Duration::from_millis(2100), "both within the silence bounds");
    net.finish(w, 2);
    net.run_for(secs(8)); // dials hang and time out meanwhile
    assert!(net.count_events(w, |e| matches!(e, WorkerEvent::ConnectFailed { .. })) >= 1);
    net.set_blackholed(w, false);
    assert!(net.run_until(secs(15), |n| n.nodes[w].w.is_registered() && n.placeholders() == 1));
    assert_eq!(net.nodes[w].resets, 1);
    for call in &calls {
        assert!(worker_lost(&net.replies[call][0]));
    }
    net.nodes[w].auto = true;
    let call = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&call)));
    assert_all_ok(&net, &[call]);
}

#[test]
fn a_worker_that_stops_hearing_the_runtime_resumes_its_slot_without_duplicates() {
    let (mut net, w) = one_worker(false);
    net.deploy(app(1, 8));
    let calls = park(&mut net, w, 4);
    net.make_deaf(w);
    net.finish(w, 2); // these still reach the runtime, but no echo confirms them
    let noticed = |n: &Net| {
        n.events_of(w)
            .iter()
            .any(|e| matches!(e, WorkerEvent::Disconnected { reason } if reason.contains("no message")))
    };
    assert!(net.run_until(secs(3), noticed), "the worker notices the silence first");
    assert!(evicted_silent(&net).is_none(), "the runtime still heard heartbeats");
    assert!(net.run_until(secs(2), |n| n.nodes[w].w.is_registered()));
    assert!(net.events_of(w).contains(&WorkerEvent::Resumed { flushed: 0 }));
    net.finish(w, 2);
    assert!(net.run_until(secs(2), |n| n.replies.len() == 4));
    net.run_for(secs(3));
    assert_all_ok(&net, &calls);
    assert_eq!(net.count_events(w, |e| matches!(e, WorkerEvent::Redelivered { .. })), 0, "they had arrived");
    assert!(net.rt_events.iter().any(|(_, e)| matches!(e, Event::WorkerResumed { resent: 2, .. })));
    let c = net.rt.counters();
    assert_eq!((c.unknown_responses, c.late_responses), (0, 0));
}

#[test]
fn a_cut_during_specialization_costs_the_slot_but_the_queued_call_is_served() {
    let (mut net, w) = one_worker(true);
    net.work = Duration::from_millis(60); // the handler takes 60 ms to start
    net.deploy(app(1, 4));
    let call = net.invoke("hello", "api/hello");
    assert_eq!(net.placeholders(), 0, "specializing");
    net.run_for(Duration::from_millis(10));
    net.cut(w); // the env reload is under way; it finishes before the redial
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&call)));
    assert_all_ok(&net, &[call]);
    assert!(
        net.events_of(w).iter().any(|e| matches!(e, WorkerEvent::ReplyDropped { .. })),
        "{:#?}",
        net.events_of(w)
    );
    assert_eq!(net.nodes[w].resets, 1, "the runtime does not resume a worker mid-specialization");
}

#[test]
fn a_restarted_runtime_gets_a_fresh_registration_and_service_resumes() {
    let (mut net, w) = one_worker(true);
    net.deploy(app(1, 4));
    let call = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&call)));
    net.restart_runtime(secs(1));
    assert!(net.run_until(secs(10), |n| n.nodes[w].w.is_registered() && n.placeholders() == 1));
    assert!(
        net.count_events(w, |e| matches!(e, WorkerEvent::ConnectFailed { .. })) >= 1,
        "refused while down"
    );
    assert_eq!(net.nodes[w].resets, 1, "the new runtime does not know the app: reset");
    net.deploy(app(1, 4));
    let call = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&call)));
    assert_all_ok(&net, &[call]);
}

#[test]
fn local_drain_finishes_in_flight_work_sends_new_work_elsewhere_and_exits_0() {
    let (mut net, w) = one_worker(false);
    net.deploy(app(2, 8));
    let calls = park(&mut net, w, 3);
    net.input(w, WorkerInput::Drain);
    // Routed before the runtime heard of the drain: run, not refused.
    let crossed = net.invoke("hello", "api/hello");
    assert!(net.run_until(secs(1), |n| n.nodes[w].parked.len() == 4));
    // Routed after: waits for another worker.
    net.run_for(Duration::from_millis(10));
    let later = net.invoke("hello", "api/hello");
    net.run_for(secs(1));
    assert!(!net.replies.contains_key(&later), "{:?}", net.replies.get(&later));
    let other = net.add_worker(worker_config("w-2", 2), ok_handler());
    assert!(net.run_until(secs(5), |n| n.replies.contains_key(&later)));
    assert_eq!(net.nodes[other].invoked.len(), 1);
    net.finish(w, 4);
    assert!(net.run_until(secs(2), |n| n.nodes[w].exit.is_some()));
    assert_eq!(net.nodes[w].exit.as_ref().map(|(code, _)| *code), Some(0));
    assert_all_ok(&net, &calls);
    assert_all_ok(&net, &[crossed, later]);
    assert_eq!(net.nodes[w].invoked.len(), 4);
    assert!(net.rt_events.iter().any(|(_, e)| matches!(e, Event::WorkerReleased { .. })), "no slot lingers");
}

#[test]
fn a_worker_drained_by_the_runtime_is_terminated_and_exits_0() {
    let (mut net, w) = one_worker(false);
    net.deploy(app(1, 8));
    let calls = park(&mut net, w, 2);
    net.drain_worker("w-1");
    net.finish(w, 2);
    let exited = net.run_until(secs(2), |n| n.nodes[w].exit.is_some());
    assert!(exited, "{:#?}\n{:#?}", net.events_of(w), net.rt_events);
    assert_eq!(net.nodes[w].exit.as_ref().map(|(code, _)| *code), Some(0));
    assert_all_ok(&net, &calls);
    assert!(net.events_of(w).iter().any(|e| matches!(e, WorkerEvent::Draining { .. })));
    assert!(net.rt_events.iter().any(|(_, e)| matches!(e, Event::WorkerReleased { .. })));
    net.run_for(secs(5));
    assert_eq!(net.count_events(w, |e| matches!(e, WorkerEvent::Connected)), 1, "never redials");
}

#[test]
fn two_workers_share_the_load_through_a_cut_and_a_seeded_run_repeats_exactly() {
    fn run() -> String {
        let mut net = Net::new(rt_config());
        let a = net.add_worker(worker_config("w-a", 1), ok_handler());
        let b = net.add_worker(worker_config("w-b", 2), ok_handler());
        assert!(net.run_until(secs(1), |n| n.placeholders() == 2));
        net.deploy(app(2, 4));
        let calls: Vec<CallId> = (0..12).map(|_| net.invoke("hello", "api/hello")).collect();
        assert!(net.run_until(secs(5), |n| !n.nodes[a].invoked.is_empty() && !n.nodes[b].invoked.is_empty()));
        net.cut(a);
        assert!(net.run_until(secs(10), |n| n.replies.len() == 12));
        assert_all_ok(&net, &calls);
        assert_eq!(net.nodes[a].invoked.len() + net.nodes[b].invoked.len(), 12);
        let events: Vec<_> = net.rt_events.iter().map(|(_, e)| e).collect();
        format!("{:?}\n{:?}\n{:?}\n{events:?}", net.replies, net.events_of(a), net.events_of(b))
    }
    assert_eq!(run(), run());
}
