//! What one run looks like, drawn from its seed before it starts: the pools, the apps, the
//! workload, and which faults are on and how often. Printed first, so a seed's line says what
//! it exercised.

use std::fmt;
use std::time::Duration;

use switchboard_core::app::ScaleSpec;
use switchboard_core::{Backoff, Config, PoolKey, PoolSpec, Timeouts};

use crate::rng::SimRng;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// How often each fault strikes during the faulty phase (`None`: never), and how hard.
/// Each stands for something that really happens to a gRPC stream or a worker process; see
/// the crate docs for the mapping.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Per-connection one-way latency is drawn from this range when the stream opens.
    pub latency: (Duration, Duration),
    /// Extra per-message delay, uniform in `0..=jitter` (a stream stays FIFO).
    pub jitter: Duration,
    /// Mean time between connection resets (both ends see the stream end; bytes in flight
    /// are lost).
    pub reset_every: Option<Duration>,
    /// Mean time between partitions of one worker from the runtime.
    pub partition_every: Option<Duration>,
    /// Longest partition.
    pub partition_max: Duration,
    /// Chance that a partition ends with its streams reset (held bytes lost) rather than
    /// with the held bytes delivered.
    pub partition_reset: f64,
    /// Mean time between stream blackholes (one stream's path dies, new ones work).
    pub blackhole_every: Option<Duration>,
    /// Mean time between freezes (SIGSTOP) of one worker process.
    pub freeze_every: Option<Duration>,
    /// Longest freeze.
    pub freeze_max: Duration,
    /// Mean time between crashes (SIGKILL, OOM) of one worker process.
    pub crash_every: Option<Duration>,
    /// Mean time between outages of the runtime's network: every worker is partitioned from
    /// it at once.
    pub outage_every: Option<Duration>,
    /// Mean time between slow spells of one worker (its handler and replies take longer).
    pub slow_every: Option<Duration>,
    /// How much slower.
    pub slow_factor: u32,
    /// Chance that a worker sends an invocation's answer a second time.
    pub duplicate_answer: f64,
    /// Chance that the provisioner fails to start a worker.
    pub provision_failure: f64,
    /// Chance that a function fails to load (a flaky import).
    pub load_failure: f64,
    /// How long the shell's HTTP/2 keepalive takes to declare an unreachable peer dead.
    pub keepalive: Duration,
}

impl Faults {
    /// None at all, and a quick, steady network.
    pub fn none() -> Faults {
        Faults { latency: (ms(1), ms(1)), keepalive: secs(4), slow_factor: 1, ..Faults::default() }
    }

    fn draw(rng: &mut SimRng) -> Faults {
        // One run in ten is a storm: every fault on, often.
        if rng.chance(0.1) {
            let mut f = Faults::draw_calm(rng);
            let often = |rng: &mut SimRng| Some(ms(rng.range(300, 2_500)));
            f.reset_every = often(rng);
            f.partition_every = often(rng);
            f.blackhole_every = often(rng);
            f.freeze_every = often(rng);
            f.crash_every = often(rng);
            f.slow_every = often(rng);
            f.outage_every = Some(ms(rng.range(5_000, 15_000)));
            f.duplicate_answer = rng.range(1, 20) as f64 / 100.0;
            f.provision_failure = rng.range(5, 40) as f64 / 100.0;
            f.load_failure = rng.range(1, 5) as f64 / 100.0;
            return f;
        }
        Faults::draw_calm(rng)
    }

    fn draw_calm(rng: &mut SimRng) -> Faults {
        let every = |rng: &mut SimRng, p: f64, lo: u64, hi: u64| {
            rng.chance(p).then(|| Duration::from_millis(rng.range(lo, hi)))
        };
        let lat_lo = Duration::from_micros(rng.range(100, 3_000));
        let lat_hi = lat_lo + Duration::from_micros(rng.range(0, 20_000));
        Faults {
            latency: (lat_lo, lat_hi),
            jitter: Duration::from_micros(rng.range(0, 5_000)),
            reset_every: every(rng, 0.5, 800, 8_000),
            partition_every: every(rng, 0.4, 2_000, 12_000),
            partition_max: ms(rng.range(300, 8_000)),
            partition_reset: rng.unit(),
            blackhole_every: every(rng, 0.3, 2_000, 12_000),
            freeze_every: every(rng, 0.4, 2_000, 12_000),
            freeze_max: ms(rng.range(200, 6_000)),
            crash_every: every(rng, 0.4, 2_000, 12_000),
            outage_every: every(rng, 0.15, 8_000, 30_000),
            slow_every: every(rng, 0.3, 3_000, 12_000),
            slow_factor: rng.range(3, 30) as u32,
            duplicate_answer: if rng.chance(0.3) { rng.range(1, 20) as f64 / 100.0 } else { 0.0 },
            provision_failure: if rng.chance(0.3) { rng.range(5, 50) as f64 / 100.0 } else { 0.0 },
            load_failure: if rng.chance(0.2) { rng.range(1, 10) as f64 / 100.0 } else { 0.0 },
            keepalive: ms(rng.range(1_500, 6_000)),
        }
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let every = |d: Option<Duration>| d.map_or("off".to_owned(), |d| format!("~{:.1}s", d.as_secs_f64()));
        write!(
            f,
            "latency={:.1}-{:.1}ms+{:.1}ms reset={} partition={}(<={:.1}s, {:.0}% end in reset) \
             blackhole={} freeze={}(<={:.1}s) crash={} outage={} slow={}(x{}) dup-answer={:.0}% provision-fail={:.0}% \
             load-fail={:.0}% keepalive={:.1}s",
            self.latency.0.as_secs_f64() * 1e3,
            self.latency.1.as_secs_f64() * 1e3,
            self.jitter.as_secs_f64() * 1e3,
            every(self.reset_every),
            every(self.partition_every),
            self.partition_max.as_secs_f64(),
            self.partition_reset * 100.0,
            every(self.blackhole_every),
            every(self.freeze_every),
            self.freeze_max.as_secs_f64(),
            every(self.crash_every),
            every(self.outage_every),
            every(self.slow_every),
            self.slow_factor,
            self.duplicate_answer * 100.0,
            self.provision_failure * 100.0,
            self.load_failure * 100.0,
            self.keepalive.as_secs_f64(),
        )
    }
}

/// A placeholder pool and who fills it.
#[derive(Debug, Clone)]
pub struct PoolPlan {
    /// The runtime's pool.
    pub spec: PoolSpec,
    /// For a provisioned pool, the chance that a provisioned worker is a legacy (Python-like)
    /// worker rather than a connection-mode one.
    pub legacy_share: f64,
    /// For an external pool, how many connection-mode worker processes an orchestrator runs
    /// (and restarts when they exit).
    pub external: u32,
}

/// An app and how it is deployed.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// Its name (`/apps/<name>` is its folder; `SECRET_<name>` its secret setting).
    pub name: String,
    /// Index of its pool in [`Plan::pools`].
    pub pool: usize,
    /// Scale at first deploy.
    pub scale: ScaleSpec,
    /// host.json `functionTimeout`.
    pub function_timeout: Duration,
    /// Its environment cannot start (a broken requirements file): every specialization fails.
    pub broken: bool,
}

/// Rates of the workload during the faulty phase.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Mean time between invocations.
    pub call_every: Duration,
    /// Mean time between admin operations (deploy, remove, scale, drain).
    pub admin_every: Duration,
    /// Chance that a call is cancelled by its caller a little later.
    pub cancel: f64,
    /// Chance that a function raises.
    pub failure: f64,
}

/// Planted bugs in the harness's shell layer, off except in the test that proves the
/// simulation catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The shell forwards a response the core dropped as late to the caller (a second
    /// answer for one call).
    pub forward_late_response: bool,
    /// The shell delivers a runtime message for one stream on another stream of the same
    /// pool (a mixed-up connection table).
    pub crossed_streams: bool,
}

/// Whether and when the runtime begins a graceful shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// It does not.
    Never,
    /// At this time into the faulty phase: it must complete once the faults heal.
    During(Duration),
    /// After recovery and the probes.
    AtEnd,
}

/// Everything a run is made of.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The runtime core's configuration (its seed comes from the run seed).
    pub config: Config,
    /// Pools, in the order of `config.pools`.
    pub pools: Vec<PoolPlan>,
    /// Apps deployed at the start.
    pub apps: Vec<AppPlan>,
    /// Faults during the faulty phase.
    pub faults: Faults,
    /// Workload during the faulty phase; `None` when operations are scripted (fuzzing).
    pub workload: Option<Workload>,
    /// Length of the faulty phase; then everything heals.
    pub faulty_for: Duration,
    /// When the runtime shuts down (gracefully), if it does.
    pub shutdown: Shutdown,
    /// Planted bugs.
    pub bugs: Bugs,
}

/// The runtime's deadlines in the simulation: the defaults scaled down so that every timeout
/// path fires within a run.
pub fn sim_timeouts() -> Timeouts {
    Timeouts {
        start_stream: secs(3),
        init: secs(3),
        env_reload: secs(4),
        metadata: secs(4),
        function_load: secs(4),
        provision_ticket: secs(8),
        queue: secs(4),
        heartbeat: secs(2),
        status_probe_after: secs(1),
        status_probe_timeout: secs(2),
        resume_grace: secs(5),
        drain: secs(3),
        terminate_grace: secs(1),
        idle_release: secs(12),
        retry_after: secs(1),
        app_failure_threshold: 3,
        app_failure_backoff: secs(1),
    }
}

/// App names, in deploy order.
pub const APP_NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// The join token of pool `i`.
pub fn join_token(i: usize) -> String {
    format!("join-{i}")
}

impl Plan {
    /// Draws a run from `seed`.
    pub fn draw(seed: u64) -> Plan {
        let mut rng = SimRng::new(seed);
        let mut plan = Plan::base(&mut rng);
        plan.seed = seed;
        plan.faults = Faults::draw(&mut rng);
        plan.workload = Some(Workload {
            call_every: ms(rng.range(5, 150)),
            admin_every: ms(rng.range(1_000, 6_000)),
            cancel: rng.range(0, 10) as f64 / 100.0,
            failure: rng.range(0, 20) as f64 / 100.0,
        });
        plan.faulty_for = ms(rng.range(20_000, 90_000));
        plan.shutdown = match rng.below(100) {
            0..15 => Shutdown::During(plan.faulty_for.mul_f64(0.2 + 0.7 * rng.unit())),
            15..50 => Shutdown::AtEnd,
            _ => Shutdown::Never,
        };
        plan
    }

    /// A run with pools and apps drawn from `seed` but no random faults or workload: the
    /// fuzz targets script those.
    pub fn scripted(seed: u64) -> Plan {
        let mut rng = SimRng::new(seed);
        let mut plan = Plan::base(&mut rng);
        plan.seed = seed;
        plan
    }

    fn base(rng: &mut SimRng) -> Plan {
        let mut pools = Vec::new();
        // A provisioned python pool, always.
        let max = rng.range(4, 9) as u32;
        let mut py = PoolSpec::new(PoolKey::new("python", ""), rng.range(0, 3) as u32, max);
        py.join_token = Some(join_token(0));
        py.environment.insert("PATH".into(), "/usr/bin".into());
        let legacy_share = [0.0, 0.5, 0.8, 1.0][rng.index(4)];
        pools.push(PoolPlan { spec: py, legacy_share, external: 0 });
        // Sometimes an external pool of connection-mode workers that dial in on their own.
        if rng.chance(0.6) {
            let max = rng.range(2, 4) as u32;
            let mut custom = PoolSpec::new(PoolKey::new("custom", ""), 0, max);
            custom.provisioned = false;
            custom.join_token = Some(join_token(1));
            let external = rng.range(1, u64::from(max)) as u32;
            pools.push(PoolPlan { spec: custom, legacy_share: 0.0, external });
        }
        let n_apps = rng.range(2, 4) as usize;
        let mut apps = Vec::new();
        for (i, name) in APP_NAMES.iter().take(n_apps).enumerate() {
            let pool = if i == 2 && pools.len() > 1 { 1 } else { 0 };
            let max_workers = rng.range(1, 3) as u32;
            let scale = ScaleSpec {
                min_workers: rng.range(0, u64::from(max_workers)) as u32,
                max_workers,
                concurrency: rng.range(1, 4) as u32,
                queue_limit: rng.range(1, 20) as u32,
            };
            apps.push(AppPlan {
                name: (*name).to_owned(),
                pool,
                scale,
                function_timeout: ms(rng.range(1_000, 8_000)),
                broken: i > 0 && rng.chance(0.12),
            });
        }
        // Room in every pool for every app at its largest plus the warm placeholders, so that
        // recovery never waits on a pool that is full by design.
        for (p, pool) in pools.iter_mut().enumerate() {
            let wanted: u32 = apps.iter().filter(|a| a.pool == p).map(|a| a.scale.max_workers).sum();
            if pool.spec.provisioned {
                pool.spec.max = pool.spec.max.max(wanted + pool.spec.min_idle);
            }
        }
        let mut plan = Plan::new(0, pools, apps);
        plan.config.seed = rng.seed32();
        plan
    }

    /// A plan with these pools and apps, no faults and no workload (scenario tests script
    /// what happens).
    pub fn new(seed: u64, pools: Vec<PoolPlan>, apps: Vec<AppPlan>) -> Plan {
        let config = Config {
            seed: [7; 32],
            host_version: "switchboard-sim".into(),
            timeouts: sim_timeouts(),
            provision_backoff: Backoff { initial: ms(100), max: secs(3) },
            pools: pools.iter().map(|p| p.spec.clone()).collect(),
            ..Config::default()
        };
        Plan {
            seed,
            config,
            pools,
            apps,
            faults: Faults::none(),
            workload: None,
            faulty_for: Duration::ZERO,
            shutdown: Shutdown::Never,
            bugs: Bugs::default(),
        }
    }

    /// The bound on recovery after the heal: by then every call must have been answered,
    /// every pool refilled and every worker process registered.
    ///
    /// The slowest honest path: a call accepted just before the heal runs to its deadline
    /// (the largest function timeout); a worker draining since then may hold the drain
    /// deadline; the shell's keepalive then notices a dead stream, a disconnected slot waits
    /// out the resume grace, an unused worker id expires with its ticket, the pool backs off
    /// at most `provision_backoff.max`, a connection-mode worker's redial backs off at most
    /// 5 s, a failing app backs off at most 12 × `app_failure_backoff`, and a replacement
    /// boots and specializes (under 2 s here).
    pub fn recovery_bound(&self) -> Duration {
        let t = &self.config.timeouts;
        let longest_call = self.apps.iter().map(|a| a.function_timeout).max().unwrap_or_default();
        longest_call
            + t.drain
            + self.faults.keepalive
            + t.resume_grace
            + t.provision_ticket
            + self.config.provision_backoff.max
            + secs(5)
            + t.app_failure_backoff * 12
            + secs(2)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faulty for {:.1}s; faults: {}", self.faulty_for.as_secs_f64(), self.faults)?;
        match self.shutdown {
            Shutdown::Never => {}
            Shutdown::During(at) => write!(f, "; shutdown at {:.1}s", at.as_secs_f64())?,
            Shutdown::AtEnd => f.write_str("; shutdown after the probes")?,
        }
        if let Some(w) = &self.workload {
            write!(
                f,
                "; workload: call ~{}ms admin ~{:.1}s cancel {:.0}% raise {:.0}%",
                w.call_every.as_millis(),
                w.admin_every.as_secs_f64(),
                w.cancel * 100.0,
                w.failure * 100.0
            )?;
        }
        f.write_str("; pools:")?;
        for p in &self.pools {
            let s = &p.spec;
            if s.provisioned {
                write!(
                    f,
                    " {}(min_idle {}, max {}, {:.0}% legacy)",
                    s.key,
                    s.min_idle,
                    s.max,
                    p.legacy_share * 100.0
                )?;
            } else {
                write!(f, " {}(external x{}, max {})", s.key, p.external, s.max)?;
            }
        }
        f.write_str("; apps:")?;
        for a in &self.apps {
            let s = a.scale;
            write!(
                f,
                " {}@{}(workers {}..{}, conc {}, queue {}, timeout {:.1}s{})",
                a.name,
                self.pools[a.pool].spec.key,
                s.min_workers,
                s.max_workers,
                s.concurrency,
                s.queue_limit,
                a.function_timeout.as_secs_f64(),
                if a.broken { ", broken" } else { "" }
            )?;
        }
        if self.bugs != Bugs::default() {
            write!(f, "; planted bugs: {:?}", self.bugs)?;
        }
        Ok(())
    }
}
