//! Running seeds: one run's phases (faulty, heal, recovery, probes), failure reports that say
//! how to reproduce, and a parallel runner for many seeds.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_core::OutcomeKind;

use crate::plan::{Bugs, Plan};
use crate::world::{Stats, World};

/// How a run went.
#[derive(Debug, Clone)]
pub struct Report {
    /// Its seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// From the heal until everything was answered, refilled and registered.
    pub recovered_after: Duration,
    /// What happened.
    pub stats: Stats,
    /// Answers by kind.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// The runtime's own totals.
    pub counters: switchboard_core::Counters,
    /// Hash of the runtime's inputs and outputs (when traced).
    pub hash: Option<u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "seed {} ok: {} steps, {:.1}s virtual, recovered {:.2}s after the heal; {} calls {:?}; \
             {} processes, {} resets, {} partitions, {} blackholes, {} freezes, {} crashes, {} slow, {} duplicate answers, \
             {} failed provisions, {} admin ops; runtime: {} evictions, {} resumes, {} retries, {} late and {} \
             unknown answers dropped",
            self.seed,
            self.steps,
            self.virtual_time.as_secs_f64(),
            self.recovered_after.as_secs_f64(),
            s.calls,
            self.outcomes,
            s.processes,
            s.resets,
            s.partitions,
            s.blackholes,
            s.freezes,
            s.crashes,
            s.slow,
            s.duplicates,
            s.provision_failures,
            s.admin,
            self.counters.evictions,
            self.counters.resumes,
            self.counters.retries,
            self.counters.late_responses,
            self.counters.unknown_responses,
        )?;
        if let Some(h) = self.hash {
            write!(f, "; log hash {h:016x}")?;
        }
        Ok(())
    }
}

/// A broken promise (or a panic), with what is needed to reproduce and understand it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The bugs planted in the run.
    pub bugs: Bugs,
    /// The plan, as printed first.
    pub plan: String,
    /// Virtual time of the failure.
    pub at: Duration,
    /// Step of the failure.
    pub step: u64,
    /// What broke.
    pub what: String,
    /// Where things stood.
    pub state: String,
    /// The last inputs and outputs of the runtime before it.
    pub tail: Vec<String>,
}

impl Failure {
    /// The command that replays this run.
    pub fn reproduce(&self) -> String {
        let mut bugs = String::new();
        if self.bugs.forward_late_response {
            bugs.push_str("SIM_BUG=forward-late-response ");
        }
        if self.bugs.crossed_streams {
            bugs.push_str("SIM_BUG=crossed-streams ");
        }
        format!("SIM_SEED={} {bugs}cargo test -p switchboard-sim --test sim -- seeds --nocapture", self.seed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SIMULATION FAILED: seed {} at +{:.6}s (step {}): {}",
            self.seed,
            self.at.as_secs_f64(),
            self.step,
            self.what
        )?;
        writeln!(f, "plan: {}", self.plan)?;
        writeln!(f, "state:\n{}", self.state)?;
        if !self.tail.is_empty() {
            writeln!(f, "last {} runtime inputs (rt<) and outputs (rt>):", self.tail.len())?;
            for line in &self.tail {
                let cut: String = line.chars().take(400).collect();
                writeln!(f, "  {cut}")?;
            }
        }
        write!(f, "reproduce with: {}", self.reproduce())
    }
}

impl World {
    /// Plays the whole run: the faulty phase, the heal, recovery within the bound, then one
    /// probe call per app. `Err` carries the first broken promise.
    pub fn play(&mut self) -> Result<Report, String> {
        self.arm_driver();
        let far = self.t0 + Duration::from_secs(24 * 3600);
        while !self.healed {
            self.check()?;
            if !self.step(far) {
                return Err("nothing left to happen before the heal".into());
            }
        }
        let recovered_after = if self.rt.is_shutting_down() {
            let start = self.now;
            self.settle_shutdown()?;
            self.now - start
        } else {
            let recovered_after = self.recover()?;
            self.probe()?;
            if self.plan.shutdown == crate::plan::Shutdown::AtEnd {
                self.begin_shutdown();
                self.settle_shutdown()?;
            }
            recovered_after
        };
        self.check()?;
        Ok(Report {
            seed: self.plan.seed,
            steps: self.steps,
            virtual_time: self.elapsed(),
            recovered_after,
            stats: self.stats.clone(),
            outcomes: self.obs.outcomes.clone(),
            counters: self.rt.counters().clone(),
            hash: self.trace_hash(),
        })
    }

    fn check(&self) -> Result<(), String> {
        match self.violation() {
            Some(v) => Err(v.to_owned()),
            None => Ok(()),
        }
    }

    /// Steps until [`World::recovered`] holds; fails past [`Plan::recovery_bound`].
    pub fn recover(&mut self) -> Result<Duration, String> {
        let start = self.now;
        let bound = self.plan.recovery_bound();
        let deadline = start + bound;
        loop {
            self.check()?;
            match self.recovered() {
                Ok(()) => return Ok(self.now - start),
                Err(why) if self.now >= deadline => {
                    return Err(format!(
                        "not recovered {:.1}s after the heal (the bound): {why}",
                        bound.as_secs_f64()
                    ));
                }
                Err(_) => {
                    self.step(deadline);
                }
            }
        }
    }

    /// After recovery, every app must serve: one call to `f` of each healthy app completes
    /// (retried while the app still finds its feet), and a broken app's call does not.
    pub fn probe(&mut self) -> Result<(), String> {
        let deadline = self.now + self.plan.recovery_bound();
        for (app, broken) in self.live_apps() {
            let mut last = None;
            loop {
                self.check()?;
                if self.now >= deadline {
                    let failing = if self.app_failing(&app) { " (the app is failing fast)" } else { "" };
                    return Err(format!(
                        "app {app} never served a probe after recovery{failing}; the last answer was {last:?}"
                    ));
                }
                if !broken && self.app_failing(&app) {
                    self.step(deadline);
                    continue;
                }
                let call = self.invoke(&app, "f", Duration::from_millis(5), false, None);
                while !self.obs.is_answered(call) && self.now < deadline && self.violation().is_none() {
                    self.step(deadline);
                }
                if let Some(kind) = self.obs.outcome_of(call) {
                    last = Some(kind);
                }
                if broken || last == Some(OutcomeKind::Success) {
                    break;
                }
                // Not yet: let time pass before the next probe (a refusal comes at once).
                let pause = (self.now + Duration::from_millis(100)).min(deadline);
                while self.now < pause && self.violation().is_none() {
                    self.step(pause);
                }
            }
        }
        Ok(())
    }
}

/// Runs a plan; with `trace`, keeps that many last lines and hashes everything.
pub fn run(plan: Plan, trace: Option<usize>) -> Result<Report, Box<Failure>> {
    let mut world = World::new(plan, trace);
    let result = catch_unwind(AssertUnwindSafe(|| world.play()));
    let what = match result {
        Ok(Ok(report)) => return Ok(report),
        Ok(Err(what)) => what,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned());
            format!("panic: {msg}")
        }
    };
    Err(Box::new(Failure {
        seed: world.plan.seed,
        bugs: world.plan.bugs,
        plan: world.plan.to_string(),
        at: world.elapsed(),
        step: world.steps,
        what,
        state: catch_unwind(AssertUnwindSafe(|| world.describe())).unwrap_or_default(),
        tail: world.trace_tail(),
    }))
}

/// Runs one seed: fast first; on failure again with a trace (for the report); with
/// `determinism`, twice with traces whose hashes must match.
pub fn run_seed(seed: u64, bugs: Bugs, determinism: bool) -> Result<Report, Box<Failure>> {
    let mut plan = Plan::draw(seed);
    plan.bugs = bugs;
    let trace = determinism.then_some(0);
    match run(plan.clone(), trace) {
        Ok(first) if determinism => {
            let second = run(plan.clone(), trace).map_err(|mut f| {
                f.what = format!("nondeterministic: the first run passed, the second failed: {}", f.what);
                f
            })?;
            if first.hash != second.hash || first.steps != second.steps {
                return Err(Box::new(Failure {
                    seed,
                    bugs,
                    plan: plan.to_string(),
                    at: first.virtual_time,
                    step: first.steps,
                    what: format!(
                        "nondeterministic: log hashes {:016x?} vs {:016x?}, steps {} vs {}",
                        first.hash, second.hash, first.steps, second.steps
                    ),
                    state: String::new(),
                    tail: Vec::new(),
                }));
            }
            Ok(first)
        }
        Ok(report) => Ok(report),
        Err(first) => {
            let traced = run(plan, Some(60));
            Err(match traced {
                Err(mut again) => {
                    if again.what != first.what || again.step != first.step {
                        again.what = format!(
                            "{} (NONDETERMINISTIC: the first run failed at step {} with: {})",
                            again.what, first.step, first.what
                        );
                    }
                    again
                }
                Ok(_) => Box::new(Failure {
                    what: format!("{} (NONDETERMINISTIC: passed when re-run with a trace)", first.what),
                    ..*first
                }),
            })
        }
    }
}

/// The results of many seeds.
#[derive(Debug, Default)]
pub struct Batch {
    /// Passed runs, by seed.
    pub reports: Vec<Report>,
    /// Failed runs, by seed.
    pub failures: Vec<Box<Failure>>,
}

/// Runs `seeds` on `threads` threads, printing each seed's plan first and its result after.
pub fn run_seeds(seeds: &[u64], threads: usize, bugs: Bugs, determinism: bool, print: bool) -> Batch {
    let next = AtomicUsize::new(0);
    let batch = Mutex::new(Batch::default());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    if print {
                        let mut plan = Plan::draw(seed);
                        plan.bugs = bugs;
                        println!("sim seed {seed}: {plan}");
                    }
                    let result = run_seed(seed, bugs, determinism);
                    let mut b = batch.lock().expect("no thread panics while holding the lock");
                    match result {
                        Ok(report) => {
                            if print {
                                println!("{report}");
                            }
                            b.reports.push(report);
                        }
                        Err(failure) => {
                            if print {
                                println!("{failure}");
                            }
                            b.failures.push(failure);
                        }
                    }
                }
            });
        }
    });
    let mut batch = batch.into_inner().expect("no thread panicked");
    batch.reports.sort_by_key(|r| r.seed);
    batch.failures.sort_by_key(|f| f.seed);
    batch
}
