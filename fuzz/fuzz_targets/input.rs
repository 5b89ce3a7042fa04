//! The input layer: gzip and zstd streams, detected by magic, decompressed.
//! Seeds: fuzz/seeds/input (small .gz and .zst files).
#![no_main]
mod common;
libfuzzer_sys::fuzz_target!(|data: &[u8]| common::input_layer(data));
