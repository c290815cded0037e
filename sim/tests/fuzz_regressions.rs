//! Replays every saved input of the fuzz targets (`fuzz/regressions/<target>/*`): crashes the
//! fuzzers found (fixed since) and a few hand-made inputs that reach deep paths. A normal
//! test, so CI needs no fuzzer and no nightly toolchain.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a readable directory").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_name().unwrap_or_default().to_string_lossy().into_owned(), data)
        })
        .filter(|(name, _)| !name.starts_with('.') && name != "README.md")
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no saved inputs in {}", dir.display());
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    for (name, data) in inputs(target) {
        println!("{target}: replaying {name} ({} bytes)", data.len());
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{target}: saved input {name} fails again");
    }
}

#[test]
fn decode_regressions() {
    replay("decode", switchboard_sim::fuzz::decode);
}

#[test]
fn event_seq_regressions() {
    replay("event_seq", switchboard_sim::fuzz::event_seq);
}
