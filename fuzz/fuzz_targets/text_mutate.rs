//! Structure-aware: real trace lines (the sample traces and real NMI
//! captures, every text format), edited by the program the fuzzer writes
//! (cut short, bytes deleted, `-[]:.=Z(` inserted, lines duplicated,
//! swapped, dropped), then detected, read and analysed.
#![no_main]
mod common;
mod bases;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = common::mutate_lines(data, &bases::text());
    common::analyze_bytes(&text);
});
