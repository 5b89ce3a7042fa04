//! Events as JSON text, for `events --format jsonl` and the events table:
//! string escaping and field values with numbers as numbers (text that is a
//! whole integer too, so text and trace.dat inputs print alike).

use crate::event::{parse_int, Fields, Value};
use std::fmt::Write;

/// Append `s` as a JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append a value: integers (and integer text) as numbers, arrays of bytes as arrays.
pub fn json_value(out: &mut String, v: &Value<'_>) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Str(s) => match parse_int(s) {
            Some(n) if n >= i64::MIN as i128 && n <= u64::MAX as i128 => {
                let _ = write!(out, "{n}");
            }
            _ => json_str(out, s),
        },
        Value::Bytes(b) => {
            out.push('[');
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{x}");
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
            Field { name: "pid", value: Value::Str("0012") },
            Field { name: "addr", value: Value::Str("0xff") },
            Field { name: "comm", value: Value::Str("a\"b\\c\n") },
            Field { name: "neg", value: Value::Int(-1) },
            Field { name: "arr", value: Value::Bytes(&[1, 2]) },
        ];
        let mut s = String::new();
        json_fields(&mut s, &Fields::List(&f));
        assert_eq!(s, r#"{"pid":12,"addr":255,"comm":"a\"b\\c\n","neg":-1,"arr":[1,2]}"#);
    }
}
