//! Errors for local misuse of the runtime's admin operations. A misbehaving worker is never an
//! error here: it becomes an [`crate::Event`] and an eviction.

use thiserror::Error;

/// Why an app could not be deployed or changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppError {
    /// No pool serves the app's language and version: add a pool to the config or fix the app's
    /// `FUNCTIONS_WORKER_RUNTIME`(`_VERSION`).
    #[error("no placeholder pool serves language {language:?} version {version:?}")]
    NoPool {
        /// Requested language.
        language: String,
        /// Requested version.
        version: String,
    },
    /// Scale bounds are inconsistent: need `1 <= max_workers`, `min_workers <= max_workers`,
    /// `concurrency >= 1`.
    #[error("invalid scale: {0}")]
    InvalidScale(String),
    /// The app has no functions to load.
    #[error("the app has no functions")]
    NoFunctions,
    /// No app of this name is deployed.
    #[error("no app named {0:?}")]
    NotFound(String),
    /// The app is being removed; wait until it is gone to deploy it again.
    #[error("app {0:?} is being removed")]
    Removing(String),
    /// The runtime is shutting down and accepts no changes.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

/// Why a worker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkerError {
    /// No connected worker has this id.
    #[error("no worker with id {0:?}")]
    NotFound(String),
}

/// Why a pool could not be added or changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoolError {
    /// `min_idle` exceeds `max`, or `max` is zero: fix the pool's bounds.
    #[error("invalid pool bounds for {pool}: min_idle {min_idle} max {max}")]
    InvalidBounds {
        /// The pool.
        pool: String,
        /// Requested minimum idle.
        min_idle: u32,
        /// Requested maximum.
        max: u32,
    },
}

/// Why a worker could not be expected (see [`crate::Runtime::expect_worker`]). The shell stops
/// that worker instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpectError {
    /// No pool has this key: the worker belongs to a pool that is no longer configured.
    #[error("no pool {0}")]
    NoPool(String),
    /// The pool already has `max` workers, connected or expected: stop the extra worker.
    #[error("pool {0} is full")]
    PoolFull(String),
    /// A live worker or an open ticket already has this id: an id admits one stream only.
    #[error("worker id {0:?} is already known")]
    Known(String),
    /// The id is empty, longer than 256 bytes or contains control characters.
    #[error("invalid worker id {0:?}")]
    InvalidId(String),
    /// The runtime is shutting down and admits no new workers.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}
