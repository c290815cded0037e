//! Support for the CLI tests: run the `switchboard` binary against a runtime, start the
//! runtime as a process, parse metrics.

#![allow(dead_code)]

pub mod prom;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The token `switchboard_tests::test_config` sets.
pub const TOKEN: &str = "test-token";

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// The repository's examples.
pub fn example(name: &str) -> String {
    switchboard_tests::examples().join(name).canonicalize().unwrap().display().to_string()
}

/// A fresh, empty folder (removed on drop).
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("switchboard-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of the CLI did.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "exit code; stdout: {}\nstderr: {}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Asserts this exit code and that stderr mentions `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "exit code; stdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {}", self.stderr);
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A CLI bound to one runtime's admin API.
#[derive(Debug, Clone)]
pub struct Cli {
    /// `http://admin`.
    pub admin: String,
    /// `--token`, if any.
    pub token: Option<String>,
    /// Working directory (an empty one by default, so no `.switchboard/admin-token` is found).
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Cli {
    /// The CLI for the admin API at `admin` with the test token.
    pub fn new(admin: impl std::fmt::Display) -> Cli {
        Cli {
            admin: format!("http://{admin}"),
            token: Some(TOKEN.into()),
            cwd: std::env::temp_dir(),
            env: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary());
        cmd.arg("--admin").arg(&self.admin);
        if let Some(token) = &self.token {
            cmd.arg("--token").arg(token);
        }
        cmd.args(args)
            .current_dir(&self.cwd)
            .env_remove("SWITCHBOARD_TOKEN")
            .env_remove("SWITCHBOARD_ADMIN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `switchboard ARGS...` to completion (bounded).
    pub async fn run(&self, args: &[&str]) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("switchboard {args:?} did not finish within a minute"))
            .expect("the binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `switchboard ARGS...` with piped output (for `logs --follow`).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary runs")
    }
}

/// Reads lines from `lines` until one satisfies `want`, failing after `bound`.
pub async fn read_until<R>(
    lines: &mut tokio::io::Lines<BufReader<R>>,
    bound: Duration,
    want: impl Fn(&str) -> bool,
) -> String
where
    R: tokio::io::AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + bound;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                if want(&line) {
                    return line;
                }
                seen.push(line);
            }
            Ok(Ok(None)) => panic!("the stream ended; lines seen: {seen:#?}"),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!("timed out after {bound:?}; lines seen: {seen:#?}"),
        }
    }
}

/// `switchboard serve` as a process, with its stderr captured to a file.
#[derive(Debug)]
pub struct ServeProcess {
    /// The process.
    pub child: tokio::process::Child,
    /// `host:port` of the front door.
    pub front_door: String,
    /// `host:port` of the admin API.
    pub admin: String,
    /// `host:port` of the worker endpoint.
    pub workers: String,
    /// Where stderr goes.
    pub stderr: PathBuf,
    /// Its folder.
    pub dir: TempDir,
}

impl ServeProcess {
    /// Starts `switchboard [extra...] serve --config` with these apps and a python pool.
    pub async fn start(name: &str, extra: &[&str], apps: &[&str], min_idle: u32) -> ServeProcess {
        let args: Vec<&str> = extra.iter().copied().chain(["serve"]).collect();
        ServeProcess::serve(name, &args, apps, min_idle).await
    }

    /// Starts `switchboard ARGS --config` (ARGS ending in `serve` and its flags) with these
    /// apps and a python pool.
    pub async fn serve(name: &str, args: &[&str], apps: &[&str], min_idle: u32) -> ServeProcess {
        let dir = TempDir::new(name);
        let mut config = format!(
            "state_dir = \"{}\"\n[listen]\nfront_door = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nworkers = \"127.0.0.1:0\"\n\
             [admin]\ntoken = \"{TOKEN}\"\n[[pool]]\nlanguage = \"python\"\nmin_idle = {min_idle}\n",
            dir.0.join("state").display()
        );
        for app in apps {
            config.push_str(&format!("[[app]]\npath = \"{}\"\n", example(app)));
        }
        ServeProcess::with_config(dir, &config, args, &[]).await
    }

    /// Starts `switchboard ARGS --config FILE` (ARGS ending in `serve` and its flags) with this
    /// config text, saved in `dir`, and `env`; waits for its address line.
    pub async fn with_config(
        dir: TempDir,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServeProcess {
        let config_path = dir.0.join("switchboard.toml");
        std::fs::write(&config_path, config).unwrap();
        let stderr = dir.0.join("stderr.log");
        let mut child = tokio::process::Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the address line within 2 minutes (first run installs the Python worker)")
            .unwrap()
            .expect("a line on stdout");
        // "switchboard: front door http://A admin http://B workers C"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[..3], ["switchboard:", "front", "door"], "{line}");
        let strip = |s: &str| s.trim_start_matches("http://").to_owned();
        let workers = words[7].to_owned();
        ServeProcess { child, front_door: strip(words[3]), admin: strip(words[5]), workers, stderr, dir }
    }

    /// SIGTERM, and the exit status.
    pub async fn stop(mut self) -> (std::process::ExitStatus, String) {
        switchboard_tests::kill(self.child.id().unwrap(), libc::SIGTERM);
        let status =
            tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exits").unwrap();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap();
        (status, stderr)
    }
}

/// Whether `s` looks like a UUID (the invocation ids the runtime issues).
pub fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// Reads a file (panics with its path).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
