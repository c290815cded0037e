//! `switchboard-worker`: a connection-mode worker that runs Azure Functions custom-handler apps
//! (the same as `switchboard worker`, for images that ship only the worker).
//!
//! ```sh
//! switchboard-worker --runtime http://127.0.0.1:7073 --join-token "$TOKEN"
//! ```
//!
//! It joins the runtime's `custom` pool with the token, waits warm as a placeholder, and when
//! specialized starts the app's handler from host.json `customHandler`. SIGTERM drains it: no
//! new work, what is in flight finishes, exit 0. Logs go to stderr (`RUST_LOG` filters them).

use std::process::ExitCode;

use clap::Parser;
use switchboard_tokio::worker::WorkerArgs;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard-worker",
    version,
    about = "A Switchboard connection-mode worker for Azure Functions custom handlers"
)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    ExitCode::from(args.worker.run())
}
