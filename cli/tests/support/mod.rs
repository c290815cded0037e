//! Support for the CLI tests: run the `switchboard` binary against a runtime, start the
//! runtime as a process, parse metrics.

#![allow(dead_code)]

pub mod prom;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::BufReader;

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

/// `switchboard serve` as a process (stderr captured to a file), with the folder it runs in.
#[derive(Debug)]
pub struct ServeProcess {
    /// The process and its addresses.
    pub serving: switchboard_tests::ServeProcess,
    /// Its folder (removed on drop).
    pub dir: TempDir,
}

impl std::ops::Deref for ServeProcess {
    type Target = switchboard_tests::ServeProcess;
    fn deref(&self) -> &Self::Target {
        &self.serving
    }
}

impl std::ops::DerefMut for ServeProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.serving
    }
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
        let mut config = switchboard_tests::loopback_config(&dir.0.join("state"), TOKEN);
        config.push_str(&format!("[[pool]]\nlanguage = \"python\"\nmin_idle = {min_idle}\n"));
        for app in apps {
            config.push_str(&format!("[[app]]\npath = \"{}\"\n", example(app)));
        }
        ServeProcess::with_config(dir, &config, args, &[]).await
    }

    /// Starts `switchboard ARGS --config FILE` with this config text, saved in `dir`, and `env`.
    pub async fn with_config(
        dir: TempDir,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServeProcess {
        let serving =
            switchboard_tests::ServeProcess::launch(Path::new(binary()), &dir.0, config, args, env, TOKEN)
                .await;
        ServeProcess { serving, dir }
    }

    /// SIGTERM; the exit status and its stderr.
    pub async fn stop(self) -> (std::process::ExitStatus, String) {
        self.serving.stop().await
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
