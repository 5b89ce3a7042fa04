//! Structure-aware: trace.dat files (the seeds, and real ones from
//! $NMITRACE_FUZZ_BASE when set) with their header sizes, offsets, option
//! words and `header_page`/format numbers overwritten by the program the
//! fuzzer writes, then read and analysed.
#![no_main]
mod common;
mod bases;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = common::mutate_tracedat(data, &bases::tracedat());
    common::tracedat(&f);
});
