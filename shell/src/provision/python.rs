//! The built-in Python worker: the real Azure Functions Python worker from PyPI, bootstrapped
//! once into a cached virtual environment.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The install script, embedded so the binary works from any directory.
const INSTALL_SCRIPT: &str = include_str!("../../../scripts/install-python-worker.sh");

/// How a Python placeholder starts: import the Functions SDK first (`azure.functions` takes
/// 50–300 ms to import, and the worker otherwise imports it during the env reload, that is
/// during specialization), then run the unmodified worker's own `__main__` with the host-style
/// arguments. Placeholders are warm in every sense: the cost is paid while they wait.
pub const PRELOAD_AND_RUN: &str = "import azure.functions, runpy; runpy.run_module('azure_functions_worker', run_name='__main__', alter_sys=True)";

/// Version installed; part of the cache folder's name.
pub const WORKER_VERSION: &str = "1.1.9";

/// The default cache folder: `$XDG_CACHE_HOME/switchboard` or `~/.cache/switchboard`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("switchboard");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/switchboard"),
        None => std::env::temp_dir().join("switchboard-cache"),
    }
}

/// Returns the command that starts the Python worker, installing it into `cache_dir` first if
/// needed (and saying so on stderr: it takes a while and needs PyPI). Safe to call from several
/// processes at once: they take turns on a lock file.
pub fn worker_command(cache_dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(cache_dir)?;
    let venv = cache_dir.join(format!("python-worker-{WORKER_VERSION}"));
    let python = venv.join("bin/python");
    let command = vec![python.to_string_lossy().into_owned(), "-c".into(), PRELOAD_AND_RUN.into()];
    let lock = std::fs::File::create(cache_dir.join(format!("python-worker-{WORKER_VERSION}.lock")))?;
    lock.lock()?;
    if python.exists() && imports_ok(&python) {
        return Ok(command);
    }
    eprintln!(
        "switchboard: installing the Azure Functions Python worker {WORKER_VERSION} into {} (first run only; needs python3 and PyPI)...",
        venv.display()
    );
    let mut child = Command::new("bash")
        .arg("-s")
        .arg("--")
        .arg(&venv)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(INSTALL_SCRIPT.as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() || !imports_ok(&python) {
        return Err(io::Error::other(format!(
            "installing the Python worker into {} failed ({status}); see the messages above",
            venv.display()
        )));
    }
    eprintln!("switchboard: Python worker ready");
    Ok(command)
}

fn imports_ok(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import azure_functions_worker, grpc, azure.functions"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
