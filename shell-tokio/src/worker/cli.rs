//! The worker's command line, shared by `switchboard worker` and the `switchboard-worker`
//! binary so the two cannot drift.

use std::time::Duration;

use switchboard_core::Backoff;

use super::{WorkerOptions, generated_worker_id, run_worker};

/// Flags of a connection-mode worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The runtime's worker endpoint.
    #[arg(long, env = "SWITCHBOARD_RUNTIME", default_value = "http://127.0.0.1:7073")]
    pub runtime: String,
    /// The join token of the runtime's `custom` pool (`provisioner = "external"`).
    #[arg(long, env = "SWITCHBOARD_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// This worker's id (default: generated). Keep it for the life of the process.
    #[arg(long, env = "SWITCHBOARD_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Heartbeat period (e.g. `500ms`, `1s`).
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub heartbeat: Duration,
    /// Silence from the runtime that means a dead stream.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub runtime_silence: Duration,
    /// Invocations taken at once (advertised to the runtime); default: the app's concurrency.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Longest drain after SIGTERM.
    #[arg(long, default_value = "25s", value_parser = duration)]
    pub drain_grace: Duration,
    /// First redial delay; it doubles per consecutive failure.
    #[arg(long, default_value = "10ms", value_parser = duration)]
    pub reconnect_initial: Duration,
    /// Longest redial delay.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub reconnect_max: Duration,
    /// Longest wait for the custom handler to listen.
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub handler_start_timeout: Duration,
}

impl WorkerArgs {
    /// The options these flags describe.
    pub fn options(self) -> WorkerOptions {
        let mut options = WorkerOptions::new(self.runtime);
        options.join_token = self.join_token;
        options.worker_id = self.worker_id.unwrap_or_else(generated_worker_id);
        options.heartbeat = self.heartbeat;
        options.runtime_silence = self.runtime_silence;
        options.concurrency = self.concurrency;
        options.drain_grace = self.drain_grace;
        options.reconnect = Backoff { initial: self.reconnect_initial, max: self.reconnect_max };
        options.handler_start_timeout = self.handler_start_timeout;
        options
    }

    /// Runs the worker on its own tokio runtime until it exits; the process exit code (0 after
    /// a drain). Tracing is the caller's to set up.
    pub fn run(self) -> u8 {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("switchboard worker: cannot start tokio: {e}");
                return 2;
            }
        };
        let code = runtime.block_on(run_worker(self.options()));
        // Tasks still parked (the handler's output readers) must not hold the exit.
        runtime.shutdown_timeout(Duration::from_millis(100));
        u8::try_from(code).unwrap_or(1)
    }
}

/// `250ms`, `2s`, `1.5s`, `1m`.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        other => return Err(format!("unknown unit {other:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(duration("5h").unwrap_err().contains("unknown unit"));
        assert!(duration("fast").unwrap_err().contains("not a duration"));
    }
}
