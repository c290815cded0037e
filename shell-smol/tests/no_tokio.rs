//! Switchboard runs on smol with no tokio runtime anywhere: this test process starts none, and
//! the real Python worker serves an app through the smol shell.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use switchboard_shell::config::{Config, Pool};
use switchboard_smol::Smol;

/// A blocking HTTP/1.1 GET (no async client: nothing here may start a tokio runtime).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn tokio_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("tokio-"))
        .collect()
}

#[test]
fn serves_real_python_apps_without_a_tokio_runtime() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config::default();
    config.listen.front_door = any;
    config.listen.admin = any;
    config.listen.workers = any;
    config.admin.token = Some("t".into());
    config.state_dir = std::env::temp_dir().join(format!("switchboard-smol-{}", std::process::id()));
    config.pools = vec![Pool { min_idle: 1, max: 4, ..Pool::default_python() }];
    let hello = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");

    let rt = Smol::new(2);
    let started = rt.block_on(switchboard_smol::start(rt.clone(), config, &[hello])).expect("starts");
    let (status, body) = get(started.front_door, "/hello/api/hello?name=smol");
    assert_eq!((status, body.as_str()), (200, "Hello, smol!"));

    // Nothing started a tokio runtime: no tokio thread exists, and code running on the smol
    // executor sees no tokio context.
    assert!(tokio_threads().is_empty(), "tokio threads: {:?}", tokio_threads());
    let in_task = rt.block_on(async { tokio::runtime::Handle::try_current().is_err() });
    assert!(in_task, "a tokio runtime is reachable from the smol executor");

    rt.block_on(started.shutdown());
}
