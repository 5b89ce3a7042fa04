//! The text parser in each format (the first byte picks tracefs text,
//! `trace-cmd report` or `perf script`), then the analyses.
//! Seeds: fuzz/seeds/text (excerpts of the real traces, each format).
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| common::text_as(data));
