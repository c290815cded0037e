//! `switchboard`: run the runtime (`serve`), and talk to a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use switchboard_shell::Config;

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "A multi-tenant Azure Functions runtime")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the runtime: front door, admin API, worker endpoint, placeholder pools.
    Serve {
        /// TOML configuration (every field has a default; see README).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// App folders to deploy at start (in addition to the config's).
        #[arg(long = "app")]
        apps: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve { config, apps } => serve(config, apps),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(config: Option<PathBuf>, apps: Vec<PathBuf>) -> ExitCode {
    let config = match config {
        Some(path) => match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("switchboard: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(switchboard_tokio::serve(config, &apps, |started| {
        println!(
            "switchboard: front door http://{} admin http://{} workers {}",
            started.front_door, started.admin, started.workers
        );
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(1)
        }
    }
}
