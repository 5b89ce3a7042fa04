//! Payload splitting for text events: `key=value` pairs, and the print
//! formats that are not `key=value` (trace-cmd plugins, `nmi_handler`,
//! `tlb_flush`, syscalls), normalised to the kernel format's field names.
//!
//! Splitting records spans into the chunk buffer; values stay text and are
//! parsed on access ([`crate::Value::as_i64`]).

use super::hex_fields;
use crate::event::{Field, Value};

/// A byte range of the chunk buffer. Ranges with [`Span::EXTRA`] set point
/// into the chunk's side buffer of synthesised text (e.g. `sys_enter_open`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub const EXTRA: u32 = 1 << 31;

    #[inline]
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            len: (end - start) as u32,
        }
    }

    #[inline]
    pub fn get<'a>(&self, buf: &'a str, extra: &'a str) -> &'a str {
        let (src, s) = if self.start & Self::EXTRA != 0 {
            (extra, self.start & !Self::EXTRA)
        } else {
            (buf, self.start)
        };
        src.get(s as usize..(s + self.len) as usize).unwrap_or("")
    }
}

/// A field's name: a fixed kernel field name or a span of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Static(&'static str),
    Span(Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpan {
    pub name: Name,
    pub value: Span,
}

/// The fields of one text event, decoded on access.
#[derive(Clone, Copy, Debug)]
pub enum TextFields<'a> {
    /// Spans computed while parsing (syscall and function-tracer lines).
    Spans {
        event: &'a str,
        buf: &'a str,
        extra: &'a str,
        spans: &'a [FieldSpan],
    },
    /// The payload of event `event`, split only when a field is read.
    Payload { event: &'a str, payload: &'a str },
}

/// Fields of the non-`key=value` print formats (at most a handful).
pub struct Fixed {
    spans: [FieldSpan; 8],
    len: usize,
}

impl Fixed {
    fn new() -> Fixed {
        Fixed {
            spans: [FieldSpan {
                name: Name::Static(""),
                value: Span::default(),
            }; 8],
            len: 0,
        }
    }
}

/// Which splitter a payload needs.
fn special(event: &str, payload: &str) -> bool {
    match event {
        // the plugin format, or the kernel's own (split faster than key=value)
        "sched_switch" => true,
        "sched_wakeup" | "sched_wakeup_new" | "sched_waking" => !payload.contains("comm="),
        "nmi_handler" => payload.contains("delta_ns:"),
        "tlb_flush" => true,
        "alloc_vmap_area" => payload.starts_with("va_start: "),
        _ => false,
    }
}

fn split_special(event: &str, payload: &str) -> Option<Fixed> {
    if !special(event, payload) {
        return None;
    }
    let mut f = Fixed::new();
    let ok = {
        let mut sp = Splitter { out: &mut f };
        match event {
            "sched_switch" if payload.starts_with("prev_comm=") => sp.sched_switch_fields(payload),
            "sched_switch" => !payload.contains("prev_comm=") && sp.sched_switch_plugin(payload),
            "nmi_handler" => sp.nmi_handler(payload),
            "tlb_flush" => sp.tlb_flush(payload),
            "alloc_vmap_area" => sp.alloc_vmap_area(payload),
            _ => sp.sched_wakeup_plugin(payload),
        }
    };
    ok.then_some(f)
}

impl<'a> TextFields<'a> {
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        match *self {
            TextFields::Spans {
                event,
                buf,
                extra,
                spans,
            } => spans
                .iter()
                .find(|f| name_of(f, buf, extra) == name)
                .map(|f| hex_fields::value(event, name, f.value.get(buf, extra))),
            TextFields::Payload { event, payload } => {
                if let Some(f) = split_special(event, payload) {
                    return f.spans[..f.len]
                        .iter()
                        .find(|x| name_of(x, payload, "") == name)
                        .map(|x| Value::Str(x.value.get(payload, "")));
                }
                KvIter::new(payload)
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| hex_fields::value(event, name, v))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> TextFieldIter<'a> {
        match *self {
            TextFields::Spans {
                event,
                buf,
                extra,
                spans,
            } => TextFieldIter::Spans {
                event,
                buf,
                extra,
                spans,
                i: 0,
            },
            TextFields::Payload { event, payload } => match split_special(event, payload) {
                Some(f) => TextFieldIter::Fixed { payload, f, i: 0 },
                None => TextFieldIter::Kv(event, KvIter::new(payload)),
            },
        }
    }
}

#[inline]
fn name_of<'a>(f: &FieldSpan, buf: &'a str, extra: &'a str) -> &'a str {
    match f.name {
        Name::Static(s) => s,
        Name::Span(s) => s.get(buf, extra),
    }
}

pub enum TextFieldIter<'a> {
    Spans {
        event: &'a str,
        buf: &'a str,
        extra: &'a str,
        spans: &'a [FieldSpan],
        i: usize,
    },
    Fixed {
        payload: &'a str,
        f: Fixed,
        i: usize,
    },
    Kv(&'a str, KvIter<'a>),
}

impl<'a> Iterator for TextFieldIter<'a> {
    type Item = Field<'a>;
    fn next(&mut self) -> Option<Field<'a>> {
        match self {
            TextFieldIter::Spans {
                event,
                buf,
                extra,
                spans,
                i,
            } => {
                let s = spans.get(*i)?;
                *i += 1;
                let name = name_of(s, buf, extra);
                Some(Field {
                    name,
                    value: hex_fields::value(event, name, s.value.get(buf, extra)),
                })
            }
            TextFieldIter::Fixed { payload, f, i } => {
                if *i >= f.len {
                    return None;
                }
                let s = f.spans[*i];
                *i += 1;
                Some(Field {
                    name: name_of(&s, payload, ""),
                    value: Value::Str(s.value.get(payload, "")),
                })
            }
            TextFieldIter::Kv(event, k) => k.next().map(|(name, v)| Field {
                name,
                value: hex_fields::value(event, name, v),
            }),
        }
    }
}

/// Generic `key=value key=value` payloads, split lazily. Values may contain
/// spaces (`reason=flush on task switch (0)`) and `=` (`my_field=foo=bar`):
/// a value runs until the next space-separated token that starts a `key=`.
/// Text before the first `key=` is field `msg` (console lines, bprint).
pub struct KvIter<'a> {
    p: &'a str,
    /// Start of the next key (or of the lead text at the very beginning).
    pos: usize,
    started: bool,
}

impl<'a> KvIter<'a> {
    pub fn new(p: &'a str) -> KvIter<'a> {
        KvIter {
            p,
            pos: 0,
            started: false,
        }
    }

    /// The next token start at or after `from` that begins a `key=`: (start, '=' index).
    fn next_key(&self, from: usize) -> Option<(usize, usize)> {
        let b = self.p.as_bytes();
        let mut i = from;
        while i < b.len() {
            if i == 0 || b[i - 1] == b' ' {
                match key_scan(b, i) {
                    Ok(eq) => return Some((i, eq)),
                    // not a key: go on from where the scan stopped
                    Err(j) => i = j,
                }
            }
            // past the next space (a plain loop: tokens are short, a
            // memchr call costs more than it saves here)
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            i += 1;
        }
        None
    }
}

impl<'a> Iterator for KvIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let b = self.p.as_bytes();
        if !self.started {
            self.started = true;
            let first = self.next_key(0);
            let lead = first.map_or(b.len(), |(s, _)| s);
            self.pos = first.map_or(b.len(), |(s, _)| s);
            let le = trim_end(b, 0, lead);
            if le > 0 {
                return Some(("msg", &self.p[..le]));
            }
        }
        if self.pos >= b.len() {
            return None;
        }
        let (ks, eq) = (self.pos, key_at(b, self.pos)?);
        let next = self.next_key(eq + 1);
        let vend = next.map_or(b.len(), |(s, _)| s);
        self.pos = vend;
        Some((&self.p[ks..eq], &self.p[eq + 1..trim_end(b, eq + 1, vend)]))
    }
}

/// Collects field spans for one special payload (spans relative to the payload).
pub struct Splitter<'o> {
    out: &'o mut Fixed,
}

impl Splitter<'_> {
    #[inline]
    fn push(&mut self, name: &'static str, s: usize, e: usize) {
        if self.out.len < self.out.spans.len() {
            self.out.spans[self.out.len] = FieldSpan {
                name: Name::Static(name),
                value: Span::new(s, e),
            };
            self.out.len += 1;
        }
    }

    /// The kernel's format, `prev_comm=%s prev_pid=%d prev_prio=%d
    /// prev_state=%s%s ==> next_comm=%s next_pid=%d next_prio=%d`, taken
    /// apart from the fixed markers (a comm may hold spaces and `=`);
    /// `prev_state` is the state alone (`R+`), without the arrow.
    fn sched_switch_fields(&mut self, p: &str) -> bool {
        // one pass over the spaces: the last of each marker before the
        // arrow (prev_*), the last after it (next_*); no substring searcher
        let b = p.as_bytes();
        let at = |k: usize, m: &[u8]| b.len() > k + m.len() && &b[k + 1..k + 1 + m.len()] == m;
        let (mut pi, mut pr, mut st, mut arrow, mut npi, mut npr) = (0, 0, 0, 0, 0, 0);
        for k in memchr::memchr_iter(b' ', b.get(10..).unwrap_or(&[])).map(|k| k + 10) {
            match b.get(k + 1) {
                Some(b'p') if arrow == 0 => {
                    if at(k, b"prev_pid=") {
                        pi = k;
                    } else if at(k, b"prev_prio=") {
                        pr = k;
                    } else if at(k, b"prev_state=") {
                        st = k;
                    }
                }
                Some(b'=') if arrow == 0 && st > 0 && at(k, b"==> next_comm=") => arrow = k,
                Some(b'n') if arrow > 0 => {
                    if at(k, b"next_pid=") {
                        npi = k;
                    } else if at(k, b"next_prio=") {
                        npr = k;
                    }
                }
                _ => {}
            }
        }
        let rs = arrow + 5;
        if !(10 <= pi && pi < pr && pr < st && st < arrow && rs + 10 <= npi && npi < npr) {
            return false;
        }
        let t = p.trim_end().len();
        self.push("prev_comm", 10, pi);
        self.push("prev_pid", pi + 10, pr);
        self.push("prev_prio", pr + 11, st);
        self.push("prev_state", st + 12, arrow);
        self.push("next_comm", rs + 10, npi);
        self.push("next_pid", npi + 10, npr);
        self.push("next_prio", npr + 11, t.max(npr + 11));
        true
    }

    /// `prev_comm:prev_pid [prev_prio] prev_state ==> next_comm:next_pid [next_prio]`
    fn sched_switch_plugin(&mut self, p: &str) -> bool {
        let Some(arrow) = p.find(" ==> ") else {
            return false;
        };
        let left = &p[..arrow];
        let rs = arrow + 5;
        let right = &p[rs..];
        // left: comm:pid [prio] STATE
        let Some(sp) = left.rfind(' ') else {
            return false;
        };
        let (who, state) = (&left[..sp], (sp + 1, left.len()));
        let Some((comm, pid, prio)) = comm_pid_prio(who) else {
            return false;
        };
        let Some((ncomm, npid, nprio)) = comm_pid_prio(right.trim_end()) else {
            return false;
        };
        self.push("prev_comm", comm.0, comm.1);
        self.push("prev_pid", pid.0, pid.1);
        self.push("prev_prio", prio.0, prio.1);
        self.push("prev_state", state.0, state.1);
        self.push("next_comm", rs + ncomm.0, rs + ncomm.1);
        self.push("next_pid", rs + npid.0, rs + npid.1);
        self.push("next_prio", rs + nprio.0, rs + nprio.1);
        true
    }

    /// `comm:pid [prio] CPU:001` or `comm:pid [prio] success=1 CPU:002`
    fn sched_wakeup_plugin(&mut self, p: &str) -> bool {
        let Some(cpu_at) = p.rfind(" CPU:") else {
            return false;
        };
        let mut who_end = cpu_at;
        let success = p[..cpu_at].rfind(" success=").map(|s| (s + 9, cpu_at));
        if let Some((s, _)) = success {
            who_end = s - 9;
        }
        let Some((comm, pid, prio)) = comm_pid_prio(&p[..who_end]) else {
            return false;
        };
        self.push("comm", comm.0, comm.1);
        self.push("pid", pid.0, pid.1);
        self.push("prio", prio.0, prio.1);
        if let Some((s, e)) = success {
            self.push("success", s, e);
        }
        self.push("target_cpu", cpu_at + 5, p.trim_end().len());
        true
    }

    /// `perf_event_nmi_handler() delta_ns: 4521 handled: 1`
    fn nmi_handler(&mut self, p: &str) -> bool {
        let Some(d) = p.find(" delta_ns: ") else {
            return false;
        };
        let Some(h) = p.find(" handled: ") else {
            return false;
        };
        if h < d {
            return false;
        }
        let handler_end = p[..d].strip_suffix("()").map_or(d, |s| s.len());
        self.push("handler", 0, handler_end);
        self.push("delta_ns", d + 11, h);
        self.push("handled", h + 10, p.trim_end().len());
        true
    }

    /// `va_start: 18446683600687333376 size=20480 align=16384 vstart=0x… vend=0x… failed=0`:
    /// the first field (format name `addr`) is printed `va_start: ` in decimal.
    fn alloc_vmap_area(&mut self, p: &str) -> bool {
        let Some(rest) = p.strip_prefix("va_start: ") else {
            return false;
        };
        let end = 10 + rest.find(' ').unwrap_or(rest.len());
        self.push("addr", 10, end);
        let mut pos = end;
        let base = p.as_ptr() as usize;
        // Where a piece the splitter returned lies in `p` (None for a piece
        // that is not a slice of it, e.g. an empty value).
        let at = |s: &str| {
            (s.as_ptr() as usize)
                .checked_sub(base)
                .filter(|&o| o + s.len() <= p.len())
        };
        for (name, value) in KvIter::new(&p[end..]) {
            if name == "msg" {
                continue;
            }
            let (Some(ns), Some(vs)) = (at(name), at(value)) else {
                continue;
            };
            if self.out.len < self.out.spans.len() {
                self.out.spans[self.out.len] = FieldSpan {
                    name: Name::Span(Span::new(ns, ns + name.len())),
                    value: Span::new(vs, vs + value.len()),
                };
                self.out.len += 1;
            }
            pos = vs + value.len();
        }
        pos <= p.len()
    }

    /// tracefs: `pages:0 reason:flush on task switch (0)`;
    /// report: `pages=-1 reason=flush on task switch (0)`. `reason` is the number.
    fn tlb_flush(&mut self, p: &str) -> bool {
        let sep = if p.starts_with("pages:") {
            ':'
        } else if p.starts_with("pages=") {
            '='
        } else {
            return false;
        };
        let r = if sep == ':' { " reason:" } else { " reason=" };
        let Some(ri) = p.find(r) else { return false };
        self.push("pages", 6, ri);
        let rs = ri + r.len();
        let t = p.trim_end();
        // The number in the trailing parentheses, else the whole text.
        if t.ends_with(')') {
            if let Some(open) = t.rfind('(') {
                if open >= rs {
                    self.push("reason", open + 1, t.len() - 1);
                    return true;
                }
            }
        }
        self.push("reason", rs, t.len());
        true
    }
}

/// `comm:pid [prio]` → spans of comm, pid, prio (relative to `s`).
fn comm_pid_prio(s: &str) -> Option<((usize, usize), (usize, usize), (usize, usize))> {
    let s = s.trim_end();
    let lb = s.rfind(" [")?;
    if !s.ends_with(']') {
        return None;
    }
    let prio = (lb + 2, s.len() - 1);
    let who = &s[..lb];
    let colon = who.rfind(':')?;
    let start = s.len() - s.trim_start().len();
    Some(((start, colon), (colon + 1, lb), prio))
}

/// If a `key=` starts at `i`, the index of the `=`.
#[inline]
fn key_at(b: &[u8], i: usize) -> Option<usize> {
    key_scan(b, i).ok()
}

/// Bytes a field name may hold: `[A-Za-z0-9_.\[\]]`.
static KEY_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'[' || b == b']';
        c += 1;
    }
    t
};

/// Scan the token at `i`: `Ok(index of '=')` when it starts a `key=`,
/// else `Err(index where the scan stopped)`.
#[inline]
fn key_scan(b: &[u8], i: usize) -> Result<usize, usize> {
    let mut j = i;
    while j < b.len() {
        let c = b[j];
        if c == b'=' {
            return if j > i { Ok(j) } else { Err(j) };
        }
        if !KEY_BYTE[c as usize] {
            return Err(j);
        }
        j += 1;
    }
    Err(j)
}

#[inline]
fn trim_end(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t' || b[end - 1] == b'\r') {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str, p: &str) -> Vec<(String, String)> {
        let tf = TextFields::Payload {
            event: name,
            payload: p,
        };
        let all: Vec<(String, String)> = tf
            .iter()
            .map(|f| (f.name.to_string(), f.value.to_string()))
            .collect();
        // get() agrees with iter()
        for (n, v) in &all {
            assert_eq!(
                tf.get(n).map(|x| x.to_string()).as_deref(),
                Some(v.as_str()),
                "get({n})"
            );
        }
        all
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn generic_key_values() {
        assert_eq!(
            split(
                "x",
                "address=0x7f34e74e5408 ip=0x55f74c9e143d error_code=0x7"
            ),
            kv(&[
                ("address", "0x7f34e74e5408"),
                ("ip", "0x55f74c9e143d"),
                ("error_code", "0x7")
            ])
        );
        assert_eq!(
            split("x", "my_field=foo=bar=baz"),
            kv(&[("my_field", "foo=bar=baz")])
        );
        assert_eq!(
            split("x", "reason=flush on task switch (0) pages=3"),
            kv(&[("reason", "flush on task switch (0)"), ("pages", "3")])
        );
    }

    #[test]
    fn leading_text_is_msg() {
        assert_eq!(
            split(
                "console",
                "[  123.456] Uhhuh. NMI received for unknown reason 3d on CPU 90."
            ),
            kv(&[(
                "msg",
                "[  123.456] Uhhuh. NMI received for unknown reason 3d on CPU 90."
            )])
        );
        assert_eq!(
            split(
                "bputs",
                "0xffff0000080feeb8s: equals_event: my_field=1foo=2"
            ),
            kv(&[
                ("msg", "0xffff0000080feeb8s: equals_event:"),
                ("my_field", "1foo=2")
            ])
        );
    }

    #[test]
    fn sched_switch_kernel_format() {
        assert_eq!(
            split("sched_switch", "prev_comm=record-real-tra prev_pid=4584 prev_prio=120 prev_state=D ==> next_comm=swapper/0 next_pid=0 next_prio=120"),
            kv(&[
                ("prev_comm", "record-real-tra"),
                ("prev_pid", "4584"),
                ("prev_prio", "120"),
                ("prev_state", "D"),
                ("next_comm", "swapper/0"),
                ("next_pid", "0"),
                ("next_prio", "120")
            ])
        );
        // comms with spaces and '=', a compound state
        assert_eq!(
            split("sched_switch", "prev_comm=Web Content prev_pid=2711 prev_prio=120 prev_state=R+ ==> next_comm=a=b c next_pid=41 next_prio=100\n"),
            kv(&[
                ("prev_comm", "Web Content"),
                ("prev_pid", "2711"),
                ("prev_prio", "120"),
                ("prev_state", "R+"),
                ("next_comm", "a=b c"),
                ("next_pid", "41"),
                ("next_prio", "100")
            ])
        );
    }

    #[test]
    fn sched_switch_plugin_format() {
        assert_eq!(
            split(
                "sched_switch",
                "record-real-tra:12894 [120] D ==> record-real-tra:12897 [120]"
            ),
            kv(&[
                ("prev_comm", "record-real-tra"),
                ("prev_pid", "12894"),
                ("prev_prio", "120"),
                ("prev_state", "D"),
                ("next_comm", "record-real-tra"),
                ("next_pid", "12897"),
                ("next_prio", "120"),
            ])
        );
        // comm with spaces and colons
        assert_eq!(
            split(
                "sched_switch",
                "Web Content:2711 [120] R+ ==> kworker/0:1:41 [100]"
            )[4..6]
                .to_vec(),
            kv(&[("next_comm", "kworker/0:1"), ("next_pid", "41")])
        );
    }

    #[test]
    fn sched_wakeup_plugin_format() {
        assert_eq!(
            split("sched_wakeup", "migration/1:21 [0] CPU:001"),
            kv(&[
                ("comm", "migration/1"),
                ("pid", "21"),
                ("prio", "0"),
                ("target_cpu", "001")
            ])
        );
        assert_eq!(
            split("sched_wakeup", "sh:1642 [120] success=1 CPU:002"),
            kv(&[
                ("comm", "sh"),
                ("pid", "1642"),
                ("prio", "120"),
                ("success", "1"),
                ("target_cpu", "002")
            ])
        );
    }

    #[test]
    fn nmi_handler_format() {
        assert_eq!(
            split(
                "nmi_handler",
                "perf_event_nmi_handler() delta_ns: 4521 handled: 1"
            ),
            kv(&[
                ("handler", "perf_event_nmi_handler"),
                ("delta_ns", "4521"),
                ("handled", "1")
            ])
        );
    }

    #[test]
    fn alloc_vmap_area_va_start() {
        assert_eq!(
            split("alloc_vmap_area", "va_start: 18446683600687333376 size=20480 align=16384 vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0"),
            kv(&[
                ("addr", "18446683600687333376"),
                ("size", "20480"),
                ("align", "16384"),
                ("vstart", "0xffffc90000000000"),
                ("vend", "0xffffe8ffffffffff"),
                ("failed", "0")
            ])
        );
    }

    #[test]
    fn tlb_flush_formats() {
        assert_eq!(
            split("tlb_flush", "pages:0 reason:flush on task switch (0)"),
            kv(&[("pages", "0"), ("reason", "0")])
        );
        assert_eq!(
            split("tlb_flush", "pages=-1 reason=local mm shootdown (3)"),
            kv(&[("pages", "-1"), ("reason", "3")])
        );
        // -R raw: plain numbers
        assert_eq!(
            split("tlb_flush", "reason=0 pages=-1"),
            kv(&[("reason", "0"), ("pages", "-1")])
        );
    }
}
