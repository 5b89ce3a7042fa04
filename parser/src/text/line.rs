//! One line of trace text → an event record, a marker, metadata, or a
//! reason why it is none of these.
//!
//! Grammar of an event line (SPEC §2.1–2.3):
//! ```text
//! [INSTANCE: ] COMM-PID [(TGID)] [CPU] [FLAGS] TIMESTAMP: EVENT: PAYLOAD   tracefs / trace-cmd report
//! COMM PID[/TID] [CPU] TIMESTAMP: SYSTEM:EVENT: PAYLOAD                   perf script
//! COMM-PID CPUFLAGS TIMESTAMP: EVENT: PAYLOAD                             trace-cmd report -l
//! ```

use super::fields::{FieldSpan, Span};
use crate::event::Context;
use memchr::memchr;
use nom::bytes::complete::{tag, take_while1};
use nom::character::complete::{digit1, space0, space1};
use nom::sequence::{delimited, preceded, tuple};
use nom::IResult;

/// Which text dialect a line looked like (for format detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `comm-pid [cpu] flags ts:` — tracefs text (or report with flags).
    Flags,
    /// `comm-pid [cpu] ts:` — trace-cmd report, or tracefs without flags.
    NoFlags,
    /// `comm pid [cpu] ts: sys:event:` — perf script.
    Perf,
    /// `comm-pid cpuFLAGS ts:` — trace-cmd report -l.
    Latency,
}

/// An event line, as spans of the chunk buffer.
#[derive(Clone, Copy, Debug)]
pub struct EvRec {
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: i32,
    pub ctx: Context,
    pub comm: Span,
    /// `len == 0`: no system named.
    pub system: Span,
    pub name: Span,
    /// What the event is, resolved from the name here, in the parser worker.
    pub kind: crate::EventKind,
    pub instance: Span,
    pub line: Span,
    /// The payload after `EVENT: `, split lazily into fields.
    pub payload: Span,
    /// Fields already split while parsing (syscall and function lines):
    /// a range of the chunk's field list. `None`: split `payload` on access.
    pub fields: Option<(u32, u32)>,
    /// Line index within the chunk (0-based).
    pub line_no: u32,
    pub style: Style,
    /// Timestamp had no decimal point (raw counter clock).
    pub raw_clock: bool,
}

/// What a line is.
#[derive(Debug)]
pub enum Parsed {
    Event(EvRec),
    /// Comments, headers, blank lines.
    Meta,
    Lost {
        cpu: u32,
        count: Option<u64>,
    },
    BufferStarted {
        cpu: u32,
    },
    Unparsed(&'static str),
}

/// Side buffers an event line's parse writes into.
pub struct Out<'o> {
    pub fields: &'o mut Vec<FieldSpan>,
    pub extra: &'o mut String,
}

/// Parse one line. `base` is the line's offset in the chunk buffer.
pub fn parse_line(line: &str, base: usize, line_no: u32, out: &mut Out<'_>) -> Parsed {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let t = &line[skip_ws(line.as_bytes(), 0)..];
    let Some(&c0) = t.as_bytes().first() else {
        return Parsed::Meta;
    };
    match c0 {
        b'#' => {
            return match buffer_started(t) {
                Some(cpu) => Parsed::BufferStarted { cpu },
                None => Parsed::Meta,
            }
        }
        b'C' if t.starts_with("CPU") => {
            if let Some(p) = lost_marker(t) {
                return p;
            }
            // trace-cmd report: `CPU 3 is empty`
            if t.ends_with(" is empty") && t[3..t.len() - 9].trim().bytes().all(is_digit) {
                return Parsed::Meta;
            }
        }
        b'c' if t.starts_with("cpus=") => return Parsed::Meta,
        b'v' if t.starts_with("version = ") => return Parsed::Meta,
        _ => {}
    }
    match event_line(line, base, line_no, out) {
        Ok(r) => Parsed::Event(r),
        Err(why) => Parsed::Unparsed(why),
    }
}

/// `##### CPU 2 buffer started ####`
fn buffer_started(t: &str) -> Option<u32> {
    let r: IResult<&str, &str> = preceded(
        tuple((take_while1(|c| c == '#'), space1, tag("CPU"), space1)),
        digit1,
    )(t);
    let (rest, cpu) = r.ok()?;
    if !rest.trim_start().starts_with("buffer started") {
        return None;
    }
    cpu.parse().ok()
}

/// `CPU:0 [LOST 123 EVENTS]` (tracefs), `CPU:0 [123 EVENTS DROPPED]` or
/// `CPU:0 [EVENTS DROPPED]` (trace-cmd report).
fn lost_marker(t: &str) -> Option<Parsed> {
    let r: IResult<&str, (&str, &str)> = tuple((
        preceded(tag("CPU:"), digit1),
        delimited(
            preceded(space0, tag("[")),
            take_while1(|c| c != ']'),
            tag("]"),
        ),
    ))(t);
    let (_, (cpu, inner)) = r.ok()?;
    let cpu = cpu.parse().ok()?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    let count = match words.as_slice() {
        ["LOST", n, "EVENTS"] => Some(n.parse().ok()?),
        [n, "EVENTS", "DROPPED"] => Some(n.parse().ok()?),
        ["EVENTS", "DROPPED"] | ["LOST", "EVENTS"] => None,
        _ => return None,
    };
    Some(Parsed::Lost { cpu, count })
}

#[inline]
fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Find `[digits]` (the CPU column); returns (open index, close index, cpu).
#[inline]
fn find_cpu(b: &[u8]) -> Option<(usize, usize, u32)> {
    let mut from = 0;
    while let Some(i) = memchr(b'[', &b[from..]) {
        let i = from + i;
        let mut j = i + 1;
        while j < b.len() && is_digit(b[j]) {
            j += 1;
        }
        if j > i + 1 && j < b.len() && b[j] == b']' && j - i - 1 <= 7 && i > 0 {
            let cpu = parse_u64(&b[i + 1..j])? as u32;
            return Some((i, j, cpu));
        }
        from = i + 1;
    }
    None
}

#[inline]
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !is_digit(c) {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// Timestamp `123.456789` (µs), `123.456789012` (ns) or a raw counter `123456`.
/// Returns (ns, raw_clock).
#[inline]
fn parse_ts(b: &[u8]) -> Option<(u64, bool)> {
    match memchr(b'.', b) {
        Some(dot) => {
            let secs = parse_u64(&b[..dot])?;
            let frac = &b[dot + 1..];
            if frac.is_empty() || frac.len() > 9 {
                return None;
            }
            let f = parse_u64(frac)?;
            let scale = 10u64.pow(9 - frac.len() as u32);
            Some((
                secs.checked_mul(1_000_000_000)?.checked_add(f * scale)?,
                false,
            ))
        }
        None => Some((parse_u64(b)?, true)),
    }
}

/// Decode a flags column (`d..2.`, `dNh2`, `d.Z1.`). None if it is not one.
fn parse_flags(f: &[u8]) -> Option<Context> {
    if f.len() < 3 || f.len() > 6 {
        return None;
    }
    let mut ctx = Context {
        known: true,
        ..Context::UNKNOWN
    };
    match f[0] {
        b'd' => ctx.irqs_off = true,
        b'D' => {
            ctx.irqs_off = true;
            ctx.bh_off = true
        }
        b'b' => ctx.bh_off = true,
        b'X' | b'.' => {}
        _ => return None,
    }
    if !matches!(f[1], b'N' | b'n' | b'p' | b'.' | b'L' | b'l' | b'B' | b'b') {
        return None;
    }
    match f[2] {
        b'Z' => {
            ctx.nmi = true;
            ctx.hardirq = true
        }
        b'z' => ctx.nmi = true,
        b'H' => {
            ctx.hardirq = true;
            ctx.softirq = true
        }
        b'h' => ctx.hardirq = true,
        b's' => ctx.softirq = true,
        b'.' => {}
        _ => return None,
    }
    if let Some(&p) = f.get(3) {
        match p {
            b'.' => ctx.preempt_depth = Some(0),
            b'0'..=b'9' => ctx.preempt_depth = Some(p - b'0'),
            b'a'..=b'f' => ctx.preempt_depth = Some(p - b'a' + 10),
            _ => return None,
        }
    }
    for &c in f.iter().skip(4) {
        if !(c == b'.' || c.is_ascii_hexdigit()) {
            return None;
        }
    }
    Some(ctx)
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    // Trace text is padded with runs of spaces: skip eight at a time.
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    while i + 8 <= b.len() && u64::from_ne_bytes(b[i..i + 8].try_into().unwrap()) == SPACES {
        i += 8;
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

#[inline]
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
        i += 1;
    }
    i
}

fn event_line(
    line: &str,
    base: usize,
    line_no: u32,
    out: &mut Out<'_>,
) -> Result<EvRec, &'static str> {
    let b = line.as_bytes();
    let (head_end, after_cpu, cpu, latency_flags) = match find_cpu(b) {
        Some((lb, rb, cpu)) => (lb, rb + 1, cpu, None),
        None => latency_column(b).ok_or("no [CPU] column")?,
    };

    // --- task: COMM-PID, COMM PID, COMM PID/TID, optional (TGID) and instance prefix
    let mut h = b[..head_end].len();
    while h > 0 && (b[h - 1] == b' ' || b[h - 1] == b'\t') {
        h -= 1;
    }
    if h > 0 && b[h - 1] == b')' {
        // TGID column `(  1234)` / `(-------)`
        let open = b[..h]
            .iter()
            .rposition(|&c| c == b'(')
            .ok_or("unbalanced TGID column")?;
        h = open;
        while h > 0 && (b[h - 1] == b' ' || b[h - 1] == b'\t') {
            h -= 1;
        }
    }
    let pid_end = h;
    let mut p = pid_end;
    while p > 0 && is_digit(b[p - 1]) {
        p -= 1;
    }
    if p == pid_end {
        return Err("no PID before the [CPU] column");
    }
    let mut pid = parse_u64(&b[p..pid_end]).ok_or("PID out of range")? as i64;
    let mut perf_tid = false;
    if p > 1 && b[p - 1] == b'/' && is_digit(b[p - 2]) {
        // perf `PID/TID`: the tracer's pid is the thread id.
        perf_tid = true;
        p -= 1;
        while p > 0 && is_digit(b[p - 1]) {
            p -= 1;
        }
    }
    if p == 0 {
        return Err("no task name before the PID");
    }
    let sep = b[p - 1];
    let (style_perf, comm_end) = match sep {
        b'-' if !perf_tid => (false, p - 1),
        b' ' | b'\t' => (true, p - 1),
        _ => return Err("PID not separated from the task name"),
    };
    let mut cs = skip_ws(b, 0);
    let mut ce = comm_end;
    while ce > cs && (b[ce - 1] == b' ' || b[ce - 1] == b'\t') {
        ce -= 1;
    }
    if cs >= ce {
        // ` 5 [000] …`: only blanks before the PID (the kernel always prints
        // a comm, `<...>` when it does not know it).
        return Err("no task name before the PID");
    }
    if pid > i32::MAX as i64 {
        pid = -1;
    }
    // Instance prefix `name: comm-pid` (trace-cmd report with several buffers).
    let mut instance = Span::default();
    if let Some(k) = find_colon_space(&b[cs..ce]) {
        instance = Span::new(base + cs, base + cs + k);
        cs = skip_ws(b, cs + k + 1);
    }
    let comm = Span::new(base + cs, base + ce);

    // --- flags column and timestamp
    let mut i = skip_ws(b, after_cpu);
    let mut ctx = Context::UNKNOWN;
    let mut style = if style_perf {
        Style::Perf
    } else {
        Style::NoFlags
    };
    if let Some(c) = latency_flags {
        ctx = c;
        style = Style::Latency;
    }
    let mut te = token_end(b, i);
    if te == i {
        return Err("line ends after the [CPU] column");
    }
    if b[te - 1] != b':' {
        // not the timestamp: must be the flags column
        ctx = parse_flags(&b[i..te]).ok_or("unrecognised flags column")?;
        style = Style::Flags;
        i = skip_ws(b, te);
        te = token_end(b, i);
        if te == i || b[te - 1] != b':' {
            return Err("no TIMESTAMP: after the flags column");
        }
    }
    let (ts_ns, raw_clock) = parse_ts(&b[i..te - 1]).ok_or("malformed timestamp")?;
    i = skip_ws(b, te);

    // --- event name: `name:`, `system:name:`, `sys_x(args)`, `sys_x -> ret`, `func <-parent`
    let ns = i;
    i = match memchr::memchr3(b':', b'(', b' ', &b[i..]) {
        Some(k) => i + k,
        None => b.len(),
    };
    if let Some(t) = memchr(b'\t', &b[ns..i]) {
        i = ns + t;
    }
    if i == ns {
        return Err("no event name after the timestamp");
    }
    let mut system = Span::default();
    let mut name = Span::new(base + ns, base + i);
    let payload_start;
    let fields_start = out.fields.len() as u32;
    let payload_end = line.len();
    if i < b.len() && b[i] == b':' {
        let after = i + 1;
        if after < b.len() && b[after] != b' ' && b[after] != b'\t' {
            // perf `system:event:`
            let mut k = after;
            while k < b.len() && b[k] != b':' && b[k] != b' ' {
                k += 1;
            }
            if k < b.len() && b[k] == b':' {
                system = name;
                name = Span::new(base + after, base + k);
                i = k;
            }
        }
        payload_start = skip_ws(b, i + 1);
    } else if i < b.len() && b[i] == b'(' {
        // syscall entry `sys_open(filename: 7f.., flags: 0)` → syscalls:sys_enter_open
        let stem = &line[ns..i];
        name = synth_name(
            out.extra,
            "sys_enter_",
            stem.strip_prefix("sys_").unwrap_or(stem),
        );
        let args_start = i + 1;
        payload_start = usize::MAX;
        let close = line
            .rfind(')')
            .filter(|&c| c > i)
            .ok_or("unterminated syscall arguments")?;
        let args = &line[args_start..close];
        let mut off = 0;
        for part in args.split(", ") {
            if let Some(c) = part.find(": ") {
                let s = base + args_start + off;
                // The kernel prints syscall arguments in hex without `0x`.
                let value = synth_name(out.extra, "0x", &part[c + 2..]);
                out.fields.push(FieldSpan {
                    name: super::fields::Name::Span(Span::new(s, s + c)),
                    value,
                });
            }
            off += part.len() + 2;
        }
        system = synth_span(out.extra, "syscalls");
    } else {
        payload_start = usize::MAX;
        let rest = &line[skip_ws(b, i)..];
        if let Some(ret) = rest.strip_prefix("-> ") {
            // syscall exit `sys_open -> 0x3`
            let stem = &line[ns..i];
            name = synth_name(
                out.extra,
                "sys_exit_",
                stem.strip_prefix("sys_").unwrap_or(stem),
            );
            system = synth_span(out.extra, "syscalls");
            let s = base + line.len() - ret.len();
            out.fields.push(FieldSpan {
                name: super::fields::Name::Static("ret"),
                value: Span::new(s, base + line.len()),
            });
        } else if let Some(parent) = rest.strip_prefix("<-") {
            // function tracer `func <-parent`
            let ip = name;
            name = synth_span(out.extra, "function");
            system = synth_span(out.extra, "ftrace");
            out.fields.push(FieldSpan {
                name: super::fields::Name::Static("ip"),
                value: ip,
            });
            let s = base + line.len() - parent.len();
            out.fields.push(FieldSpan {
                name: super::fields::Name::Static("parent_ip"),
                value: Span::new(s, base + line.len()),
            });
        } else {
            return Err("no ':' after the event name");
        }
    }
    let fields_len = out.fields.len() as u32 - fields_start;
    let kind = crate::EventKind::of(if name.start & Span::EXTRA != 0 {
        name.get("", out.extra)
    } else {
        let s = name.start as usize - base;
        line.get(s..s + name.len as usize).unwrap_or("")
    });
    let precomputed = payload_start == usize::MAX;
    let payload = if precomputed {
        Span::default()
    } else {
        Span::new(base + payload_start, base + payload_end)
    };
    Ok(EvRec {
        ts_ns,
        cpu,
        pid: pid as i32,
        ctx,
        comm,
        system,
        name,
        kind,
        instance,
        line: Span::new(base, base + line.len()),
        payload,
        fields: precomputed.then_some((fields_start, fields_len)),
        line_no,
        style,
        raw_clock,
    })
}

/// `name: ` inside the task column: an instance prefix.
fn find_colon_space(b: &[u8]) -> Option<usize> {
    let k = memchr(b':', b)?;
    if k > 0 && k + 1 < b.len() && (b[k + 1] == b' ' || b[k + 1] == b'\t') {
        Some(k)
    } else {
        None
    }
}

/// trace-cmd report -l: `bash-1102   0d..1.  123.456: ...` — a token that is
/// CPU digits glued to a flags column. Returns (task end, token end, cpu, ctx).
fn latency_column(b: &[u8]) -> Option<(usize, usize, u32, Option<Context>)> {
    // The timestamp token is the first token ending in ':' that parses.
    let mut i = 0;
    let mut prev: Option<(usize, usize)> = None;
    while i < b.len() {
        i = skip_ws(b, i);
        let e = token_end(b, i);
        if e > i && b[e - 1] == b':' && parse_ts(&b[i..e - 1]).is_some() {
            let (ps, pe) = prev?;
            let tok = &b[ps..pe];
            let d = tok.iter().position(|c| !is_digit(*c))?;
            if d == 0 {
                return None;
            }
            let cpu = parse_u64(&tok[..d])? as u32;
            let ctx = parse_flags(&tok[d..])?;
            return Some((ps, pe, cpu, Some(ctx)));
        }
        prev = Some((i, e));
        i = e;
    }
    None
}

fn synth_span(extra: &mut String, s: &str) -> Span {
    let start = extra.len();
    extra.push_str(s);
    Span {
        start: start as u32 | Span::EXTRA,
        len: s.len() as u32,
    }
}

fn synth_name(extra: &mut String, prefix: &str, stem: &str) -> Span {
    let start = extra.len();
    extra.push_str(prefix);
    extra.push_str(stem);
    Span {
        start: start as u32 | Span::EXTRA,
        len: (extra.len() - start) as u32,
    }
}
