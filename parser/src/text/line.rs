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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// What the lines before left for the next (consecutive lines mostly
    /// repeat their head).
    pub last: LastLine,
}

/// The head of the last event line the fast path read (its bytes up to the
/// timestamp, and what they say), and its last flags column: a line that
/// repeats the bytes is known up to its timestamp without reading them
/// again (three lines in four in real traces).
#[derive(Clone, Copy)]
pub struct LastLine {
    /// `bytes[..head.ts_at]`: the head's bytes (`ts_at == 0`: none yet).
    bytes: [u8; HEAD_MAX],
    head: Head,
    flags: LastFlags,
    /// `name_bytes[..name.len]`: the last event name read the long way, with
    /// the bytes that decided its reading (`len == 0`: none yet).
    name_bytes: [u8; NAME_MAX],
    name: NameMemo,
}

/// Heads longer than this are not remembered.
const HEAD_MAX: usize = 64;
/// Event names (with their system and separator) longer than this are not
/// remembered.
const NAME_MAX: usize = 48;

/// What the bytes from an event name's start (a line's `ns`) up to and
/// including the byte after its last `:` say, positions relative to `ns`:
/// a line with the same bytes there has the same system, name, kind and
/// payload start (`name_end` and the system scan read no further).
#[derive(Clone, Copy, Default)]
struct NameMemo {
    /// How many bytes were compared (`0`: nothing remembered).
    len: u8,
    system: (u8, u8),
    name: (u8, u8),
    /// Where the blanks before the payload start.
    payload_from: u8,
    kind: crate::EventKind,
}

impl Default for LastLine {
    fn default() -> LastLine {
        LastLine {
            bytes: [0; HEAD_MAX],
            head: Head {
                cpu: 0,
                pid: 0,
                ctx: Context::UNKNOWN,
                style: Style::NoFlags,
                comm: (0, 0),
                instance: None,
                ts_at: 0,
            },
            flags: LastFlags::default(),
            name_bytes: [0; NAME_MAX],
            name: NameMemo::default(),
        }
    }
}

/// A flags column's bytes (up to six, with its length in the top byte) and
/// what [`parse_flags`] made of them.
#[derive(Clone, Copy, Default)]
pub struct LastFlags {
    key: u64,
    ctx: Option<Context>,
}

impl LastFlags {
    /// [`parse_flags`] of `b[i..te]`, remembered for the next line.
    #[inline(always)]
    fn parse(&mut self, b: &[u8], i: usize, te: usize) -> Option<Context> {
        let len = te - i;
        let key = match word(b, i) {
            Some(w) if len <= 6 => (w & (u64::MAX >> (8 * (8 - len)))) | (len as u64) << 56,
            _ => return parse_flags(&b[i..te]),
        };
        if key != self.key {
            *self = LastFlags {
                key,
                ctx: parse_flags(&b[i..te]),
            };
        }
        self.ctx
    }
}

/// Parse one line. `base` is the line's offset in the chunk buffer.
pub fn parse_line(line: &str, base: usize, line_no: u32, out: &mut Out<'_>) -> Parsed {
    match usual_event(line, base, line_no, &mut out.last) {
        Some(r) => Parsed::Event(r),
        None => parse_unusual(line, base, line_no, out),
    }
}

/// A line without its `\r`, where its first word starts, and whether that
/// word may open a comment, header or marker (`#`, `CPU`, `cpus=`,
/// `version = `) rather than an event.
#[inline(always)]
fn prelude(line: &str) -> (&str, usize, bool) {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (cs, maybe_marker) = first_word(line);
    (line, cs, maybe_marker)
}

/// [`prelude`] of a line without its `\r`.
#[inline(always)]
fn first_word(line: &str) -> (usize, bool) {
    let cs = skip_ws(line.as_bytes(), 0);
    let t = &line[cs..];
    let maybe_marker = match t.as_bytes().first() {
        None | Some(b'#') => true,
        Some(b'C') => t.starts_with("CPU"),
        Some(b'c') => t.starts_with("cpus="),
        Some(b'v') => t.starts_with("version = "),
        _ => false,
    };
    (cs, maybe_marker)
}

/// An event line of the usual shapes (see [`fast_event_line`]), or `None`:
/// then [`parse_unusual`] says what the line is. Together they are
/// [`parse_line`]; a reader of many lines calls this first, inlined.
#[inline]
pub fn usual_event(line: &str, base: usize, line_no: u32, last: &mut LastLine) -> Option<EvRec> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    fast_event_line(line, base, line_no, last)
}

/// A line [`usual_event`] did not take: a comment, header or marker, an
/// event line by the general grammar, or why it is none of these.
pub fn parse_unusual(line: &str, base: usize, line_no: u32, out: &mut Out<'_>) -> Parsed {
    let (line, cs, maybe_marker) = prelude(line);
    let t = &line[cs..];
    if maybe_marker {
        if t.is_empty() {
            return Parsed::Meta;
        }
        if t.starts_with('#') {
            return match buffer_started(t) {
                Some(cpu) => Parsed::BufferStarted { cpu },
                None => Parsed::Meta,
            };
        }
        if t.starts_with("CPU") {
            if let Some(p) = lost_marker(t) {
                return p;
            }
            // trace-cmd report: `CPU 3 is empty`
            if t.ends_with(" is empty") && t[3..t.len() - 9].trim().bytes().all(is_digit) {
                return Parsed::Meta;
            }
        } else {
            // `cpus=`, `version = `: trace-cmd report's header
            return Parsed::Meta;
        }
    }
    match event_line(line, base, line_no, out) {
        Ok(r) => Parsed::Event(r),
        Err(why) => Parsed::Unparsed(why),
    }
}

const LO: u64 = u64::from_ne_bytes([0x01; 8]);
const HI: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of every zero byte of `x` (and maybe of bytes above the
/// first zero): the lowest flagged byte is exactly the first zero byte.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The eight bytes at `b[i..]`, as a little-endian word (byte `i` lowest).
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i + 8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
}

/// The first `needle` in `b[from..]`, eight bytes at a time: for the short
/// searches of a line's head, where a `memchr` call costs more than the
/// search.
#[inline(always)]
fn find_byte(b: &[u8], from: usize, needle: u8) -> Option<usize> {
    let pat = LO.wrapping_mul(needle as u64);
    let mut i = from;
    while let Some(w) = word(b, i) {
        let t = zero_bytes(w ^ pat);
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < b.len() {
        if b[i] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Where an event name starting at `b[from]` ends: the first `:` (`name:`),
/// `(` (syscall entry) or blank (syscall exit, function tracer), or the
/// length.
#[inline(always)]
fn name_end(b: &[u8], from: usize) -> usize {
    const COLON: u64 = u64::from_ne_bytes([b':'; 8]);
    const PAREN: u64 = u64::from_ne_bytes([b'('; 8]);
    const SPACE: u64 = u64::from_ne_bytes([b' '; 8]);
    const TAB: u64 = u64::from_ne_bytes([b'\t'; 8]);
    let mut i = from;
    while let Some(w) = word(b, i) {
        let t = zero_bytes(w ^ COLON)
            | zero_bytes(w ^ PAREN)
            | zero_bytes(w ^ SPACE)
            | zero_bytes(w ^ TAB);
        if t != 0 {
            return i + (t.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b':' | b'(' | b' ' | b'\t') {
        i += 1;
    }
    i
}

/// An event line of the shapes nearly every line has — `COMM-PID [CPU]
/// [FLAGS] SECS.FRAC: NAME: PAYLOAD` (tracefs, trace-cmd report) and `COMM
/// PID [CPU] TS: SYS:NAME: PAYLOAD` (perf script) — in one forward pass
/// without the general grammar's searches. `None` whenever the line is of
/// another shape or the pass is unsure (a TGID column, a `[` in the task
/// name, a perf `PID/TID`, a syscall or function line, anything malformed):
/// [`parse_unusual`] then decides. Where it returns a record, it is the one
/// [`parse_unusual`] returns (`tests::the_fast_path_agrees_with_the_grammar_*`).
///
/// `line` is without its `\r`; a line whose first word may open a comment,
/// header or marker ([`first_word`]) is declined.
#[inline]
fn fast_event_line(line: &str, base: usize, line_no: u32, last: &mut LastLine) -> Option<EvRec> {
    let b = line.as_bytes();
    let n = b.len();
    // --- the head, up to the timestamp: the last line's, when this line
    // repeats its bytes (then the same reading of them follows: its first
    // word, inside them, is no marker's), or read
    let k = last.head.ts_at;
    let h = if k > 0 && k < n && is_digit(b[k]) && same_bytes(b, &last.bytes, k) {
        last.head
    } else {
        let (cs, maybe_marker) = first_word(line);
        if maybe_marker {
            return None;
        }
        let h = read_head(b, cs, &mut last.flags)?;
        // Remembered only when a digit follows: then any flags column
        // ended at a blank inside the head, and a line repeating the
        // head's bytes reads them the same way.
        if h.ts_at <= HEAD_MAX && h.ts_at < n && is_digit(b[h.ts_at]) {
            last.bytes[..h.ts_at].copy_from_slice(&b[..h.ts_at]);
            last.head = h;
        }
        h
    };
    let span = |(s, e): (u32, u32)| Span::new(base + s as usize, base + e as usize);
    let (cpu, pid, ctx, style) = (h.cpu, h.pid, h.ctx, h.style);
    let comm = span(h.comm);
    let instance = h.instance.map_or(Span::default(), span);
    let mut i = h.ts_at;
    // seconds (or a raw clock) of up to 7 digits, in one word
    let (secs, k) = lead_digits(b, i);
    if k == 0 || k > 7 {
        return None;
    }
    i += k;
    let (ts_ns, raw_clock) = if i < n && b[i] == b'.' {
        // a fraction of 1 to 9 digits
        i += 1;
        let (mut frac, mut fd) = lead_digits(b, i);
        if fd == 8 && i + 8 < n && is_digit(b[i + 8]) {
            frac = frac * 10 + (b[i + 8] - b'0') as u64;
            fd = 9;
        }
        i += fd;
        if fd == 0 || (i < n && is_digit(b[i])) {
            return None;
        }
        // a fraction of fd digits, in ns
        const SCALE: [u64; 10] = [
            0,
            100_000_000,
            10_000_000,
            1_000_000,
            100_000,
            10_000,
            1_000,
            100,
            10,
            1,
        ];
        (secs * 1_000_000_000 + frac * SCALE[fd], false)
    } else {
        (secs, true)
    };
    // the token ends with the ':' right here
    if i >= n || b[i] != b':' || (i + 1 < n && b[i + 1] != b' ' && b[i + 1] != b'\t') {
        return None;
    }
    i = skip_ws(b, i + 1);

    // --- event name: `name:` or perf's `system:name:`; the last one's
    // when this line repeats the bytes that decided it
    let ns = i;
    let m = last.name;
    let (system, name, kind, payload_start) = if m.len > 0
        && ns + m.len as usize <= n
        && same_bytes(&b[ns..], &last.name_bytes, m.len as usize)
    {
        let span = |(s, e): (u8, u8)| Span::new(base + ns + s as usize, base + ns + e as usize);
        let system = if m.system.1 > 0 {
            span(m.system)
        } else {
            Span::default()
        };
        let payload_start = skip_ws(b, ns + m.payload_from as usize);
        (system, span(m.name), m.kind, payload_start)
    } else {
        i = name_end(b, i);
        if i == ns || i >= n || b[i] != b':' {
            return None;
        }
        let mut system = None;
        let mut name = (ns, i);
        // where the bytes that decided the reading end
        let mut decided = None;
        let after = i + 1;
        if after < n && b[after] != b' ' && b[after] != b'\t' {
            let mut k = after;
            while k < n && b[k] != b':' && b[k] != b' ' {
                k += 1;
            }
            if k < n && b[k] == b':' {
                system = Some(name);
                name = (after, k);
                i = k;
                decided = Some(k + 1);
            }
        } else if after < n {
            decided = Some(after + 1);
        }
        let payload_start = skip_ws(b, i + 1);
        let kind = crate::EventKind::of(&line[name.0..name.1]);
        if let Some(d) = decided.filter(|&d| d - ns <= NAME_MAX) {
            let rel = |(s, e): (usize, usize)| ((s - ns) as u8, (e - ns) as u8);
            last.name_bytes[..d - ns].copy_from_slice(&b[ns..d]);
            last.name = NameMemo {
                len: (d - ns) as u8,
                system: system.map_or((0, 0), rel),
                name: rel(name),
                payload_from: (i + 1 - ns) as u8,
                kind,
            };
        }
        let span = |(s, e): (usize, usize)| Span::new(base + s, base + e);
        (
            system.map_or(Span::default(), span),
            span(name),
            kind,
            payload_start,
        )
    };
    Some(EvRec {
        ts_ns,
        cpu,
        pid,
        ctx,
        comm,
        system,
        name,
        kind,
        instance,
        line: Span::new(base, base + n),
        payload: Span::new(base + payload_start, base + n),
        fields: None,
        line_no,
        style,
        raw_clock,
    })
}

/// What the head of an event line says (positions relative to the line).
#[derive(Clone, Copy)]
struct Head {
    cpu: u32,
    pid: i32,
    ctx: Context,
    style: Style,
    comm: (u32, u32),
    instance: Option<(u32, u32)>,
    /// Where the timestamp starts.
    ts_at: usize,
}

/// The head of an event line of the usual shapes, up to its timestamp:
/// `COMM-PID [CPU] [FLAGS] ` or perf's `COMM PID [CPU] `; `cs` is where
/// the comm starts. `None` where [`fast_event_line`] declines.
#[inline(always)]
fn read_head(b: &[u8], cs: usize, flags: &mut LastFlags) -> Option<Head> {
    let n = b.len();
    // --- the CPU column: the first `[`, up to 7 digits, `]`
    let lb = find_byte(b, 0, b'[')?;
    let (cpu, k) = lead_digits(b, lb + 1);
    let j = lb + 1 + k;
    if lb == 0 || k == 0 || k > 7 || j >= n || b[j] != b']' {
        return None;
    }
    let after_cpu = j + 1;

    // --- task: COMM-PID or COMM PID (the pid up to 7 digits, so that it is
    // all in one word; longer ones by the general grammar)
    let pid_end = trim_end_ws(b, lb);
    let (pid, k) = trail_digits(b, pid_end);
    let p = pid_end - k;
    // no pid, a longer one, or a perf `PID/TID`: the general grammar
    if k == 0 || k > 7 || p < 2 {
        return None;
    }
    let (style_perf, comm_end) = match b[p - 1] {
        b'-' => (false, p - 1),
        b' ' | b'\t' => (true, p - 1),
        _ => return None,
    };
    let mut cs = cs;
    let ce = trim_end_ws(b, comm_end);
    if cs >= ce {
        return None;
    }
    // an instance prefix `name: comm-pid`
    let mut instance = None;
    if let Some(k) = find_byte(&b[..ce], cs, b':') {
        if k > cs && k + 1 < ce && (b[k + 1] == b' ' || b[k + 1] == b'\t') {
            instance = Some((cs as u32, k as u32));
            cs = skip_ws(b, k + 1);
        }
    }

    // --- flags column, up to the timestamp
    let mut i = skip_ws(b, after_cpu);
    let mut ctx = Context::UNKNOWN;
    let mut style = if style_perf {
        Style::Perf
    } else {
        Style::NoFlags
    };
    if i < n && !is_digit(b[i]) {
        let te = token_end(b, i);
        if te == i || b[te - 1] == b':' {
            return None;
        }
        ctx = flags.parse(b, i, te)?;
        style = Style::Flags;
        i = skip_ws(b, te);
    }
    Some(Head {
        cpu: cpu as u32,
        pid: pid as i32,
        ctx,
        style,
        comm: (cs as u32, ce as u32),
        instance,
        ts_at: i,
    })
}

/// `a[..k] == b[..k]` (both at least `k` long), eight bytes at a time: the
/// head of a line against the last one's, where a `memcmp` call costs more
/// than the compare.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8], k: usize) -> bool {
    if k < 8 {
        return a[..k] == b[..k];
    }
    let mut diff = 0u64;
    let mut i = 0;
    while i + 8 <= k {
        diff |= word(a, i).unwrap() ^ word(b, i).unwrap();
        i += 8;
    }
    // the last (overlapping) word covers the rest
    diff |= word(a, k - 8).unwrap() ^ word(b, k - 8).unwrap();
    diff == 0
}

const ZEROS: u64 = u64::from_ne_bytes([b'0'; 8]);

/// The digit values of the eight bytes of `w` (`w ^ '0'`), and the high
/// bit of every byte that is not an ASCII digit (exact in every byte: no
/// carries between bytes).
#[inline(always)]
fn digit_bytes(w: u64) -> (u64, u64) {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const TO_TEN: u64 = u64::from_ne_bytes([0x76; 8]);
    let t = w ^ ZEROS;
    (t, (((t & LOW7) + TO_TEN) | t) & HI)
}

/// The number written by the digit values in the top bytes of `v`, the
/// bytes below them zero (leading zeros): eight digits in three multiplies
/// (Lemire, "Faster integer parsing", 2022).
#[inline(always)]
fn eight_digits(v: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    ((v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2)))
        >> 32
}

/// The digits starting at `b[i]`: their value and how many (8 meaning 8
/// or more: the value is then of the first eight).
#[inline(always)]
fn lead_digits(b: &[u8], i: usize) -> (u64, usize) {
    let Some(w) = word(b, i) else {
        // near the end of the line: one at a time
        let mut v = 0u64;
        let mut k = 0;
        while i + k < b.len() && is_digit(b[i + k]) && k < 8 {
            v = v * 10 + (b[i + k] - b'0') as u64;
            k += 1;
        }
        return (v, k);
    };
    let (t, nd) = digit_bytes(w);
    let k = (nd.trailing_zeros() / 8) as usize;
    // the k digits to the top
    (top_digits(t << (8 * (8 - k.max(1))), k), k)
}

/// The digits ending just before `b[end]`: their value and how many (8
/// meaning 8 or more).
#[inline(always)]
fn trail_digits(b: &[u8], end: usize) -> (u64, usize) {
    let Some(w) = end.checked_sub(8).and_then(|s| word(b, s)) else {
        // near the start of the line: one at a time
        let (mut v, mut k, mut scale) = (0u64, 0, 1u64);
        while k < end && is_digit(b[end - 1 - k]) && k < 8 {
            v += (b[end - 1 - k] - b'0') as u64 * scale;
            scale *= 10;
            k += 1;
        }
        return (v, k);
    };
    let (t, nd) = digit_bytes(w);
    let k = (nd.leading_zeros() / 8) as usize;
    (top_digits(t, k), k)
}

/// The number the top `k` bytes of `t` write (digit values), the bytes
/// below them ignored.
#[inline(always)]
fn top_digits(t: u64, k: usize) -> u64 {
    match k {
        0 => 0,
        8 => eight_digits(t),
        // zeros below the digits: leading zeros
        _ => eight_digits(t & !(u64::MAX >> (8 * k))),
    }
}

/// `b[..end]` without its trailing blanks: the new end.
#[inline(always)]
fn trim_end_ws(b: &[u8], mut end: usize) -> usize {
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    loop {
        match end.checked_sub(8).and_then(|s| word(b, s)) {
            Some(w) => {
                let x = w ^ SPACES;
                if x == 0 {
                    end -= 8;
                    continue;
                }
                end -= (x.leading_zeros() / 8) as usize;
            }
            None => {
                while end > 0 && b[end - 1] == b' ' {
                    end -= 1;
                }
            }
        }
        if end > 0 && b[end - 1] == b'\t' {
            end -= 1;
            continue;
        }
        return end;
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
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
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

/// What each byte means in each place of a flags column, looked up rather
/// than matched (the column is on nearly every line).
struct FlagTables {
    /// Column 1: 0x80 valid, 1 irqs off, 2 BH off.
    irqs: [u8; 256],
    /// Column 2 (need-resched): valid.
    resched: [bool; 256],
    /// Column 3: 0x80 valid, 1 NMI, 2 hardirq, 4 softirq.
    ctx: [u8; 256],
    /// Column 4: the preempt depth, 0xff invalid.
    depth: [u8; 256],
    /// Columns 5 and 6: valid (`.` or a hex digit).
    rest: [bool; 256],
}

static FLAGS: FlagTables = {
    let mut t = FlagTables {
        irqs: [0; 256],
        resched: [false; 256],
        ctx: [0; 256],
        depth: [0xff; 256],
        rest: [false; 256],
    };
    t.irqs[b'd' as usize] = 0x81;
    t.irqs[b'D' as usize] = 0x83;
    t.irqs[b'b' as usize] = 0x82;
    t.irqs[b'X' as usize] = 0x80;
    t.irqs[b'.' as usize] = 0x80;
    let resched = b"NnpLlBb.";
    let mut k = 0;
    while k < resched.len() {
        t.resched[resched[k] as usize] = true;
        k += 1;
    }
    t.ctx[b'Z' as usize] = 0x83;
    t.ctx[b'z' as usize] = 0x81;
    t.ctx[b'H' as usize] = 0x86;
    t.ctx[b'h' as usize] = 0x82;
    t.ctx[b's' as usize] = 0x84;
    t.ctx[b'.' as usize] = 0x80;
    t.depth[b'.' as usize] = 0;
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_digit() {
            t.depth[c] = b - b'0';
        } else if b >= b'a' && b <= b'f' {
            t.depth[c] = b - b'a' + 10;
        }
        t.rest[c] = b == b'.' || b.is_ascii_hexdigit();
        c += 1;
    }
    t
};

/// Decode a flags column (`d..2.`, `dNh2`, `d.Z1.`): irqs-off, need-resched,
/// context (`Z` NMI in hardirq, `z` NMI, `H` hardirq in softirq, `h`, `s`),
/// preempt depth (hex), migrate-disable. None if it is not one.
fn parse_flags(f: &[u8]) -> Option<Context> {
    if f.len() < 3 || f.len() > 6 {
        return None;
    }
    let t = &FLAGS;
    let (a, c) = (t.irqs[f[0] as usize], t.ctx[f[2] as usize]);
    if a & c & 0x80 == 0 || !t.resched[f[1] as usize] {
        return None;
    }
    let preempt_depth = match f.get(3) {
        Some(&p) => match t.depth[p as usize] {
            0xff => return None,
            d => Some(d),
        },
        None => None,
    };
    if !f[4.min(f.len())..].iter().all(|&c| t.rest[c as usize]) {
        return None;
    }
    Some(Context {
        known: true,
        irqs_off: a & 1 != 0,
        bh_off: a & 2 != 0,
        nmi: c & 1 != 0,
        hardirq: c & 2 != 0,
        softirq: c & 4 != 0,
        preempt_depth,
    })
}

/// The first byte of `b[i..]` that is not a blank (space or tab), or the
/// length. Trace text is padded with runs of spaces: they are skipped eight
/// at a time.
#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    loop {
        match b.get(i..i + 8) {
            Some(w) => {
                let x = u64::from_le_bytes(w.try_into().unwrap()) ^ SPACES;
                if x == 0 {
                    i += 8;
                    continue;
                }
                // the first byte that is not a space
                i += (x.trailing_zeros() / 8) as usize;
            }
            None => {
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
            }
        }
        if i < b.len() && b[i] == b'\t' {
            i += 1;
            continue;
        }
        return i;
    }
}

/// The end of the token at `b[i]`: the first blank after it, or the length.
#[inline]
fn token_end(b: &[u8], mut i: usize) -> usize {
    const SPACE: u64 = u64::from_ne_bytes([b' '; 8]);
    const TAB: u64 = u64::from_ne_bytes([b'\t'; 8]);
    while let Some(w) = word(b, i) {
        let t = zero_bytes(w ^ SPACE) | zero_bytes(w ^ TAB);
        if t != 0 {
            return i + (t.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    /// What the general way makes of a line: its markers and headers, then
    /// the general grammar.
    fn general(line: &str) -> Option<EvRec> {
        let (mut fields, mut extra) = (Vec::new(), String::new());
        let mut out = Out {
            fields: &mut fields,
            extra: &mut extra,
            last: LastLine::default(),
        };
        match parse_unusual(line, 1000, 7, &mut out) {
            Parsed::Event(r) => Some(r),
            _ => None,
        }
    }

    /// The fast path either declines or gives the general grammar's record.
    /// Returns whether it took the line.
    fn agree(line: &str) -> bool {
        agree_after(line, &mut LastLine::default())
    }

    /// [`agree`] with the flags column of the lines before remembered.
    fn agree_after(line: &str, last: &mut LastLine) -> bool {
        match usual_event(line, 1000, 7, last) {
            None => false,
            Some(f) => {
                assert_eq!(Some(f), general(line), "line {line:?}");
                true
            }
        }
    }

    fn lines_of(p: &Path) -> Option<String> {
        let raw = std::fs::read(p).ok()?;
        let mut out = Vec::new();
        if raw.starts_with(&[0x1f, 0x8b]) {
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .ok()?;
        } else {
            out = raw;
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn the_fast_path_agrees_with_the_grammar_on_edge_cases() {
        let took = [
            "          <idle>-0       [001] dNh1.   212.196001: reschedule_exit: vector=253",
            " record-real-tra-4584  [000]   212.195997: sched_switch:         a:1 [120] D ==> b:0 [120]",
            "               w 4753 [001] 213.091324: ev:page_fault_user: address=0x7 ip=0x8 error_code=0x6",
            "   kworker/0:1-41      [000] d..2.   100.000001: tlb_flush: pages:-1 reason:flush on task switch (0)",
            "  inst: bash-1102  [000] d..1  100.5: sched_switch: prev_comm=bash",
            "bash-1 [3] 1234567: page_fault_user: address=0x1",
            "my comm-7 [0] .... 1.123456789: x: y\r",
            "a-9999999 [0] 1.0: x: y with a payload",
            "a-1 [1234567] 1.0: x: y with a payload",
            "a-1 [0] 9999999.999999999: x: y",
            "a-1 [0] 5.12345678: x: y",
            "a-1 [0]\t d..1\t 5.000001:\tname:\tpayload",
            "<...>-123 [002] ..s. 7.5: softirq_entry: vec=1",
            "\u{e9}\u{e9}-5 [000] 1.000001: x: y",
            "a\u{ff}-5 [000] 1.000001: x: y",
            "a-1 [0] 1.0: x:",
            "a-1 [0] 1: x:",
        ];
        for l in took {
            assert!(agree(l), "fast path declined {l:?}");
        }
        // shapes it leaves to the general grammar (which may take or refuse them)
        let declined = [
            "bash-1234  (-------) [001]   100.000002: tlb_flush: pages:-1",
            "bash-1234  (   1234) [001]   100.000002: tlb_flush: pages:-1",
            "perf 12/34 [0] 1.0: sys:ev: x",
            "a[1]b-5 [0] 1.0: x: y",
            "a-1 [0] 1.0: sys_open(filename: 7f, flags: 0)",
            "a-1 [0] 1.0: sys_open -> 0x3",
            "a-1 [0] 1.0: do_sys_open <-sys_open",
            "a-1 [0] 1.0123456789: x: y",
            "a-1 [0] 12345678.5: x: y with a payload",
            "a-1 [0] 123456789: x: y with a payload",
            "a-12345678 [0] 1.0: x: y",
            "a-1 [0] 1.0:x: y",
            "-5 [0] 1.0: x: y",
            "5 [0] 1.0: x: y",
            "a-1 [12345678] 1.0: x: y",
            "a-1 [0] zz.. 1.0: x: y",
            "a-1 [0] 1.0: x",
            "bash-1102   0d..1.  123.456: x: y",
        ];
        for l in declined {
            assert!(!agree(l), "fast path took {l:?}");
        }
    }

    /// Lines read one after the other, each head possibly the last one's:
    /// every record is the general grammar's.
    #[test]
    fn a_repeated_head_reads_as_a_head_read_anew() {
        let seqs: &[&[&str]] = &[
            // the same head, then one with more blanks before the timestamp
            &[
                "  a-1 [000] d..1   1.500000: x: y",
                "  a-1 [000] d..1   1.600000: page_fault_user: address=0x1",
                "  a-1 [000] d..1    1.700000: x: y",
                "  a-1 [000] d..1 \t1.800000: x: y",
            ],
            // a line ending with its flags column, then one whose
            // timestamp runs into them (the general grammar refuses it)
            &["  a-1 [000] d..1", "  a-1 [000] d..12.5: x: y"],
            &["  a-1 [000]", "  a-1 [000]12.5: x: y"],
            // the head repeated, the rest malformed or cut short
            &[
                "  a-1 [000] d..1 1.500000: x: y",
                "  a-1 [000] d..1 1.",
                "  a-1 [000] d..1 12",
                "  a-1 [000] d..1 1",
                "  a-1 [000] d..1 ",
                "  a-1 [000] 12",
                "  a-1 [000] d..1 1.5:x",
            ],
            // a head the next line extends or shortens
            &[
                "  a-1 [000] 1.5: x: y",
                "  a-1 [000] 1.5: x: y z",
                "  a-12 [000] 1.5: x: y",
                "  a-1 [0001] 1.5: x: y",
                "  a-1 [000] .... 1.5: x: y",
                "  a-1 [000] ....1.5: x: y",
            ],
            // the same name, then bytes after it that read otherwise
            &[
                "  a-1 [000] 1.5: page_fault_user: address=0x1",
                "  a-1 [000] 1.6: page_fault_user:address=0x1",
                "  a-1 [000] 1.7: page_fault_user:\taddress=0x1",
                "  a-1 [000] 1.8: page_fault_user: \t address=0x1",
                "  a-1 [000] 1.9: page_fault_user:",
                "  a-1 [000] 2.0: page_fault_user: ",
                "  a-1 [000] 2.1: page_fault_user:: x",
                "  a-1 [000] 2.2: page_fault_user(x: y",
                "  a-1 [000] 2.3: page_fault_use: x",
                "  a-2 [001] 2.4: page_fault_user: address=0x2",
            ],
            &[
                "  a 1 [000] 1.5: ev:x: y",
                "  a 1 [000] 1.6: ev:x:y",
                "  a 1 [000] 1.7: ev:x:",
                "  a 1 [000] 1.8: ev:x y: z",
                "  a 1 [000] 1.9: ev:x: y",
                "  a 1 [000] 2.0: ev:xx: y",
                "  a 1 [000] 2.1: ev: x: y",
                "  a 1 [000] 2.2: x: y",
                "  a 1 [000] 2.3: x:y: z",
                "  a 1 [000] 2.4: x:y z",
            ],
            // a name longer than is remembered
            &[
                "  a-1 [000] 1.5: an_event_name_longer_than_forty_eight_bytes_in_all: y",
                "  a-1 [000] 1.6: an_event_name_longer_than_forty_eight_bytes_in_all: y",
            ],
            // instance prefixes, perf, a head longer than is remembered
            &[
                "inst: a-1 [000] 1.5: x: y",
                "inst: a-1 [000] 2.5: x: y",
                "  a 1 [000] 1.5: sys:x: y",
                "  a 1 [000] 1.6: sys:x: y",
                "long-long-long-long-instance-name-for-the-buffer: a-1 [000] 1.5: x: y",
                "long-long-long-long-instance-name-for-the-buffer: a-1 [000] 1.6: x: y",
            ],
        ];
        for seq in seqs {
            let mut last = LastLine::default();
            for l in *seq {
                agree_after(l, &mut last);
            }
        }
        // the repeated head is taken, not only declined
        let mut last = LastLine::default();
        assert!(agree_after("  a-1 [000] d..1 1.5: x: y", &mut last));
        assert!(agree_after("  a-1 [000] d..1 1.6: x: y", &mut last));
        assert!(!agree_after("  a-1 [000] d..1 12", &mut last));
        // and the repeated name
        assert!(agree_after("  a-1 [000] d..1 1.7: x: y", &mut last));
        assert_eq!(last.name.len, 3);
        assert!(agree_after("  a-1 [000] d..1 1.8: x:  z", &mut last));
        assert!(agree_after("  a 1 [000] 1.9: ev:x: y", &mut last));
        assert_eq!(last.name.len, 5);
        assert!(agree_after("  a 1 [000] 2.0: ev:x: z", &mut last));
    }

    /// The flags column as the match-based decoder read it before the
    /// lookup tables: the tables must agree with it on every column.
    fn flags_by_match(f: &[u8]) -> Option<Context> {
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

    #[test]
    fn flag_tables_agree_with_the_column_grammar() {
        const A: &[u8] = b"dDbX.NnpLlBHhZzs09afAFgx \xff";
        let mut seen = 0;
        for len in 3..=4 {
            let total = A.len().pow(len as u32);
            for mut k in 0..total {
                let mut f = vec![0u8; len];
                for c in f.iter_mut() {
                    *c = A[k % A.len()];
                    k /= A.len();
                }
                assert_eq!(parse_flags(&f), flags_by_match(&f), "{f:?}");
                seen += parse_flags(&f).is_some() as u32;
            }
        }
        // five and six columns: every byte in the last two places
        for base in [&b"d.Z1"[..], b"Dnh2", b"X.s.", b"bBHf"] {
            for x in 0..=255u8 {
                for y in [b'.', b'0', b'F', b'g', x] {
                    let f5 = [base, &[x]].concat();
                    let f6 = [base, &[x, y]].concat();
                    assert_eq!(parse_flags(&f5), flags_by_match(&f5), "{f5:?}");
                    assert_eq!(parse_flags(&f6), flags_by_match(&f6), "{f6:?}");
                }
            }
        }
        assert!(seen > 1000, "{seen} valid columns");
        for f in [&b"d..2"[..], b"dN", b"d..2.ab"] {
            assert_eq!(parse_flags(f), flags_by_match(f));
        }
    }

    #[test]
    fn digits_eight_at_a_time_are_the_digits_one_at_a_time() {
        const A: &[u8] = b"0123456789.: /-\t\xff\x7f\xba";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 13) as usize;
            let mut x = seed;
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    let c = A[(x % A.len() as u64) as usize];
                    x /= A.len() as u64;
                    if x == 0 {
                        x = seed.rotate_left(17);
                    }
                    c
                })
                .collect();
            for at in 0..=len {
                // forward from `at`
                let k = b[at..]
                    .iter()
                    .take(8)
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                let v = b[at..at + k]
                    .iter()
                    .fold(0u64, |v, c| v * 10 + (c - b'0') as u64);
                assert_eq!(lead_digits(&b, at), (v, k), "{b:?} from {at}");
                // backward from `at`
                let k = b[..at]
                    .iter()
                    .rev()
                    .take(8)
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                let v = b[at - k..at]
                    .iter()
                    .fold(0u64, |v, c| v * 10 + (c - b'0') as u64);
                assert_eq!(trail_digits(&b, at), (v, k), "{b:?} to {at}");
                // the same bytes, up to `at`
                let mut c = b.clone();
                assert!(same_bytes(&b, &c, at));
                if at > 0 {
                    c[(seed as usize) % at] ^= 0x20;
                    assert!(!same_bytes(&b, &c, at), "{b:?} {c:?} to {at}");
                }
                // blanks trimmed from the end
                let e = b[..at]
                    .iter()
                    .rposition(|c| *c != b' ' && *c != b'\t')
                    .map_or(0, |p| p + 1);
                assert_eq!(trim_end_ws(&b, at), e, "{b:?} to {at}");
            }
        }
    }

    /// Small deterministic mutations of real lines: bytes the grammar
    /// branches on, put in, taken out or overwritten anywhere.
    fn mutations(line: &str, seed: &mut u64, out: &mut Vec<String>) {
        const BYTES: &[u8] = b" \t[]:.-/()0159adhszZN#xC";
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let b = line.as_bytes();
        for _ in 0..12 {
            let mut m = b.to_vec();
            let at = (next() % (m.len() as u64 + 1)) as usize;
            let c = BYTES[(next() % BYTES.len() as u64) as usize];
            match next() % 3 {
                0 if at < m.len() => m[at] = c,
                1 if at < m.len() => {
                    m.remove(at);
                }
                _ => m.insert(at, c),
            }
            if let Ok(s) = String::from_utf8(m) {
                out.push(s);
            }
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_grammar_on_real_lines_and_their_mutations() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files: Vec<_> = std::fs::read_dir(root.join("sample-traces/real"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".txt"))
            .collect();
        for f in ["raw.txt", "report.txt", "perf.txt", "nmi-raw.txt"] {
            files.push(root.join("fuzz/seeds/analyze").join(f));
        }
        let shared = root.join("../shared/traces");
        for f in [
            "real/gcc-medium/trace.txt.gz",
            "real/gcc-medium/report.txt.gz",
            "real/shell-python/perf-script.txt.gz",
            "public/lisa/trace.txt",
            "public/trappy/trace_sched.txt",
            "public/trappy/trace_equals.txt",
            "public/trappy/trace_idle_unsorted.txt",
            "public/tracecompass/ftrace_syscalls.txt",
            "public/tracecompass/trace-android-sched-irq-syscall",
            "public/tracecompass/trace-func-graph",
        ] {
            files.push(shared.join(f));
        }
        let (mut lines, mut took, mut mutated) = (0u64, 0u64, 0u64);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut muts = Vec::new();
        for f in &files {
            let Some(text) = lines_of(f) else {
                // ../shared is optional: the repo's own files must be there
                assert!(f.starts_with(&shared), "{} is missing", f.display());
                continue;
            };
            let (mut fl, mut ft) = (0u64, 0u64);
            let mut last = LastLine::default();
            for (k, l) in text.lines().enumerate() {
                if l.starts_with('#') {
                    continue;
                }
                fl += 1;
                ft += agree_after(l, &mut last) as u64;
                if k % 97 == 0 {
                    muts.clear();
                    mutations(l, &mut seed, &mut muts);
                    for m in &muts {
                        agree_after(m, &mut last);
                        mutated += 1;
                    }
                }
            }
            // event lines of the common shapes go the fast way
            let name = f.to_string_lossy();
            if name.contains("real") || name.contains("seeds") {
                assert!(
                    ft * 100 >= fl * 95,
                    "{}: the fast path took {ft} of {fl} lines",
                    f.display()
                );
            }
            lines += fl;
            took += ft;
        }
        assert!(
            lines > 1000 && mutated > 1000,
            "{lines} lines, {mutated} mutations"
        );
        eprintln!("{took} of {lines} lines by the fast path; {mutated} mutations agreed");
    }
}
