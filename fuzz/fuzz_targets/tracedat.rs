//! Fuzz the trace.dat reader: any bytes must give events, warnings or an
//! error, never a panic, a hang or an unjustified allocation.
//!
//! Seeds: `cargo test -p nmitrace-parser --test tracedat_robust -- --ignored write_fuzz_seeds`
//! writes small v7-zstd / v7-none / v6 files into fuzz/corpus/tracedat.
//! Run (stable toolchain): `RUSTC_BOOTSTRAP=1 cargo fuzz run tracedat -- -max_len=262144 -max_total_time=300`
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmitrace_parser::{Event, Notice, Sink};

struct Nothing(u64);
impl Sink for Nothing {
    fn event(&mut self, ev: &Event<'_>) {
        self.0 = self.0.wrapping_add(ev.ts_ns ^ ev.fields.len() as u64);
        for f in ev.fields.iter() {
            self.0 = self.0.wrapping_add(f.name.len() as u64);
        }
    }
    fn notice(&mut self, _n: &Notice) {}
}

fuzz_target!(|data: &[u8]| {
    let mut s = Nothing(0);
    let _ = nmitrace_parser::tracedat::run_bytes("fuzz.dat", data, &mut s, Some(1));
    // every format's field layout, parsed lazily by the reader, and every
    // field of every event (decoded on access)
    if let Ok(meta) = nmitrace_parser::tracedat::read_meta("fuzz.dat", data) {
        for f in &meta.formats {
            let _ = f.layout();
        }
    }
});
