//! `switchboard`: run the runtime (`serve`), and steer a running one through its admin API
//! (`app`, `workers`, `pools`, `invoke`, `logs`).
//!
//! Exit codes: 0 success; 1 the operation failed (the runtime said no, the function failed, the
//! app does not exist); 2 usage error; 3 the runtime could not be reached.

mod client;
mod commands;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use switchboard_shell::Config;
use switchboard_shell::config::ShellKind;
use switchboard_tokio::worker::WorkerArgs;

/// What the process exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// The operation failed.
    Failed = 1,
    /// The command line is wrong.
    Usage = 2,
    /// The runtime could not be reached.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "A multi-tenant Azure Functions runtime")]
struct Cli {
    /// Log format of `serve` (json: one object per line, with app, function, invocation and
    /// worker ids as fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: Command,
}

/// How the admin commands reach a runtime.
#[derive(Debug, Args)]
struct Remote {
    /// The runtime's admin API.
    #[arg(long, global = true, env = "SWITCHBOARD_ADMIN", default_value = "http://127.0.0.1:7072")]
    admin: String,
    /// Admin bearer token (default: $SWITCHBOARD_TOKEN, then the token file).
    #[arg(long, global = true, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token [default: .switchboard/admin-token].
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
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
        /// The async runtime under the shell (overrides the config's `shell`).
        #[arg(long, value_enum)]
        shell: Option<ShellArg>,
    },
    /// Run a connection-mode worker: join a runtime's `custom` pool with its token and run
    /// Azure Functions custom-handler apps; reconnects and resumes, SIGTERM drains.
    Worker(WorkerArgs),
    /// Deploy, update, list, show, scale, drain and remove apps.
    #[command(subcommand)]
    App(AppCommand),
    /// List workers (state, app, language, in-flight calls, last seen, pid, peer).
    Workers {
        #[command(subcommand)]
        action: Option<WorkersCommand>,
    },
    /// List placeholder pools (sizes and targets).
    Pools,
    /// Run a function through the admin API and print its result.
    Invoke {
        /// The app.
        app: String,
        /// The function (its name, not its route).
        function: String,
        /// The input: text, `@FILE` for a file's contents, or `-` for standard input.
        #[arg(long, short)]
        data: Option<String>,
        /// W3C traceparent to pass to the function (InvocationRequest.trace_context).
        #[arg(long)]
        traceparent: Option<String>,
    },
    /// Print an app's worker log lines; --follow streams new ones.
    Logs {
        /// The app.
        app: String,
        /// Keep streaming new lines until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Recent lines to show first [default: 100, or 10 with --follow].
        #[arg(long)]
        tail: Option<usize>,
        /// Include the worker's own (system) log lines.
        #[arg(long)]
        system: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AppCommand {
    /// Deploy an app folder (or a new version of an app of the same name).
    Deploy(DeployArgs),
    /// Deploy a new version of an app that is already deployed (fails if it is not).
    Update(DeployArgs),
    /// List apps.
    List,
    /// Show one app: functions, settings names, scale, workers.
    Show {
        /// The app.
        name: String,
    },
    /// Remove an app: its routes go now, its workers finish what they run.
    Remove {
        /// The app.
        name: String,
    },
    /// Change an app's scale; fields left out keep their value.
    Scale {
        /// The app.
        name: String,
        #[command(flatten)]
        scale: ScaleArgs,
    },
    /// Drain every worker of an app (a rolling restart: fresh workers replace them).
    Drain {
        /// The app.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum WorkersCommand {
    /// Drain one worker: it takes no new calls and is released when its calls are done.
    Drain {
        /// The worker id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// The app folder (host.json, one folder per function).
    dir: PathBuf,
    /// App name [default: the folder's name].
    #[arg(long)]
    name: Option<String>,
    /// An app setting, over local.settings.json `Values` (repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    #[command(flatten)]
    scale: ScaleArgs,
}

#[derive(Debug, Args)]
struct ScaleArgs {
    /// Workers kept specialized without traffic.
    #[arg(long = "min-workers", alias = "min")]
    min_workers: Option<u32>,
    /// Most workers for the app.
    #[arg(long = "max-workers", alias = "max")]
    max_workers: Option<u32>,
    /// Invocations in flight per worker.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Invocations that may wait for a worker.
    #[arg(long)]
    queue_limit: Option<u32>,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Exit::Usage.into() } else { Exit::Ok.into() };
        }
    };
    match cli.command {
        Command::Serve { config, apps, shell } => {
            init_tracing(cli.log_format);
            serve(config, apps, shell)
        }
        Command::Worker(args) => {
            init_tracing(cli.log_format);
            ExitCode::from(args.run())
        }
        command => commands::run(cli.remote, command).into(),
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

/// `--shell`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShellArg {
    Tokio,
    Smol,
}

fn serve(config: Option<PathBuf>, apps: Vec<PathBuf>, shell: Option<ShellArg>) -> ExitCode {
    let mut config = match config {
        Some(path) => match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("switchboard: {e}");
                return Exit::Usage.into();
            }
        },
        None => Config::default(),
    };
    match shell {
        Some(ShellArg::Tokio) => config.shell = ShellKind::Tokio,
        Some(ShellArg::Smol) => config.shell = ShellKind::Smol,
        None => {}
    }
    let announce = |started: &switchboard_shell::Started| {
        let scheme = if started.front_door_tls { "https" } else { "http" };
        println!(
            "switchboard: front door {scheme}://{} admin http://{} workers {}",
            started.front_door, started.admin, started.workers
        );
    };
    let result = match config.shell {
        ShellKind::Tokio => {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(switchboard_tokio::serve(config, &apps, announce))
        }
        ShellKind::Smol => switchboard_smol::serve(config, &apps, announce),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            Exit::Failed.into()
        }
    }
}
