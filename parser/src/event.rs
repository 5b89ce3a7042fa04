//! The event model every input format decodes into (SPEC §2.5).
//!
//! Events borrow from the buffer they were decoded from: a source hands each
//! event to a callback, and the callback copies out whatever state it keeps.
//! Nothing here allocates per event.

use std::fmt;

/// Execution context of an event, as far as the input format can tell.
///
/// `known == false` means the format carries no context at all (perf script,
/// trace-cmd report without `-l`, tracefs text without a flags column); the
/// replay then reconstructs context from irq entry/exit and NMI handler events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// The format carries context flags for this event.
    pub known: bool,
    pub irqs_off: bool,
    /// Bottom halves disabled (`b`/`D` in the irqs-off column).
    pub bh_off: bool,
    pub softirq: bool,
    pub hardirq: bool,
    pub nmi: bool,
    /// Preemption depth, when the format says.
    pub preempt_depth: Option<u8>,
}

impl Context {
    /// Context unknown (the format has no flags).
    pub const UNKNOWN: Context = Context {
        known: false,
        irqs_off: false,
        bh_off: false,
        softirq: false,
        hardirq: false,
        nmi: false,
        preempt_depth: None,
    };

    /// Build from the kernel's `common_flags` byte (trace.dat) and `common_preempt_count`.
    /// Bits: 0x01 irqs off, 0x02 irqs not supported, 0x04 need resched,
    /// 0x08 hardirq, 0x10 softirq, 0x20 preempt resched, 0x40 NMI, 0x80 BH off.
    pub fn from_common_flags(flags: u8, preempt_count: Option<u8>) -> Context {
        Context {
            known: true,
            irqs_off: flags & 0x01 != 0,
            bh_off: flags & 0x80 != 0,
            hardirq: flags & 0x08 != 0,
            softirq: flags & 0x10 != 0,
            nmi: flags & 0x40 != 0,
            preempt_depth: preempt_count.map(|p| p & 0x0f),
        }
    }

    /// The kernel's `common_flags` byte for this context (for writing trace.dat).
    pub fn to_common_flags(&self) -> u8 {
        let mut f = 0u8;
        if self.irqs_off {
            f |= 0x01;
        }
        if self.hardirq {
            f |= 0x08;
        }
        if self.softirq {
            f |= 0x10;
        }
        if self.nmi {
            f |= 0x40;
        }
        if self.bh_off {
            f |= 0x80;
        }
        f
    }

    /// Short label: `nmi`, `hardirq`, `softirq`, `task` or `unknown`.
    pub fn label(&self) -> &'static str {
        if !self.known {
            "unknown"
        } else if self.nmi {
            "nmi"
        } else if self.hardirq {
            "hardirq"
        } else if self.softirq {
            "softirq"
        } else {
            "task"
        }
    }
}

/// A field value. Text formats give strings; [`Value::as_i64`] and friends
/// parse them on demand (decimal, `0x` hex, negative numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Uint(u64),
    Str(&'a str),
    /// Raw bytes (arrays in binary formats that are not strings).
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value as a signed integer, if it is one (text is parsed: `12`, `-1`, `0x1f`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(v),
            Value::Uint(v) => Some(v as i64),
            Value::Str(s) => parse_int(s).map(|v| v as i64),
            Value::Bytes(_) => None,
        }
    }

    /// The value as an unsigned integer (two's complement for negatives).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(v) => Some(v as u64),
            Value::Uint(v) => Some(v),
            Value::Str(s) => parse_int(s).map(|v| v as u64),
            Value::Bytes(_) => None,
        }
    }

    /// The value as text, if it is text.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Uint(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
            Value::Bytes(b) => {
                for (i, x) in b.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Parse a trace integer: optional sign, decimal or `0x` hex. Returns the
/// value as i128 so that both u64 and negative i64 fit.
pub fn parse_int(s: &str) -> Option<i128> {
    // hand-rolled: called for every numeric field the analyses read from text
    let b = s.trim_ascii().as_bytes();
    let (neg, body) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let v = if body.len() > 2 && body[0] == b'0' && (body[1] == b'x' || body[1] == b'X') {
        let hex = &body[2..];
        if hex.len() > 16 {
            return None;
        }
        let mut v = 0u64;
        for &c in hex {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            v = (v << 4) | d as u64;
        }
        v
    } else {
        if body.is_empty() || body.len() > 20 {
            return None;
        }
        let mut v = 0u64;
        for &c in body {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
        }
        v
    };
    Some(if neg { -(v as i128) } else { v as i128 })
}

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn parse_int_forms() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("0XFFFFFFFFFFFFFFFF"), Some(u64::MAX as i128));
        assert_eq!(parse_int("18446744073709551615"), Some(u64::MAX as i128));
        assert_eq!(parse_int("18446744073709551616"), None);
        assert_eq!(parse_int("0x"), None);
        assert_eq!(parse_int("0x10000000000000000"), None);
        assert_eq!(parse_int("12a"), None);
        assert_eq!(parse_int("-"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("__put_user_4"), None);
    }
}

/// One named field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: Value<'a>,
}

/// The fields of an event, in the order the format defines them.
#[derive(Clone, Copy, Debug)]
pub enum Fields<'a> {
    /// A decoded list (binary formats, normalised text payloads).
    List(&'a [Field<'a>]),
    /// Text payload split into spans by the text parser; decoded on access.
    Text(crate::text::fields::TextFields<'a>),
    /// A binary record (trace.dat) and its format; decoded on access.
    Record(crate::tracedat::format::RecordFields<'a>),
}

impl<'a> Fields<'a> {
    pub const EMPTY: Fields<'static> = Fields::List(&[]);

    /// Look a field up by name.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        match self {
            Fields::List(l) => l.iter().find(|f| f.name == name).map(|f| f.value),
            Fields::Text(t) => t.get(name),
            Fields::Record(r) => r.get(name),
        }
    }

    /// Iterate over all fields in order.
    pub fn iter(&self) -> FieldIter<'a> {
        match *self {
            Fields::List(l) => FieldIter::List(l.iter()),
            Fields::Text(t) => FieldIter::Text(t.iter()),
            Fields::Record(r) => FieldIter::Record(r.iter()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Fields::List(l) => l.len(),
            Fields::Text(t) => t.len(),
            Fields::Record(r) => r.iter().count(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|v| v.as_i64())
    }

    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.as_u64())
    }

    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| v.as_str())
    }
}

/// Iterator over [`Fields`].
pub enum FieldIter<'a> {
    List(std::slice::Iter<'a, Field<'a>>),
    Text(crate::text::fields::TextFieldIter<'a>),
    Record(crate::tracedat::format::RecordFieldIter<'a>),
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Field<'a>;
    fn next(&mut self) -> Option<Field<'a>> {
        match self {
            FieldIter::List(i) => i.next().copied(),
            FieldIter::Text(i) => i.next(),
            FieldIter::Record(i) => i.next(),
        }
    }
}

/// One decoded trace event.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// Timestamp in nanoseconds (for raw counter clocks: the counter value).
    pub ts_ns: u64,
    pub cpu: u32,
    /// The pid the tracer stamped (the `current` task when the event fired).
    pub pid: i32,
    /// Task name, when the format knows it.
    pub comm: Option<&'a str>,
    pub ctx: Context,
    /// Event system (`sched`, `exceptions`, …) when the format names it.
    pub system: Option<&'a str>,
    /// Bare event name (`sched_switch`).
    pub name: &'a str,
    /// What the event is, resolved once by the reader.
    pub kind: crate::EventKind,
    pub fields: Fields<'a>,
    /// Where the event came from: 1-based line number for text, byte offset for binary.
    pub origin: Origin,
    /// Buffer instance name (trace-cmd instances); `None` for the top-level buffer.
    pub instance: Option<&'a str>,
    /// The line exactly as the trace printed it (text formats; `None` for binary).
    pub raw: Option<&'a str>,
}

/// Where in the input an event was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Line(u64),
    Offset(u64),
    None,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Line(l) => write!(f, "line {l}"),
            Origin::Offset(o) => write!(f, "byte {o}"),
            Origin::None => f.write_str("-"),
        }
    }
}
