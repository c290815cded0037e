//! Switchboard's core: deterministic state machines with no I/O, no clock, no threads and no
//! ambient randomness.
//!
//! - [`Runtime`] is the host side of the Azure Functions `FunctionRpc` protocol: it admits
//!   workers, keeps placeholder pools warm, specializes workers for apps, routes invocations
//!   and settles each with exactly one outcome.
//! - [`app`] turns an app folder's text (host.json, function.json, local.settings.json) into
//!   typed specs.
//!
//! Time comes in as an argument, randomness from [`Config::seed`]; the shells (tokio, smol) own
//! sockets, timers and processes and feed this core through `handle_input` / `handle_timeout`,
//! draining `poll_output` and re-arming one timer from `poll_timeout`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
mod config;
mod error;
mod event;
mod ids;
mod io;
mod redact;
mod rng;
mod runtime;
mod timer;
pub mod worker;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use config::{Backoff, Config, Limits, PoolSpec, Timeouts};
pub use error::{AppError, ExpectError, PoolError, WorkerError};
pub use event::{
    Admission, DropReason, Event, EvictReason, OutcomeKind, Phase, SpecializationTimings, WorkerState,
};
pub use ids::{CallId, ConnId, PoolKey, WorkerId};
pub use io::{
    CloseReason, Completed, ConnMeta, FunctionError, Input, Invoke, NotFound, Outcome, Output, Payload,
    ProvisionRequest, Target, Unavailable, WorkerLog,
};
pub use runtime::{AppInfo, Counters, PoolInfo, Runtime, WorkerInfo};
pub use switchboard_proto as proto;
