//! Any file, as `nmitrace analyze FILE` reads it: detection, decompression,
//! the reader of whatever format it is, the replay and the analyses.
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| common::analyze_bytes(data));
