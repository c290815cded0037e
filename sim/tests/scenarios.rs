//! Scripted scenarios on the simulation harness: regressions for core bugs the simulation
//! found, each pinned down without depending on a seed's draw.

use std::time::Duration;

use switchboard_core::app::ScaleSpec;
use switchboard_core::{OutcomeKind, PoolKey, PoolSpec};
use switchboard_sim::plan::join_token;
use switchboard_sim::{AppPlan, Plan, PoolPlan, World};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One provisioned python pool (legacy workers or connection-mode ones) and one app `alpha`
/// with a single worker of concurrency 1, warmed up until that worker is ready.
fn one_worker(legacy: bool) -> World {
    let mut spec = PoolSpec::new(PoolKey::new("python", ""), 1, 3);
    spec.join_token = Some(join_token(0));
    let pool = PoolPlan { spec, legacy_share: if legacy { 1.0 } else { 0.0 }, external: 0 };
    let app = AppPlan {
        name: "alpha".into(),
        pool: 0,
        scale: ScaleSpec { min_workers: 1, max_workers: 1, concurrency: 1, queue_limit: 10 },
        function_timeout: Duration::from_secs(8),
        broken: false,
    };
    let mut world = World::new(Plan::new(1, vec![pool], vec![app]), Some(400));
    world.run_for(Duration::from_secs(3));
    let ready = world.rt.app("alpha").map(|a| a.ready);
    assert_eq!(ready, Some(1), "{}", world.describe());
    world
}

/// Found by the simulation (seed 1 of the first harness): a retried invocation went out again
/// under its first invocation id. A connection-mode worker that had answered that id took the
/// retry for a re-send after a resume and did not run it: the call hung until its deadline.
/// Fixed in `core/src/runtime/router.rs` (`rekey`): each attempt has its own id.
#[test]
fn a_retry_runs_again_on_the_worker_that_answered_the_first_attempt() {
    for legacy in [false, true] {
        let mut world = one_worker(legacy);
        // `q` is queue-triggered with `maxRetryCount: 3`: a raising call is retried 3 times.
        let call = world.invoke("alpha", "q", ms(10), true, None);
        world.run_for(Duration::from_secs(4));
        assert_eq!(world.violation(), None);
        assert_eq!(
            world.obs.outcome_of(call),
            Some(OutcomeKind::Failure),
            "legacy: {legacy}\n{}",
            world.describe()
        );
        assert_eq!(world.rt.counters().retries, 3);
    }
}

/// Found while fixing the above: when an attempt failed and was scheduled for a retry, its
/// worker's freed slot was not offered to the queue, so a queued call could wait out its
/// deadline next to an idle worker. Fixed in `core/src/runtime/router.rs`
/// (`on_invocation_response` feeds the worker after scheduling the retry).
#[test]
fn a_failed_attempt_that_will_be_retried_frees_its_worker_for_the_queue() {
    for legacy in [false, true] {
        let mut world = one_worker(legacy);
        let failing = world.invoke("alpha", "q", ms(10), true, None);
        let queued = world.invoke("alpha", "f", ms(10), false, Some(ms(150)));
        world.run_for(Duration::from_secs(2));
        assert_eq!(world.violation(), None);
        assert_eq!(
            world.obs.outcome_of(queued),
            Some(OutcomeKind::Success),
            "legacy: {legacy}\n{}",
            world.describe()
        );
        assert_eq!(world.obs.outcome_of(failing), Some(OutcomeKind::Failure));
    }
}
