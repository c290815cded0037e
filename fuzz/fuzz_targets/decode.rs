//! Arbitrary bytes as frames from workers (and strangers) into a runtime with apps and
//! workers: no panic; a frame that does not decode ends its stream; the system recovers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_sim::fuzz::decode(data));
