//! The trace.dat reader, then the analyses: any bytes give a report,
//! warnings or an error, never a panic, a hang or an unjustified allocation.
//! Seeds: fuzz/seeds/tracedat (small v6 / v7-none / v7-zstd files).
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| common::tracedat(data));
