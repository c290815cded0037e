//! Switchboard's shell, written once for any async runtime: the driver task that owns the
//! core, the gRPC worker endpoint, the HTTP front door, the admin API, the provisioners and the
//! configuration. The runtime-specific part is the small [`rt::Runtime`] trait, implemented by
//! `switchboard-tokio` and `switchboard-smol`.

pub mod admin;
pub mod appdir;
pub mod config;
pub mod driver;
pub mod front_door;
pub mod grpc;
pub mod logs;
pub mod metrics;
pub mod provision;
pub mod rt;
pub mod serve;
pub mod server;
pub mod telemetry;
pub mod tls;

/// The runtime-agnostic channels the shell and its runtimes share (tokio's `sync` module needs
/// no tokio runtime).
pub mod sync {
    pub use tokio::sync::{mpsc, oneshot, watch};
}

pub use config::Config;
pub use server::{StartError, Started, start, start_with};
