//! Events: every state change and incident, with its reason, for logs and metrics.

use std::fmt;
use std::time::Duration;

use crate::ids::{ConnId, PoolKey, WorkerId};

/// Something the platform team may want to see or count.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A stream presented a valid identity and became a worker.
    WorkerAdmitted {
        /// The worker.
        worker: WorkerId,
        /// Its pool.
        pool: PoolKey,
        /// The peer address.
        peer: String,
        /// How it was admitted.
        via: Admission,
    },
    /// A stream was refused before it became a worker.
    WorkerRejected {
        /// The stream.
        conn: ConnId,
        /// The peer address.
        peer: String,
        /// The id it claimed, if it sent `StartStream`.
        worker: Option<WorkerId>,
        /// Why.
        reason: String,
    },
    /// An address failed admission too often: until the cooldown ends, its streams are refused
    /// at once (`CloseReason::RateLimited`) unless they present a credential the runtime
    /// issued, and its further failures are counted but not reported one by one.
    AdmissionLimited {
        /// The address: an IPv4 address, or an IPv6 /64.
        address: String,
        /// Failed admissions counted.
        failures: u32,
        /// The window they were counted in.
        within: Duration,
        /// How long the address is limited.
        cooldown: Duration,
    },
    /// A worker moved from one state to another.
    WorkerState {
        /// The worker.
        worker: WorkerId,
        /// Its app, once specialized.
        app: Option<String>,
        /// Old state.
        from: WorkerState,
        /// New state.
        to: WorkerState,
        /// Why.
        reason: String,
    },
    /// A worker was removed against its will; its in-flight calls were settled or retried.
    WorkerEvicted {
        /// The worker.
        worker: WorkerId,
        /// Its pool.
        pool: PoolKey,
        /// Its app, if specialized.
        app: Option<String>,
        /// Why.
        reason: EvictReason,
        /// Invocations it was running.
        in_flight: usize,
    },
    /// A worker that finished draining (or was idle) was let go.
    WorkerReleased {
        /// The worker.
        worker: WorkerId,
        /// Its app, if specialized.
        app: Option<String>,
        /// Why.
        reason: String,
    },
    /// A worker reconnected within its grace and got its slot back.
    WorkerResumed {
        /// The worker.
        worker: WorkerId,
        /// How long it was away.
        after: Duration,
        /// Invocations re-sent to it.
        resent: usize,
    },
    /// One specialization phase finished.
    Phase {
        /// The worker.
        worker: WorkerId,
        /// The app.
        app: String,
        /// Which phase.
        phase: Phase,
        /// How long it took.
        took: Duration,
    },
    /// A placeholder became ready for an app.
    Specialized {
        /// The worker.
        worker: WorkerId,
        /// The app.
        app: String,
        /// Phase timings.
        timings: SpecializationTimings,
    },
    /// A specialization failed; the worker is released and another is tried.
    SpecializationFailed {
        /// The worker.
        worker: WorkerId,
        /// The app.
        app: String,
        /// The phase that failed.
        phase: Phase,
        /// What the worker said, or the timeout.
        error: String,
    },
    /// An app was created or got a new version.
    AppDeployed {
        /// The app.
        app: String,
        /// Its version number in this runtime (1 for a new app).
        version: u32,
    },
    /// An app's workers keep failing to specialize; its calls fail fast for a while.
    AppFailing {
        /// The app.
        app: String,
        /// The last error.
        error: String,
        /// Consecutive failures.
        failures: u32,
    },
    /// An app was removed; its workers drain.
    AppRemoved {
        /// The app.
        app: String,
    },
    /// A response was dropped rather than forwarded.
    ResponseDropped {
        /// The worker that sent it.
        worker: WorkerId,
        /// The invocation id it named.
        invocation: String,
        /// Why.
        why: DropReason,
    },
    /// A worker sent something the runtime does not handle (ignored, counted).
    MessageIgnored {
        /// The worker.
        worker: WorkerId,
        /// Which message.
        what: String,
    },
    /// A call got its outcome.
    Settled {
        /// The app.
        app: String,
        /// The function.
        function: String,
        /// Outcome class.
        outcome: OutcomeKind,
        /// From acceptance to outcome.
        took: Duration,
        /// Times it was sent to a worker.
        attempts: u32,
    },
    /// The runtime asked for a worker.
    ProvisionRequested {
        /// The worker id issued.
        worker: WorkerId,
        /// The pool.
        pool: PoolKey,
    },
    /// A provisioned worker never connected, or could not be started.
    ProvisionFailed {
        /// The worker id issued.
        worker: WorkerId,
        /// The pool.
        pool: PoolKey,
        /// Why.
        reason: String,
        /// Delay before the pool provisions again.
        backoff: Duration,
    },
    /// Shutdown finished: no invocation in flight, every worker released.
    ShutdownComplete,
}

/// How a stream became a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// With a worker id the runtime issued.
    Provisioned,
    /// With a pool's join token.
    Joined,
    /// With its resume token, into its old slot.
    Resumed,
}

/// A worker's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerState {
    /// Init handshake under way.
    Initializing,
    /// Warm and idle in its pool.
    Placeholder,
    /// Being specialized for an app.
    Specializing,
    /// Serving its app.
    Ready,
    /// Finishing in-flight work; takes no new work.
    Draining,
    /// Connection lost; slot kept for the resume grace.
    Disconnected,
    /// Removed.
    Gone,
}

impl WorkerState {
    /// Lower-case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            WorkerState::Initializing => "initializing",
            WorkerState::Placeholder => "placeholder",
            WorkerState::Specializing => "specializing",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Gone => "gone",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A phase of bringing a worker up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `WorkerInitRequest` → response.
    Init,
    /// `FunctionEnvironmentReloadRequest` → response.
    EnvReload,
    /// `FunctionsMetadataRequest` → response.
    Metadata,
    /// `FunctionLoadRequest`s → responses.
    Load,
}

impl Phase {
    /// Lower-case label.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::EnvReload => "env_reload",
            Phase::Metadata => "metadata",
            Phase::Load => "load",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How long each specialization phase took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpecializationTimings {
    /// Env reload.
    pub env_reload: Duration,
    /// Functions metadata (zero when the worker does not index).
    pub metadata: Duration,
    /// All function loads.
    pub load: Duration,
    /// From picking the placeholder to ready.
    pub total: Duration,
}

/// Why a worker was evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictReason {
    /// It broke the protocol (message out of order, wrong direction, oversized map).
    ProtocolViolation(String),
    /// Its stream carried bytes that do not decode.
    Malformed(String),
    /// It went silent past the heartbeat deadline.
    Silent,
    /// It did not answer a status probe in time.
    ProbeTimeout,
    /// It did not finish a phase in time.
    PhaseTimeout(Phase),
    /// Its init handshake failed.
    InitFailed(String),
    /// Its stream ended and it cannot resume.
    Disconnected(String),
    /// It did not come back within the resume grace.
    ResumeExpired,
    /// Its process or pod ended.
    Exited(String),
    /// It did not finish draining in time.
    DrainTimeout,
    /// It was replaced by a new stream with its resume token while the old one looked alive.
    Superseded,
}

impl EvictReason {
    /// Low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            EvictReason::ProtocolViolation(_) => "protocol_violation",
            EvictReason::Malformed(_) => "malformed",
            EvictReason::Silent => "silent",
            EvictReason::ProbeTimeout => "probe_timeout",
            EvictReason::PhaseTimeout(_) => "phase_timeout",
            EvictReason::InitFailed(_) => "init_failed",
            EvictReason::Disconnected(_) => "disconnected",
            EvictReason::ResumeExpired => "resume_expired",
            EvictReason::Exited(_) => "exited",
            EvictReason::DrainTimeout => "drain_timeout",
            EvictReason::Superseded => "superseded",
        }
    }
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvictReason::ProtocolViolation(w) => write!(f, "protocol violation: {w}"),
            EvictReason::Malformed(w) => write!(f, "malformed frame: {w}"),
            EvictReason::Silent => f.write_str("no heartbeat within the deadline"),
            EvictReason::ProbeTimeout => f.write_str("no answer to a status probe"),
            EvictReason::PhaseTimeout(p) => write!(f, "{p} timed out"),
            EvictReason::InitFailed(w) => write!(f, "init failed: {w}"),
            EvictReason::Disconnected(w) => write!(f, "disconnected: {w}"),
            EvictReason::ResumeExpired => f.write_str("did not resume within the grace period"),
            EvictReason::Exited(w) => write!(f, "process exited: {w}"),
            EvictReason::DrainTimeout => f.write_str("drain did not finish in time"),
            EvictReason::Superseded => f.write_str("superseded by a resumed stream"),
        }
    }
}

/// Why a response was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The call had already been settled (timed out, cancelled, retried elsewhere).
    Late,
    /// The runtime never sent this invocation to this worker.
    NotGiven,
}

impl DropReason {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Late => "late",
            DropReason::NotGiven => "not_given",
        }
    }
}

/// Outcome class, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutcomeKind {
    /// Completed.
    Success,
    /// Function error.
    Failure,
    /// Deadline passed.
    Timeout,
    /// Caller cancelled.
    Cancelled,
    /// Could not run.
    Unavailable,
    /// Nothing to call.
    NotFound,
}

impl OutcomeKind {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::Failure => "failure",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::Unavailable => "unavailable",
            OutcomeKind::NotFound => "not_found",
        }
    }
}

impl crate::io::Outcome {
    /// Its class.
    pub fn kind(&self) -> OutcomeKind {
        use crate::io::Outcome;
        match self {
            Outcome::Completed(_) => OutcomeKind::Success,
            Outcome::Failed(_) => OutcomeKind::Failure,
            Outcome::Timeout => OutcomeKind::Timeout,
            Outcome::Cancelled => OutcomeKind::Cancelled,
            Outcome::Unavailable { .. } => OutcomeKind::Unavailable,
            Outcome::NotFound(_) => OutcomeKind::NotFound,
        }
    }
}
