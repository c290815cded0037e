//! The deterministic simulation, as CI runs it.
//!
//! - `SIM_SEED=N`: run only seed N (its plan and its report are printed).
//! - `SIM_RUNS=K`: run K seeds (default 1000) from `SIM_FIRST` (default 0; `random` picks a
//!   start from the clock and prints it).
//! - `SIM_CHECK_DETERMINISM=1`: run each seed twice and compare the hash of the runtime's
//!   input/output log.
//! - `SIM_BUG=forward-late-response|crossed-streams`: plant a bug (to reproduce a failure of
//!   `planted_bugs_are_caught`).
//!
//! Each seed's plan (the faults it drew) is printed before it runs; a failure prints the
//! command that reproduces it. Run with `--nocapture` to watch.

use std::time::Instant;

use switchboard_sim::{Bugs, run_seed, run_seeds};

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn planted() -> Bugs {
    let mut bugs = Bugs::default();
    if let Ok(v) = std::env::var("SIM_BUG") {
        for name in v.split(',') {
            match name.trim() {
                "forward-late-response" => bugs.forward_late_response = true,
                "crossed-streams" => bugs.crossed_streams = true,
                "" => {}
                other => panic!("unknown SIM_BUG {other:?}"),
            }
        }
    }
    bugs
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// 1,000 seeds with mixed fault settings (or what `SIM_SEED` / `SIM_RUNS` say).
#[test]
fn seeds() {
    let determinism = env_flag("SIM_CHECK_DETERMINISM");
    let bugs = planted();
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let runs = env_u64("SIM_RUNS").unwrap_or(1000);
            let first = match std::env::var("SIM_FIRST").ok().as_deref() {
                Some("random") => {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    let first = nanos % 1_000_000_000;
                    println!("SIM_FIRST=random picked {first}");
                    first
                }
                _ => env_u64("SIM_FIRST").unwrap_or(0),
            };
            (first..first + runs).collect()
        }
    };
    let started = Instant::now();
    let batch = run_seeds(&seeds, threads(), bugs, determinism, true);
    let wall = started.elapsed();
    let worst = batch.reports.iter().max_by_key(|r| r.recovered_after);
    let steps: u64 = batch.reports.iter().map(|r| r.steps).sum();
    println!(
        "{} seeds in {:.1}s wall ({} steps); {} passed, {} failed; slowest recovery: {}",
        seeds.len(),
        wall.as_secs_f64(),
        steps,
        batch.reports.len(),
        batch.failures.len(),
        worst.map_or("-".to_owned(), |r| format!(
            "{:.2}s (seed {})",
            r.recovered_after.as_secs_f64(),
            r.seed
        ))
    );
    if let Some(first) = batch.failures.first() {
        let seeds: Vec<u64> = batch.failures.iter().map(|f| f.seed).collect();
        panic!(
            "{} of {} seeds failed: {seeds:?}\nfirst failure:\n{first}",
            seeds.len(),
            batch.reports.len() + seeds.len()
        );
    }
}

/// The same seed gives the same run: the hash of the runtime's inputs and outputs matches,
/// and different seeds give different runs.
#[test]
fn determinism() {
    let mut hashes = Vec::new();
    for seed in [1u64, 7, 42, 1234] {
        let report = run_seed(seed, Bugs::default(), true).unwrap_or_else(|f| panic!("{f}"));
        hashes.push(report.hash.expect("traced runs have a hash"));
    }
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), 4, "different seeds, different runs");
}

/// The harness can fail: with a bug planted in its shell layer, the simulation catches it
/// within a few seeds, naming the broken promise.
///
/// - `forward_late_response`: a shell that forwards a worker's duplicate answer (which the core
///   drops) to a caller that already has its answer. Caught by "at most one answer per call";
///   first at seed 6, in about half of all seeds.
/// - `crossed_streams`: a shell whose stream table hands one invocation in 500 to another
///   worker's stream. Caught by the workers' own check that an invocation belongs to their
///   app; first at seed 1, in about half of all seeds.
#[test]
fn planted_bugs_are_caught() {
    let cases = [
        (Bugs { forward_late_response: true, ..Bugs::default() }, "answered twice"),
        (Bugs { crossed_streams: true, ..Bugs::default() }, "was handed call-"),
    ];
    for (bugs, expected) in cases {
        let caught = (0..20u64).find_map(|seed| run_seed(seed, bugs, false).err().map(|f| (seed, f)));
        let Some((seed, failure)) = caught else { panic!("{bugs:?} not caught within 20 seeds") };
        println!("{bugs:?}: caught at seed {seed}: {}", failure.what);
        assert!(failure.what.contains(expected), "{bugs:?} caught for another reason:\n{failure}");
        assert!(failure.reproduce().contains("SIM_BUG="), "{}", failure.reproduce());
    }
}

/// Seeds that found core bugs (with the harness as it was when they did): a retried
/// invocation re-sent under its first id (`core/src/runtime/router.rs`, `rekey`). Kept as a
/// cheap guard; `tests/scenarios.rs` pins the bugs down independently of the draw.
#[test]
fn regression_seeds() {
    for seed in [0u64, 1, 3, 6] {
        if let Err(f) = run_seed(seed, Bugs::default(), false) {
            panic!("{f}");
        }
    }
}
