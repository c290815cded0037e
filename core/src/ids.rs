//! Typed identifiers.
//!
//! [`ConnId`] and [`CallId`] are chosen by the shell (one per stream, one per caller);
//! [`WorkerId`] is the worker's `StartStream.worker_id`; [`PoolKey`] names a placeholder pool.

use std::fmt;

/// One gRPC `EventStream` connection, numbered by the shell. Never reused within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ConnId(pub u64);

/// One caller waiting for an outcome (an HTTP request, an admin invoke, a timer tick), numbered
/// by the shell. The core answers each exactly once with [`crate::Output::Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CallId(pub u64);

/// A worker's identity: the `worker_id` of its `StartStream`, issued by a provision request or
/// chosen by a worker that joined with a pool's token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub String);

/// A placeholder pool: workers of one language and version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    /// Language, e.g. `python`.
    pub language: String,
    /// Version, e.g. `3.11`; empty matches apps that ask for no particular version.
    pub version: String,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl WorkerId {
    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version.is_empty() {
            f.write_str(&self.language)
        } else {
            write!(f, "{}-{}", self.language, self.version)
        }
    }
}

impl PoolKey {
    /// A pool key from its parts.
    pub fn new(language: impl Into<String>, version: impl Into<String>) -> Self {
        PoolKey { language: language.into(), version: version.into() }
    }
}
