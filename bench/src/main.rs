//! Switchboard's benchmarks. `cargo run --release -p switchboard-bench -- all` runs every one,
//! prints a table per benchmark and rewrites its section of BENCHMARKS.md. `--quick` runs a
//! short smoke version (what CI runs), which does not touch BENCHMARKS.md.

mod baseline;
mod coldstart;
mod core_bench;
mod echo;
mod memory;
mod reconnect;
mod report;
mod routing;
mod scaleout;
mod stats;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "Switchboard benchmarks")]
struct Args {
    /// Which benchmark.
    #[arg(value_enum)]
    which: Which,
    /// A short smoke run (small counts); BENCHMARKS.md is left alone.
    #[arg(long)]
    quick: bool,
    /// Core benchmark only: shapes as APPSxWORKERS (e.g. `1x10,1000x10000`), for profiling.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// Everything below.
    All,
    /// The core's cost per invocation.
    Core,
    /// Cold start with the real Python worker, and runtime RSS.
    Coldstart,
    /// Routing overhead vs a raw tonic relay; the HTTP front door vs plain hyper; both shells.
    Routing,
    /// Runtime RSS by apps and connected workers; density per 7 GB node.
    Memory,
    /// Scale-out from 1 to 10 ready real Python workers.
    Scaleout,
    /// Connection-mode worker: reconnect → serving again, silent-worker detection.
    Reconnect,
    /// (internal) The raw relay baseline process.
    Relay,
    /// (internal) The plain hyper baseline process.
    Plain,
}

fn main() {
    let args = Args::parse();
    match args.which {
        Which::Relay => return baseline::relay_main(),
        Which::Plain => return baseline::plain_main(),
        _ => {}
    }
    report::set_dry_run(args.quick);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    if matches!(args.which, Which::All | Which::Core) {
        core_bench::bench(args.quick, &args.shapes);
    }
    let needs_binary = !matches!(args.which, Which::Core);
    let binary = needs_binary.then(coldstart::binary);
    if matches!(args.which, Which::All | Which::Routing) {
        let binary = binary.as_deref().expect("built");
        rt.block_on(routing::bench(binary, args.quick, &["tokio", "smol"]));
    }
    if matches!(args.which, Which::All | Which::Coldstart) {
        rt.block_on(coldstart::bench(binary.as_deref().expect("built"), args.quick));
    }
    if matches!(args.which, Which::All | Which::Scaleout) {
        rt.block_on(scaleout::bench(binary.as_deref().expect("built"), args.quick));
    }
    if matches!(args.which, Which::All | Which::Memory) {
        rt.block_on(memory::bench(binary.as_deref().expect("built"), args.quick));
    }
    if matches!(args.which, Which::All | Which::Reconnect) {
        rt.block_on(reconnect::bench(&reconnect::binary(), args.quick));
    }
}
