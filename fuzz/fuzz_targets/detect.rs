//! Format detection on any bytes.
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| common::detect(data));
