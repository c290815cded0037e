//! A worker process outlives the thread that happened to start it. Workers are started with a
//! parent-death signal, which follows the forking *thread*; any thread in `Smol::block_on` runs
//! the executor's tasks, so a short-lived one (a test's, an embedder's) must not be the parent.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::time::Duration;

use switchboard_shell::provision::die_with_parent;
use switchboard_shell::rt::Runtime;
use switchboard_smol::Smol;

#[test]
fn a_child_started_from_a_short_lived_block_on_thread_survives_it() {
    let rt = Smol::new(1);
    let spawner = rt.clone();
    let mut child = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30").process_group(0);
        die_with_parent(&mut cmd);
        // Spawned from inside this thread's block_on, as a task polled here would.
        spawner.block_on(async { spawner.spawn_process(cmd) }).expect("sleep starts")
    })
    .join()
    .expect("the short-lived thread");

    // Had the short-lived thread been its parent, SIGKILL would end it now.
    let exited_early = rt.block_on(async {
        let timeout = async_io::Timer::after(Duration::from_millis(500));
        futures_lite::future::or(async { Some((&mut child.exit).await) }, async {
            timeout.await;
            None
        })
        .await
    });
    assert!(exited_early.is_none(), "the child died with the thread that started it: {exited_early:?}");

    // It is alive and ours to stop: it ends by our SIGTERM, not by a SIGKILL.
    switchboard_shell::provision::signal_group(child.pid, libc::SIGTERM);
    let status = rt.block_on(async { (&mut child.exit).await }).expect("exit").expect("status");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}
