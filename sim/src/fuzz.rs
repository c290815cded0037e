//! The fuzz targets' bodies, here so that `fuzz/` stays a thin cargo-fuzz shim and a normal
//! test can replay saved inputs (`fuzz/regressions/<target>/*`). Each panics on a broken
//! promise, which is what a fuzzer reports.
//!
//! - [`decode`]: arbitrary bytes as frames from workers (and from strangers) into a runtime
//!   that has apps and workers. Nothing may panic; a frame that does not decode must end its
//!   stream; whatever decodes is handled (ignored, refused, or an eviction); afterwards the
//!   system must recover as in any simulation run.
//! - [`event_seq`]: an [`arbitrary`] sequence of workload and fault operations through the
//!   simulation harness, with every invariant checked after every step, then heal, recovery
//!   and probes.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use switchboard_core::app::ScaleSpec;
use switchboard_core::proto::{Message, StreamingMessage};
use switchboard_core::{ConnId, ConnMeta, Input};

use crate::plan::Plan;
use crate::world::World;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Plays a world to its end after scripted operations: heal, recover, probe. Panics with the
/// report on a broken promise.
fn finish(world: &mut World, what: &str) {
    let result = (|| {
        if let Some(v) = world.violation() {
            return Err(v.to_owned());
        }
        world.heal();
        if world.rt.is_shutting_down() {
            world.settle_shutdown()?;
        } else {
            world.recover()?;
            world.probe()?;
        }
        match world.violation() {
            Some(v) => Err(v.to_owned()),
            None => Ok(()),
        }
    })();
    if let Err(e) = result {
        panic!(
            "{what}: {e}\nplan: {}\nstate:\n{}\nlast events:\n{}",
            world.plan,
            world.describe(),
            world.trace_tail().join("\n")
        );
    }
}

/// A small world for the decode target: two apps, legacy and connection-mode workers, warmed
/// up until workers are specialized, with long calls in flight (so forged answers can name
/// real invocations: the world is the same for every input).
fn decode_world(capture: bool) -> World {
    let mut plan = Plan::scripted(3);
    plan.pools[0].legacy_share = 0.5;
    let mut world = World::new(plan, Some(40));
    world.obs.relaxed = true;
    if capture {
        world.sent = Some(Vec::new());
    }
    world.run_for(Duration::from_secs(2));
    for app in 0..world.plan.apps.len().min(2) {
        let name = world.plan.apps[app].name.clone();
        world.invoke(&name, "f", ms(5), false, None);
        world.invoke(&name, "g", ms(8_000), false, None);
        world.invoke(&name, "q", ms(8_000), false, None);
    }
    world.run_for(Duration::from_secs(1));
    world
}

/// Seed inputs for the `decode` corpus: well-formed frames a worker could send at the moment
/// the frames start, naming the real invocations and functions in flight, plus a few protocol
/// violations. The fuzzer mutates from these.
pub fn decode_seeds() -> Vec<Vec<u8>> {
    use switchboard_core::proto::Content;
    use switchboard_core::proto::rpc::{
        FunctionEnvironmentReloadResponse, FunctionLoadResponse, InvocationRequest, RpcLog, StartStream,
        WorkerActionResponse, WorkerHeartbeat, WorkerInitResponse, WorkerStatusResponse,
    };
    use switchboard_core::testkit::{error_response, http_response, ok};
    let world = decode_world(true);
    let streams = world.open_streams();
    let sent = world.sent.clone().unwrap_or_default();
    let frame = |target: usize, msg: &StreamingMessage| {
        let bytes = msg.encode_to_vec();
        let mut out = vec![target as u8, bytes.len().min(255) as u8];
        out.extend_from_slice(&bytes[..bytes.len().min(255)]);
        out
    };
    let plain = |content: Content| StreamingMessage { request_id: String::new(), content: Some(content) };
    let mut seeds = Vec::new();
    for (conn, msg) in &sent {
        let Some(target) = streams.iter().position(|c| c == conn) else { continue };
        match &msg.content {
            Some(Content::InvocationRequest(InvocationRequest { invocation_id, .. })) => {
                seeds.push(frame(target, &http_response(invocation_id, 200, "forged")));
                seeds.push(frame(target, &error_response(invocation_id, "forged")));
                let log = RpcLog {
                    invocation_id: invocation_id.clone(),
                    message: "x".into(),
                    ..Default::default()
                };
                seeds.push(frame(target, &plain(Content::RpcLog(log))));
            }
            Some(Content::FunctionLoadRequest(r)) => {
                let resp = FunctionLoadResponse {
                    function_id: r.function_id.clone(),
                    result: ok(),
                    ..Default::default()
                };
                seeds.push(frame(target, &plain(Content::FunctionLoadResponse(resp))));
            }
            _ => {}
        }
    }
    for target in 0..streams.len().min(3) {
        for content in [
            Content::WorkerHeartbeat(WorkerHeartbeat {}),
            Content::WorkerStatusResponse(WorkerStatusResponse {}),
            Content::WorkerInitResponse(WorkerInitResponse { result: ok(), ..Default::default() }),
            Content::FunctionEnvironmentReloadResponse(FunctionEnvironmentReloadResponse {
                result: ok(),
                ..Default::default()
            }),
            Content::WorkerActionResponse(WorkerActionResponse { action: 0, reason: "restart".into() }),
            Content::StartStream(StartStream { worker_id: "ext-1-0".into() }),
        ] {
            seeds.push(frame(target, &plain(content)));
        }
        seeds.push(frame(target, &StreamingMessage::default()));
    }
    let ids: Vec<String> = world.rt.workers(world.now).into_iter().map(|w| w.id).collect();
    for id in ids {
        seeds.push(frame(15, &plain(Content::StartStream(StartStream { worker_id: id }))));
    }
    seeds
}

/// Fuzz target `decode`. Input: frames of `[target][len][len bytes]`; `target` picks a live
/// worker's stream (or, past their number, a fresh stream) and, in its high bits, how long to
/// let the world run after the frame.
pub fn decode(data: &[u8]) {
    let mut world = decode_world(false);
    let mut rest = data;
    let mut frames = 0;
    while rest.len() >= 2 && frames < 64 {
        frames += 1;
        let (target, len) = (rest[0], usize::from(rest[1]));
        let bytes = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let streams: Vec<ConnId> = world.open_streams();
        let conn = match streams.get(usize::from(target & 0x0f)) {
            Some(c) => *c,
            None => world.stranger(),
        };
        match StreamingMessage::decode(bytes) {
            Ok(msg) => world.inject(Input::Message { conn, msg: Box::new(msg) }),
            Err(e) => {
                world.inject(Input::Malformed { conn, error: e.to_string() });
                assert!(
                    !world.stream_open_at_runtime(conn),
                    "a malformed frame on {conn} did not end the stream"
                );
            }
        }
        world.run_for(ms(u64::from(target >> 4) * 50));
    }
    finish(&mut world, "decode");
}

/// One operation of the `event_seq` target.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// A call: app index (past the apps: an unknown app), function, run time, raise, timeout.
    Call { app: u8, function: u8, run_ms: u16, fail: bool, timeout_ms: Option<u16> },
    /// The caller of the `n`th open call goes away.
    Cancel(u8),
    /// A new version of an app with this scale and function timeout.
    Deploy { app: u8, min: u8, concurrency: u8, queue: u8, timeout_ms: u16 },
    /// Remove an app.
    Remove(u8),
    /// Rescale an app.
    Scale { app: u8, min: u8, concurrency: u8 },
    /// Drain the `n`th worker.
    Drain(u8),
    /// Reset the `n`th open stream.
    Reset(u8),
    /// Partition the `n`th live process.
    Partition { node: u8, ms: u16, reset: bool },
    /// Freeze the `n`th live process.
    Freeze { node: u8, ms: u16 },
    /// Kill the `n`th live process.
    Crash(u8),
    /// Slow down the `n`th live process.
    Slow { node: u8, factor: u8, ms: u16 },
    /// Workers send answers twice with this chance (percent).
    Duplicates(u8),
    /// The provisioner fails with this chance (percent).
    ProvisionFailures(u8),
    /// Let time pass.
    Advance(u16),
    /// The runtime begins a graceful shutdown (later operations still happen: calls are
    /// refused, faults strike).
    Shutdown,
}

/// The input of the `event_seq` target.
#[derive(Debug, Clone)]
pub struct Script {
    /// Draws the pools and apps (not the faults: the operations are the faults).
    pub seed: u16,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// Most operations and virtual time one input may use (keeps each run fast).
const MAX_OPS: usize = 96;
const MAX_TIME: Duration = Duration::from_secs(120);

impl Script {
    /// Reads a script from fuzzer bytes: a seed, then operations until the bytes run out.
    pub fn from_bytes(data: &[u8]) -> Script {
        let mut u = Unstructured::new(data);
        let seed = u16::arbitrary(&mut u).unwrap_or(0);
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Script { seed, ops }
    }
}

/// Fuzz target `event_seq`: the bytes as a [`Script`].
pub fn event_seq(data: &[u8]) {
    let _ = run_script(&Script::from_bytes(data));
}

/// Runs a script through the harness; panics on a broken promise. Returns the virtual time
/// simulated and the steps taken.
pub fn run_script(script: &Script) -> (Duration, u64) {
    let plan = Plan::scripted(u64::from(script.seed));
    let mut world = World::new(plan, Some(40));
    let start = world.now;
    for op in script.ops.iter().take(MAX_OPS) {
        if world.violation().is_some() || world.now - start >= MAX_TIME {
            break;
        }
        world.apply(op);
    }
    finish(&mut world, "event_seq");
    (world.elapsed(), world.steps)
}

impl World {
    /// Applies one scripted operation.
    pub fn apply(&mut self, op: &Op) {
        let apps = self.plan.apps.len();
        match *op {
            Op::Call { app, function, run_ms, fail, timeout_ms } => {
                let name = self
                    .plan
                    .apps
                    .get(usize::from(app) % (apps + 1))
                    .map_or("nope".to_owned(), |a| a.name.clone());
                let function = ["f", "g", "q", "off"][usize::from(function % 4)];
                let run = ms(u64::from(run_ms % 15_000));
                let timeout = timeout_ms.map(|t| ms(u64::from(t % 10_000).max(1)));
                self.invoke(&name, function, run, fail, timeout);
            }
            Op::Cancel(n) => self.cancel_nth(usize::from(n)),
            Op::Deploy { app, min, concurrency, queue, timeout_ms } => {
                let i = usize::from(app) % apps;
                let max_workers = self.plan.apps[i].scale.max_workers;
                let scale = ScaleSpec {
                    min_workers: u32::from(min) % (max_workers + 1),
                    max_workers,
                    concurrency: u32::from(concurrency % 4) + 1,
                    queue_limit: u32::from(queue % 20) + 1,
                };
                self.deploy(i, scale, ms(500 + u64::from(timeout_ms % 8_000)));
            }
            Op::Remove(app) => self.remove(usize::from(app) % apps),
            Op::Scale { app, min, concurrency } => {
                let i = usize::from(app) % apps;
                let mut scale = self.plan.apps[i].scale;
                scale.min_workers = u32::from(min) % (scale.max_workers + 1);
                scale.concurrency = u32::from(concurrency % 4) + 1;
                self.scale(i, scale);
            }
            Op::Drain(n) => self.drain_nth(usize::from(n)),
            Op::Reset(n) => self.reset_nth(usize::from(n)),
            Op::Partition { node, ms: len, reset } => {
                self.partition_nth(usize::from(node), ms(u64::from(len % 10_000)), reset)
            }
            Op::Freeze { node, ms: len } => self.freeze_nth(usize::from(node), ms(u64::from(len % 8_000))),
            Op::Crash(n) => self.crash_nth(usize::from(n)),
            Op::Slow { node, factor, ms: len } => {
                self.slow_nth(usize::from(node), u32::from(factor % 30) + 1, ms(u64::from(len % 10_000)))
            }
            Op::Duplicates(p) => self.plan.faults.duplicate_answer = f64::from(p % 101) / 100.0,
            Op::ProvisionFailures(p) => self.plan.faults.provision_failure = f64::from(p % 101) / 100.0,
            Op::Advance(t) => self.run_for(ms(u64::from(t % 20_000))),
            Op::Shutdown => self.begin_shutdown(),
        }
    }

    /// Streams open at both ends, oldest first.
    pub fn open_streams(&self) -> Vec<ConnId> {
        self.conns.iter().filter(|(_, c)| c.rt_open && c.wk_open).map(|(k, _)| *k).collect()
    }

    /// Whether the runtime's shell still has the stream.
    pub fn stream_open_at_runtime(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.rt_open)
    }

    /// Opens a stream from a stranger (no worker process behind it) and returns it.
    pub fn stranger(&mut self) -> ConnId {
        self.open_stranger(ConnMeta::default())
    }

    /// Hands the runtime an input as if it came from the stream's peer.
    pub fn inject(&mut self, input: Input) {
        self.rt_input(input);
        self.obs.check_step(self.now, &self.rt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    #[test]
    fn random_bytes_make_long_scripts_that_run_clean() {
        let mut rng = SimRng::new(11);
        for _ in 0..5 {
            let data: Vec<u8> = (0..800).map(|_| rng.u64() as u8).collect();
            let script = Script::from_bytes(&data);
            assert!(script.ops.len() > 20, "{} ops", script.ops.len());
            let (time, steps) = run_script(&script);
            println!("{} ops: {steps} steps, {time:?}", script.ops.len());
        }
    }

    #[test]
    fn decode_seeds_are_well_formed_and_pass() {
        let seeds = decode_seeds();
        assert!(seeds.len() > 20, "{} seeds", seeds.len());
        for seed in &seeds {
            decode(seed);
        }
        if let Ok(dir) = std::env::var("WRITE_DECODE_SEEDS") {
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(format!("{dir}/seed-{i:03}"), seed).expect("writable corpus folder");
            }
        }
    }

    #[test]
    fn garbage_frames_end_streams_and_the_world_recovers() {
        let mut rng = SimRng::new(12);
        for _ in 0..5 {
            let data: Vec<u8> = (0..300).map(|_| rng.u64() as u8).collect();
            decode(&data);
        }
    }
}
