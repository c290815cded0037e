//! Deterministic simulation of Switchboard's core: the runtime state machine and its workers
//! over a faulty network on a virtual clock, with invariants checked after every step and
//! recovery required after the faults heal (in the spirit of TigerBeetle's VOPR and
//! FoundationDB's simulator).
//!
//! One seed decides everything: the pools and apps, the workload, which faults are on and how
//! often, every latency, every handler's duration, and the runtime's own seed. The same seed
//! replays the same run, step for step.
//!
//! # The world
//!
//! - One [`switchboard_core::Runtime`], driven exactly as a shell drives it.
//! - Worker processes of two kinds: *legacy* workers scripted after the real Azure Functions
//!   Python worker (no heartbeats, no reconnect, exits when its stream ends, answers concurrent
//!   invocations in completion order, sometimes advertises `WorkerStatus` as newer ones do),
//!   and *connection-mode* workers, which are the real [`switchboard_core::worker::Worker`]
//!   state machine with a simulated handler (some advertise their own capacity).
//! - A provisioner that boots a process for each `Provision` (or fails to, or takes long
//!   enough for the worker id to expire), stops released ones (SIGTERM, then SIGKILL after a
//!   grace) and reports exits; an orchestrator that restarts the external pool's workers.
//! - Callers that invoke HTTP and queue-triggered functions (with retry policies) with random
//!   durations, failures and timeouts, and cancel some; an operator who deploys new versions,
//!   removes and restores apps, rescales apps and pools, and drains workers, all under load.
//!
//! # Faults, and what each stands for
//!
//! A gRPC stream runs over TCP: within a stream nothing is duplicated or reordered. Faults are
//! therefore per connection or per process, as they really happen:
//!
//! | fault | stands for |
//! |---|---|
//! | latency + jitter per stream (FIFO kept) | distance, congestion, a busy event loop |
//! | connection reset: both ends see the stream end, bytes in flight are lost | a middlebox dropping the flow, a proxy restart, an RST |
//! | partition of one worker: bytes held both ways, dials hang; at the end the bytes are delivered, or lost with a reset | a node losing its route, a network policy change, a flapping link |
//! | outage: every worker partitioned at once | the runtime's own network failing |
//! | blackholed stream: one stream's path dies both ways while new streams work | a stale NAT or load-balancer entry; a worker's resume then supersedes a stream the runtime still holds |
//! | keepalive expiry: the shell ends a stream whose peer has been unreachable this long | HTTP/2 keepalive PINGs going unanswered |
//! | freeze: the process reads nothing, its timers and handler stop; it reads what arrived on thaw | SIGSTOP, a long GC pause, a VM migration |
//! | crash: the process dies, its stream is reset, the provisioner reports the exit | SIGKILL, the OOM killer, a node failure |
//! | slow: handler and replies take N times longer | a noisy neighbour, CPU throttling |
//! | duplicate answer: a worker writes an invocation's answer twice | a worker (or its shell) that retries a write; connection-mode workers also re-send answers after a resume |
//! | reorder | concurrent invocations answered in completion order, as the Python worker does |
//! | failed provision, slow image pull, failing init or function load | an image pull error, a node without capacity, a broken interpreter, a flaky import |
//!
//! Each fault is on or off per seed, with its own rate; one seed in ten is a storm with every
//! fault on, often.
//!
//! # Invariants
//!
//! Checked after every step by the [`observer`](Observer), which sees every input and output of
//! the runtime, and by the simulated workers, which check what reaches them:
//! - at most one answer per call, only for calls made; a completed answer is the answer to that
//!   call from a worker of its app; a raising function never completes; no call stays open
//!   past its deadline;
//! - no invocation is sent to a worker that is not ready for the call's app with the function
//!   loaded (a worker that resumes may get its own in-flight calls again), nor to an evicted,
//!   released or draining worker, nor for a call already answered;
//! - an app's settings reach only a worker being specialized for that app, once; no worker ever
//!   sees two apps' settings or another app's invocations; no worker runs an invocation twice
//!   within one slot;
//! - a legacy worker never sees a Switchboard extension (resume token, heartbeat echo, cancel,
//!   terminate, metadata request);
//! - pool counts stay within bounds and agree with the outputs (members = admitted and not
//!   removed; provisions in flight = ids issued and not used or failed).
//!
//! # Liveness
//!
//! After the faulty phase everything heals (partitions deliver, frozen processes resume, no
//! new faults or work). Within [`Plan::recovery_bound`] every call must be answered, every
//! provisioned pool must hold its `min_idle` placeholders with no provision in flight, every
//! live process must be a settled worker on an open stream, and every worker the runtime holds
//! must have a live process. Then each app gets a probe call, which must complete (a broken
//! app's must not). Some seeds shut the runtime down gracefully (during the faults, or after
//! the probes): it must then report its shutdown complete within the same bound, with every
//! call answered and no worker left, and provision or route no new work meanwhile.
//!
//! # Seeds in, seeds out
//!
//! See `tests/sim.rs`: `SIM_SEED` replays one seed, `SIM_RUNS` runs many, `SIM_CHECK_DETERMINISM`
//! runs each twice and compares the hash of the runtime's input/output log. Each seed's plan
//! is printed first; a failure prints the command that reproduces it.

pub mod driver;
pub mod fuzz;
mod net;
mod observer;
pub mod payload;
pub mod plan;
mod procs;
pub mod rng;
mod run;
mod world;

pub use driver::FaultKind;
pub use observer::{CallRec, Observer};
pub use plan::{AppPlan, Bugs, Faults, Plan, PoolPlan, Workload};
pub use run::{Batch, Failure, Report, run, run_seed, run_seeds};
pub use world::{Stats, World};
