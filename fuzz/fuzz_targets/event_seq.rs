//! Arbitrary workload and fault sequences through the simulation harness, with its
//! invariants checked after every step, then heal, recovery and probes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_sim::fuzz::event_seq(data));
