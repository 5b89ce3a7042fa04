//! Evidence lines: an event as the trace printed it, or (trace.dat) an
//! equivalent line in `trace-cmd report` style.

use nmitrace_parser::Event;
use std::fmt::Write;

/// Timestamp as seconds (`608.685794` for µs clocks, 9 decimals otherwise).
pub fn fmt_ts(ns: u64) -> String {
    if ns % 1000 == 0 {
        format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
    } else {
        format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
    }
}

/// The event's line, allocated.
pub fn event_line(ev: &Event<'_>) -> String {
    let mut s = String::new();
    write_event_line(ev, &mut s);
    s
}

/// Append the event's line to `out` (reusing its buffer).
pub fn write_event_line(ev: &Event<'_>, out: &mut String) {
    if let Some(raw) = ev.raw {
        out.push_str(raw.trim_end());
        return;
    }
    let comm = ev.comm.unwrap_or("<...>");
    let _ = write!(out, "{:>16}-{:<7} [{:03}] ", comm, ev.pid, ev.cpu);
    if ev.ctx.known {
        let c = &ev.ctx;
        out.push(if c.irqs_off { 'd' } else { '.' });
        out.push(if c.nmi && c.hardirq {
            'Z'
        } else if c.nmi {
            'z'
        } else if c.hardirq && c.softirq {
            'H'
        } else if c.hardirq {
            'h'
        } else if c.softirq {
            's'
        } else {
            '.'
        });
        match c.preempt_depth {
            Some(d) => {
                let _ = write!(out, "{d:x} ");
            }
            None => out.push_str(". "),
        }
    }
    let _ = write!(out, "{}: {}: ", fmt_ts(ev.ts_ns), ev.name);
    for (i, f) in ev.fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{}={}", f.name, f.value);
    }
}
