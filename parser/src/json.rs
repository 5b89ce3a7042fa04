//! Events as JSON text, for `events --format jsonl` and the events table:
//! string escaping and field values with numbers as numbers (text that is a
//! whole integer too, so text and trace.dat inputs print alike).

use crate::event::{parse_int, Event, Fields, Value};

/// Append one event as a line of `events --format jsonl`: ts_ns, cpu, pid,
/// comm, context, system (when named), name and fields, then a newline.
/// Readers that format on their decoding threads (see
/// [`crate::Sink::line_format`]) call it there; a sink that formats itself
/// calls it on its own.
pub fn json_line(l: &mut String, ev: &Event<'_>) {
    l.push_str("{\"ts_ns\":");
    push_int(l, ev.ts_ns);
    l.push_str(",\"cpu\":");
    push_int(l, ev.cpu);
    l.push_str(",\"pid\":");
    push_int(l, ev.pid);
    l.push_str(",\"comm\":");
    match ev.comm {
        Some(c) => json_str(l, c),
        None => l.push_str("null"),
    }
    l.push_str(",\"context\":");
    json_str(l, ev.ctx.label());
    if let Some(s) = ev.system {
        l.push_str(",\"system\":");
        json_str(l, s);
    }
    l.push_str(",\"name\":");
    json_str(l, ev.name);
    l.push_str(",\"fields\":");
    json_fields(l, &ev.fields);
    l.push_str("}\n");
}

/// Append `s` as a JSON string literal. Runs of bytes that need no escape
/// are copied whole (the escaped bytes are all ASCII, so every cut is at a
/// character boundary).
#[inline]
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.push_str(&s[start..i]);
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c >> 4) as usize] as char);
                out.push(HEX[(c & 15) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Append an integer in decimal (itoa: no formatter machinery).
#[inline]
pub fn push_int<I: itoa::Integer>(out: &mut String, i: I) {
    out.push_str(itoa::Buffer::new().format(i));
}

/// Append a value: integers (and integer text) as numbers, arrays of bytes as arrays.
pub fn json_value(out: &mut String, v: &Value<'_>) {
    match v {
        Value::Int(i) => push_int(out, *i),
        Value::Uint(u) => push_int(out, *u),
        Value::Str(s) => match parse_int(s) {
            Some(n) if n >= i64::MIN as i128 && n <= u64::MAX as i128 => push_int(out, n),
            _ => json_str(out, s),
        },
        Value::Bytes(b) => {
            out.push('[');
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_int(out, *x);
            }
            out.push(']');
        }
    }
}

/// Append the fields as a JSON object, in order.
pub fn json_fields(out: &mut String, fields: &Fields<'_>) {
    out.push('{');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, f.name);
        out.push(':');
        json_value(out, &f.value);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Field;

    #[test]
    fn numbers_stay_numbers_and_text_is_escaped() {
        let f = [
            Field {
                name: "pid",
                value: Value::Str("0012"),
            },
            Field {
                name: "addr",
                value: Value::Str("0xff"),
            },
            Field {
                name: "comm",
                value: Value::Str("a\"b\\c\n"),
            },
            Field {
                name: "neg",
                value: Value::Int(-1),
            },
            Field {
                name: "arr",
                value: Value::Bytes(&[1, 2]),
            },
        ];
        let mut s = String::new();
        json_fields(&mut s, &Fields::List(&f));
        assert_eq!(
            s,
            r#"{"pid":12,"addr":255,"comm":"a\"b\\c\n","neg":-1,"arr":[1,2]}"#
        );
    }
}
