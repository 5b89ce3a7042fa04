//! Evidence lines: an event as the trace printed it, or (trace.dat) an
//! equivalent line in `trace-cmd report` style.

use nmitrace_parser::tracedat::format::{EventFormat, RecordFields};
use nmitrace_parser::tracedat::header::Endian;
use nmitrace_parser::{Event, Fields};
use std::fmt::Write;
use std::sync::Arc;

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
    write_ctx(&ev.ctx, out);
    let _ = write!(out, "{}: {}: ", fmt_ts(ev.ts_ns), ev.name);
    for (i, f) in ev.fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = match f.value {
            nmitrace_parser::Value::Uint(v) => write_num(out, f.name, v),
            nmitrace_parser::Value::Int(v) if v > 0 => write_num(out, f.name, v as u64),
            v => write!(out, "{}={}", f.name, v),
        };
    }
}

/// A field value captured without formatting.
#[derive(Clone, Debug, Default)]
enum CapVal {
    #[default]
    None,
    I(i64),
    U(u64),
    S(String),
}

/// An event kept for evidence, captured cheaply (a copy of the raw line, of
/// a binary record's bytes with its shared format, or of the typed fields)
/// and rendered only when a finding needs it. Buffers are reused from
/// capture to capture.
#[derive(Clone, Debug, Default)]
pub struct CapturedLine {
    set: bool,
    raw: Option<String>,
    ts_ns: u64,
    cpu: u32,
    pid: i32,
    comm: String,
    ctx: nmitrace_parser::Context,
    name: String,
    /// A binary record: its format and bytes, decoded at render time.
    record: Option<(Arc<EventFormat>, Endian)>,
    record_data: Vec<u8>,
    fields: Vec<(String, CapVal)>,
    nfields: usize,
}

impl CapturedLine {
    pub fn clear(&mut self) {
        self.set = false;
    }

    pub fn is_set(&self) -> bool {
        self.set
    }

    pub fn capture(&mut self, ev: &Event<'_>) {
        self.set = true;
        if let Some(raw) = ev.raw {
            let r = self.raw.get_or_insert_with(String::new);
            r.clear();
            r.push_str(raw.trim_end());
            return;
        }
        self.raw = None;
        self.ts_ns = ev.ts_ns;
        self.cpu = ev.cpu;
        self.pid = ev.pid;
        self.comm.clear();
        self.comm.push_str(ev.comm.unwrap_or("<...>"));
        self.ctx = ev.ctx;
        if let Fields::Record(r) = ev.fields {
            match &self.record {
                Some((f, _)) if Arc::ptr_eq(f, r.format) => {}
                _ => self.record = Some((Arc::clone(r.format), r.endian)),
            }
            self.record_data.clear();
            self.record_data.extend_from_slice(r.data);
            return;
        }
        self.record = None;
        self.name.clear();
        self.name.push_str(ev.name);
        self.nfields = 0;
        for f in ev.fields.iter() {
            if self.nfields == self.fields.len() {
                self.fields.push((String::new(), CapVal::None));
            }
            let slot = &mut self.fields[self.nfields];
            slot.0.clear();
            slot.0.push_str(f.name);
            slot.1 = match f.value {
                nmitrace_parser::Value::Int(v) => CapVal::I(v),
                nmitrace_parser::Value::Uint(v) => CapVal::U(v),
                nmitrace_parser::Value::Str(s) => match std::mem::take(&mut slot.1) {
                    CapVal::S(mut b) => {
                        b.clear();
                        b.push_str(s);
                        CapVal::S(b)
                    }
                    _ => CapVal::S(s.to_string()),
                },
                nmitrace_parser::Value::Bytes(_) => CapVal::None,
            };
            self.nfields += 1;
        }
    }

    /// The line as the trace printed it (text) or an equivalent line (binary).
    pub fn render(&self) -> Option<String> {
        if !self.set {
            return None;
        }
        if let Some(r) = &self.raw {
            return Some(r.clone());
        }
        if let Some((format, endian)) = &self.record {
            let fields = RecordFields {
                format,
                data: &self.record_data,
                endian: *endian,
            };
            let ev = Event {
                ts_ns: self.ts_ns,
                cpu: self.cpu,
                pid: self.pid,
                comm: Some(&self.comm),
                ctx: self.ctx,
                system: Some(&format.system),
                name: &format.name,
                kind: format.kind,
                fields: Fields::Record(fields),
                origin: nmitrace_parser::Origin::None,
                instance: None,
                raw: None,
            };
            return Some(event_line(&ev));
        }
        let mut out = String::new();
        let _ = write!(out, "{:>16}-{:<7} [{:03}] ", self.comm, self.pid, self.cpu);
        write_ctx(&self.ctx, &mut out);
        let _ = write!(out, "{}: {}: ", fmt_ts(self.ts_ns), self.name);
        for (i, (n, v)) in self.fields[..self.nfields].iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = match v {
                CapVal::None => write!(out, "{n}=?"),
                CapVal::I(x) if *x > 0 => write_num(&mut out, n, *x as u64),
                CapVal::I(x) => write!(out, "{n}={x}"),
                CapVal::U(x) => write_num(&mut out, n, *x),
                CapVal::S(s) => write!(out, "{n}={s}"),
            };
        }
        Some(out)
    }
}

fn write_ctx(c: &nmitrace_parser::Context, out: &mut String) {
    if !c.known {
        return;
    }
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

/// String equality tuned for short event names: lengths first, then two
/// overlapping 8-byte words for 8..=16-byte names (no memcmp call).
#[inline(always)]
pub fn name_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if (8..=16).contains(&n) {
        let w = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap());
        return w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8);
    }
    a == b
}

/// Numbers too large to be counts (addresses) print in hex, as trace-cmd does.
fn write_num(out: &mut String, name: &str, v: u64) -> std::fmt::Result {
    if v > 0xffff_ffff {
        write!(out, "{name}={v:#x}")
    } else {
        write!(out, "{name}={v}")
    }
}
