//! How times print: a timestamp as the trace prints it, a duration with its unit.

pub use nmitrace_replay::fmt_ts;

/// A duration: `1.234 s`, `2.500 ms`, `12.3 µs`, `850 ns`.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.0} ns", ns)
    }
}
