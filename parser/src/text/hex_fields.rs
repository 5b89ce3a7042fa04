//! Fields the kernel prints in hex without `0x` (`%x`, `%lx`, `%llx` in the
//! event's print format, e.g. `task_newtask`'s `clone_flags=%llx`): in text
//! they read as numbers in base 16, so that `clone_flags=4100` is 0x4100 =
//! 16640, as trace.dat's binary field gives it. Taken from the print formats
//! of the event formats nmitrace carries (`tracedat/builtin_formats.txt`,
//! Linux 6.18); `%p` pointers are hashed in tracefs text and stay text.

use std::sync::OnceLock;

/// Events with hex fields (a handful), each with its field names.
fn table() -> &'static [(String, Vec<String>)] {
    static T: OnceLock<Vec<(String, Vec<String>)>> = OnceLock::new();
    T.get_or_init(|| {
        let mut v = Vec::new();
        let mut name = "";
        for line in crate::tracedat::BUILTIN_FORMATS.lines() {
            if let Some(n) = line.strip_prefix("name: ") {
                name = n.trim();
            } else if let Some(pf) = line.strip_prefix("print fmt: ") {
                let fields = hex_args(pf);
                if !fields.is_empty() {
                    v.push((name.to_string(), fields));
                }
            }
        }
        v
    })
}

/// The `REC->field` arguments printed by a hex conversion with no `0x` before it.
fn hex_args(pf: &str) -> Vec<String> {
    let Some(rest) = pf.strip_prefix('"') else {
        return Vec::new();
    };
    let Some(end) = rest.find('"') else {
        return Vec::new();
    };
    let (fmt, args) = (&rest[..end], &rest[end + 1..]);
    // the conversions, in order: hex-without-prefix or not
    let b = fmt.as_bytes();
    let mut convs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'%') {
            i += 2;
            continue;
        }
        let start = i;
        i += 1;
        while i < b.len()
            && (b[i].is_ascii_digit() || matches!(b[i], b'l' | b'h' | b'z' | b'-' | b'.' | b'#'))
        {
            i += 1;
        }
        let c = b.get(i).copied().unwrap_or(0);
        // %ps / %pS / %pf: the pointer conversion eats the letter after it
        if c == b'p' && b.get(i + 1).is_some_and(|x| x.is_ascii_alphabetic()) {
            i += 1;
        }
        let prefixed = start >= 2 && &fmt[start - 2..start] == "0x";
        convs.push(matches!(c, b'x' | b'X') && !prefixed && !fmt[start..i].contains('#'));
        i += 1;
    }
    // the arguments: split at top-level commas
    let mut out = Vec::new();
    let (mut depth, mut k, mut cur) = (0i32, 0usize, String::new());
    for ch in args
        .trim_start_matches(',')
        .chars()
        .chain(std::iter::once(','))
    {
        match ch {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                if convs.get(k).copied().unwrap_or(false) {
                    if let Some(f) = cur.trim().strip_prefix("REC->") {
                        if f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                            out.push(f.to_string());
                        }
                    }
                }
                k += 1;
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out
}

/// Does the kernel print `event`'s `field` in hex without `0x`? (A scan of
/// a few event names: most events have no such field and fail at once.)
#[inline]
pub fn is_hex(event: &str, field: &str) -> bool {
    table()
        .iter()
        .any(|(e, fs)| e == event && fs.iter().any(|f| f == field))
}

/// The value of a text field: a hex-printed field as its number, else the text.
#[inline]
pub fn value<'a>(event: &str, field: &str, text: &'a str) -> crate::Value<'a> {
    if is_hex(event, field) {
        if let Ok(v) = u64::from_str_radix(text.trim(), 16) {
            return crate::Value::Uint(v);
        }
    }
    crate::Value::Str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_fields_from_print_formats() {
        assert!(is_hex("task_newtask", "clone_flags"));
        assert!(!is_hex("task_newtask", "pid"));
        // `vstart=0x%lx` carries its own prefix
        assert!(!is_hex("alloc_vmap_area", "vstart"));
        assert_eq!(
            hex_args(r#""a=%x b=0x%lx c=%llx d=%ps e=%d", REC->a, REC->b, REC->c, REC->d, REC->e"#),
            vec!["a", "c"]
        );
    }
}
