//! Event format files (`events/<system>/<event>/format`) and the field
//! decoding they drive: offsets, sizes, signedness, fixed arrays, char
//! arrays as strings, `__data_loc` / `__rel_loc` dynamic arrays.

use super::header::Endian;
use crate::event::{Field, Value};

/// The ring-buffer page header layout (`header_page`).
#[derive(Clone, Copy, Debug)]
pub struct HeaderPage {
    /// Size of the `commit` field (the kernel's long): 4 or 8.
    pub commit_size: u8,
    /// Offset of the first event in a page.
    pub data_offset: u32,
}

impl HeaderPage {
    pub fn default_for(long_size: u8) -> HeaderPage {
        HeaderPage {
            commit_size: long_size,
            data_offset: 8 + long_size as u32,
        }
    }

    /// Parse the `header_page` format text; fall back to the file's long size.
    pub fn parse(text: &str, long_size: u8) -> HeaderPage {
        let mut hp = HeaderPage::default_for(long_size);
        for line in text.lines() {
            let Some(decl) = field_decl(line) else {
                continue;
            };
            let off = attr(line, "offset");
            let size = attr(line, "size");
            if decl.ends_with(" commit") {
                if let Some(s @ (4 | 8)) = size {
                    hp.commit_size = s as u8;
                    hp.data_offset = 8 + s;
                }
            } else if decl.ends_with(" data") {
                if let Some(o) = off {
                    if (8..=64).contains(&o) {
                        hp.data_offset = o;
                    }
                }
            }
        }
        hp
    }
}

fn field_decl(line: &str) -> Option<&str> {
    let l = line.trim_start();
    let rest = l.strip_prefix("field:")?;
    let end = rest.find(';')?;
    Some(rest[..end].trim())
}

fn attr(line: &str, key: &str) -> Option<u32> {
    let pat = format!("{key}:");
    let i = line.find(&pat)?;
    let rest = &line[i + pat.len()..];
    let end = rest.find(';').unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// How a field's bytes become a [`Value`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A 1/2/4/8-byte number.
    Num { signed: bool },
    /// A fixed char array: the string up to the first NUL.
    Str,
    /// Any other fixed-size field (numeric arrays, odd sizes).
    Bytes,
    /// `__data_loc` (absolute) or `__rel_loc` (relative to the field's end) array.
    Dyn { string: bool, rel: bool },
}

#[derive(Clone, Debug)]
pub struct FieldFormat {
    pub name: String,
    pub type_: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
    pub kind: Kind,
}

/// One event format file. Only its name and ID are read when the file is
/// opened (a trace.dat carries every format of the kernel, thousands, and a
/// trace uses a few); the field layout is parsed on first use and kept.
/// The layout's members read as the format's own (`fmt.fields`) through
/// `Deref`.
#[derive(Clone, Debug)]
pub struct EventFormat {
    pub system: String,
    pub name: String,
    pub id: u32,
    /// What the event is (from its name, once per format: records are resolved by their id).
    pub kind: crate::EventKind,
    /// Original text of the format file.
    pub text: String,
    layout: std::sync::OnceLock<Result<Layout, String>>,
    /// Where the fields of a fixed list of names lie (see
    /// [`RecordFields::named`]), for the list first asked with.
    named: std::sync::OnceLock<Named>,
}

/// The places in [`Layout::fields`] of a fixed list of field names
/// (`u16::MAX`: absent), and the address of the list they were found for.
#[derive(Clone, Debug)]
struct Named {
    list: usize,
    slots: Box<[u16]>,
}

/// The field layout of an event format.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Non-common fields in format order.
    pub fields: Vec<FieldFormat>,
    /// The common fields (`common_type`, `common_flags`, …), used by the writer.
    pub common: Vec<FieldFormat>,
    pub flags_off: Option<u32>,
    pub preempt_off: Option<u32>,
    pub pid_off: Option<(u32, u32)>,
    /// From the print fmt: (label printed before `=`, field it prints,
    /// conversion char), e.g. `("pid", "parent_pid", 'd')`.
    pub labels: Vec<(String, String, char)>,
}

/// The layout of a format that could not be parsed: no fields.
static NO_LAYOUT: Layout = Layout {
    fields: Vec::new(),
    common: Vec::new(),
    flags_off: None,
    preempt_off: None,
    pid_off: None,
    labels: Vec::new(),
};

impl std::ops::Deref for EventFormat {
    type Target = Layout;
    fn deref(&self) -> &Layout {
        self.layout().unwrap_or(&NO_LAYOUT)
    }
}

impl EventFormat {
    /// Parse a format file completely (name, ID and every field line).
    pub fn parse(system: &str, text: &str) -> Result<EventFormat, String> {
        let f = EventFormat::parse_lazy(system, text)?;
        f.layout()?;
        Ok(f)
    }

    /// Read the name and ID now, the field layout on first use.
    pub fn parse_lazy(system: &str, text: &str) -> Result<EventFormat, String> {
        let mut name = None;
        let mut id = None;
        for line in text.lines() {
            let t = line.trim();
            if let Some(n) = t.strip_prefix("name:") {
                name = Some(n.trim().to_string());
            } else if let Some(i) = t.strip_prefix("ID:") {
                id = i.trim().parse::<u32>().ok();
            } else if t.starts_with("format:")
                || t.starts_with("field")
                || t.starts_with("print fmt:")
            {
                break;
            }
            if name.is_some() && id.is_some() {
                break;
            }
        }
        let name = name.ok_or("no name: line")?;
        let id = id.ok_or("no ID: line")?;
        Ok(EventFormat {
            system: system.to_string(),
            kind: crate::EventKind::of(&name),
            name,
            id,
            text: text.to_string(),
            layout: std::sync::OnceLock::new(),
            named: std::sync::OnceLock::new(),
        })
    }

    /// The field layout, parsed on first call; the reason when a field
    /// line is not understood.
    pub fn layout(&self) -> Result<&Layout, &str> {
        self.layout
            .get_or_init(|| parse_layout(&self.text))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The fields of one binary record, decoded from its format only when read
/// (most events are counted, never looked into).
#[derive(Clone, Copy, Debug)]
pub struct RecordFields<'a> {
    pub format: &'a std::sync::Arc<EventFormat>,
    /// The record's payload (common fields first).
    pub data: &'a [u8],
    pub endian: Endian,
}

impl<'a> RecordFields<'a> {
    /// One field by its format name; `None` when absent or outside the record.
    #[inline]
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        let f = self.format.fields.iter().find(|f| f.name == name)?;
        decode_field(f, self.endian, self.data)
    }

    /// The fields `names` names, each decoded (`None` where absent or
    /// outside the record), as [`RecordFields::get`] would one by one. The
    /// list's address keys the format's note of where they lie, so that
    /// from the second record on no name is compared: a reader that models
    /// an event asks with one `static` list per kind of event.
    #[inline]
    pub fn named<const N: usize>(
        &self,
        names: &'static [&'static str; N],
    ) -> [Option<Value<'a>>; N] {
        let list = names.as_ptr() as usize;
        let fields = &self.format.fields;
        let named = self.format.named.get_or_init(|| Named {
            list,
            slots: names
                .iter()
                .map(|n| {
                    fields
                        .iter()
                        .position(|f| f.name == *n)
                        .and_then(|i| u16::try_from(i).ok())
                        .unwrap_or(u16::MAX)
                })
                .collect(),
        });
        let mut out = [None; N];
        if named.list == list {
            for (o, &slot) in out.iter_mut().zip(named.slots.iter()) {
                if let Some(f) = fields.get(slot as usize) {
                    *o = decode_field(f, self.endian, self.data);
                }
            }
        } else {
            for (o, n) in out.iter_mut().zip(names) {
                *o = self.get(n);
            }
        }
        out
    }

    /// Every non-common field that fits the record, in format order.
    pub fn iter(&self) -> RecordFieldIter<'a> {
        RecordFieldIter {
            fields: self.format.fields.iter(),
            data: self.data,
            endian: self.endian,
        }
    }
}

/// Iterator over [`RecordFields`].
pub struct RecordFieldIter<'a> {
    fields: std::slice::Iter<'a, FieldFormat>,
    data: &'a [u8],
    endian: Endian,
}

impl<'a> Iterator for RecordFieldIter<'a> {
    type Item = Field<'a>;
    fn next(&mut self) -> Option<Field<'a>> {
        for f in self.fields.by_ref() {
            if let Some(value) = decode_field(f, self.endian, self.data) {
                return Some(Field {
                    name: &f.name,
                    value,
                });
            }
        }
        None
    }
}

impl Layout {
    /// Decode the common (header) fields of `data` into `rec`: flags,
    /// preempt count, pid. The event's own fields are decoded on access
    /// ([`RecordFields`]).
    #[inline]
    pub fn decode_common(&self, e: Endian, data: &[u8], rec: &mut super::page::Rec) {
        if let Some(f) = self.flags_off.and_then(|o| data.get(o as usize)) {
            rec.flags = 0x100 | *f as u16;
        }
        if let Some(p) = self.preempt_off.and_then(|o| data.get(o as usize)) {
            rec.preempt = *p;
            rec.has_preempt = true;
        }
        rec.pid = match self.pid_off {
            Some((o, s)) => data.get(o as usize..(o + s) as usize).map(|b| {
                let v = e.read_uint(b, s as usize);
                let sh = 64 - 8 * s;
                (((v << sh) as i64) >> sh) as i32
            }),
            None => None,
        }
        .unwrap_or(-1);
    }
}

fn parse_layout(text: &str) -> Result<Layout, String> {
    let mut fields = Vec::new();
    let mut common = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("field:") || t.starts_with("field special:") {
            let f = parse_field(t).ok_or_else(|| format!("field line {t:?}"))?;
            if f.name.starts_with("common_") {
                common.push(f);
            } else {
                fields.push(f);
            }
        } else if t.starts_with("print fmt:") {
            break;
        }
    }
    let find = |n: &str| common.iter().find(|f: &&FieldFormat| f.name == n);
    let flags_off = find("common_flags")
        .filter(|f| f.size == 1)
        .map(|f| f.offset);
    let preempt_off = find("common_preempt_count")
        .filter(|f| f.size == 1)
        .map(|f| f.offset);
    let pid_off = find("common_pid")
        .filter(|f| matches!(f.size, 1 | 2 | 4 | 8))
        .map(|f| (f.offset, f.size));
    let labels = text
        .find("print fmt:")
        .map(|i| print_labels(&text[i + 10..]))
        .unwrap_or_default();
    Ok(Layout {
        fields,
        common,
        flags_off,
        preempt_off,
        pid_off,
        labels,
    })
}

#[inline]
pub fn decode_field<'a>(f: &FieldFormat, e: Endian, data: &'a [u8]) -> Option<Value<'a>> {
    let off = f.offset as usize;
    // a flexible array (`char buf[]`, size 0) runs to the end of the record
    let size = if f.size == 0 && matches!(f.kind, Kind::Str | Kind::Bytes) {
        data.len().checked_sub(off)?
    } else {
        f.size as usize
    };
    let end = off.checked_add(size)?;
    let raw = data.get(off..end)?;
    Some(match f.kind {
        Kind::Num { signed } => {
            let v = e.read_uint(raw, size);
            if signed {
                let shift = 64 - 8 * size as u32;
                Value::Int(((v << shift) as i64) >> shift)
            } else {
                Value::Uint(v)
            }
        }
        Kind::Str => Value::Str(c_str(raw)),
        Kind::Bytes => Value::Bytes(raw),
        Kind::Dyn { string, rel } => {
            let loc = e.read_uint(raw, size.min(4)) as u32;
            let mut doff = (loc & 0xffff) as usize;
            let dlen = (loc >> 16) as usize;
            if rel {
                doff += end;
            }
            let d = data.get(doff..doff.checked_add(dlen)?)?;
            if string {
                Value::Str(c_str(d))
            } else {
                Value::Bytes(d)
            }
        }
    })
}

/// The bytes up to the first NUL, as UTF-8 (the longest valid prefix).
#[inline]
pub fn c_str(b: &[u8]) -> &str {
    // Mostly a task name (`char comm[16]`): short enough to look at byte by
    // byte, and ASCII.
    let b = if b.len() <= 32 {
        match b.iter().position(|&c| c == 0) {
            Some(i) => &b[..i],
            None => b,
        }
    } else {
        match memchr::memchr(0, b) {
            Some(i) => &b[..i],
            None => b,
        }
    };
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return unsafe { std::str::from_utf8_unchecked(b) };
    }
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// Pair the `label=%x` conversions of a print fmt with the fields their
/// arguments read (`REC->field`, `__get_str(field)`).
fn print_labels(pf: &str) -> Vec<(String, String, char)> {
    let b = pf.as_bytes();
    let Some(q0) = pf.find('"') else {
        return Vec::new();
    };
    let mut i = q0 + 1;
    while i < b.len() && b[i] != b'"' {
        if b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    let fmt = pf.get(q0 + 1..i.min(pf.len())).unwrap_or("");
    let args_s = pf.get(i + 1..).unwrap_or("");
    // conversions: (label, conv)
    let fb = fmt.as_bytes();
    let mut convs = Vec::new();
    let mut j = 0;
    while j < fb.len() {
        if fb[j] == b'%' {
            if fb.get(j + 1) == Some(&b'%') {
                j += 2;
                continue;
            }
            let mut k = j + 1;
            while k < fb.len()
                && (!fb[k].is_ascii_alphabetic()
                    || matches!(fb[k], b'l' | b'h' | b'z' | b'j' | b't' | b'L' | b'q'))
            {
                k += 1;
            }
            let conv = fb.get(k).map(|&c| c as char).unwrap_or('?');
            let label = if j > 0 && fb[j - 1] == b'=' {
                let e = j - 1;
                let st = fmt[..e]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|x| x + fmt[x..].chars().next().map_or(1, char::len_utf8))
                    .unwrap_or(0);
                Some(fmt[st..e].to_string())
            } else {
                None
            };
            convs.push((label, conv));
            // %pS-style extensions
            j = k + 1;
            continue;
        }
        j += 1;
    }
    // top-level comma split of the arguments
    let mut args = Vec::new();
    let (mut depth, mut start, mut inq) = (0i32, 0usize, false);
    let ab = args_s.as_bytes();
    for (k, &c) in ab.iter().enumerate() {
        match c {
            b'"' => inq = !inq,
            b'(' | b'{' | b'[' if !inq => depth += 1,
            b')' | b'}' | b']' if !inq => depth -= 1,
            b',' if !inq && depth == 0 => {
                args.push(args_s[start..k].trim());
                start = k + 1;
            }
            _ => {}
        }
    }
    args.push(args_s[start..].trim());
    let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
    let mut out = Vec::new();
    for (n, (label, conv)) in convs.into_iter().enumerate() {
        let (Some(label), Some(arg)) = (label, args.get(n)) else {
            continue;
        };
        let field = if let Some(p) = arg.find("REC->") {
            let r = &arg[p + 5..];
            r[..r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len())]
                .to_string()
        } else if let Some(p) = arg.find("__get_str(") {
            let r = &arg[p + 10..];
            r[..r.find(')').unwrap_or(r.len())].trim().to_string()
        } else {
            continue;
        };
        out.push((label, field, conv));
    }
    out
}

fn parse_field(line: &str) -> Option<FieldFormat> {
    let decl = if let Some(r) = line.strip_prefix("field special:") {
        r
    } else {
        line.strip_prefix("field:")?
    };
    let decl = decl[..decl.find(';')?].trim();
    let offset = attr(line, "offset")?;
    let size = attr(line, "size")?;
    let signed_attr = attr(line, "signed");
    // split "type name[N]" → type, name
    let (head, array) = match decl.find('[') {
        Some(i) if !decl.starts_with("__data_loc") && !decl.starts_with("__rel_loc") => {
            (&decl[..i], true)
        }
        _ => (decl, false),
    };
    let head = head.trim_end();
    let name_start = head
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(|i| i + head[i..].chars().next().map_or(1, char::len_utf8))
        .unwrap_or(0);
    let name = head[name_start..].to_string();
    if name.is_empty() {
        return None;
    }
    let type_ = head[..name_start].trim().to_string();
    let dynamic = type_.starts_with("__data_loc") || type_.starts_with("__rel_loc");
    let rel = type_.starts_with("__rel_loc");
    let elem = type_
        .trim_start_matches("__data_loc")
        .trim_start_matches("__rel_loc")
        .trim();
    let elem_base = elem.split('[').next().unwrap_or("").trim();
    let is_char = matches!(
        elem_base,
        "char" | "const char" | "unsigned char" | "signed char"
    );
    let signed = match signed_attr {
        Some(s) => s != 0,
        None => {
            !(type_.starts_with('u')
                || type_.contains("unsigned")
                || type_.ends_with('*')
                || type_ == "bool")
        }
    };
    let kind = if dynamic {
        Kind::Dyn {
            string: is_char,
            rel,
        }
    } else if array {
        if is_char {
            Kind::Str
        } else {
            Kind::Bytes
        }
    } else if matches!(size, 1 | 2 | 4 | 8) {
        Kind::Num { signed }
    } else {
        Kind::Bytes
    };
    Some(FieldFormat {
        name,
        type_,
        offset,
        size,
        signed,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = "name: sched_switch\nID: 316\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] name;\toffset:28;\tsize:4;\tsigned:0;\n\tfield:unsigned long ips[4];\toffset:32;\tsize:32;\tsigned:0;\n\nprint fmt: \"x\"\n";

    #[test]
    fn c_str_is_the_longest_valid_text_before_the_first_nul() {
        let long = [b'a'; 40];
        let cases: &[(&[u8], &str)] = &[
            (b"bash\0\0\0junk\0", "bash"),
            (b"swapper/0", "swapper/0"),
            (b"\0abc", ""),
            (b"", ""),
            ("k\u{e9}rnel\0x".as_bytes(), "k\u{e9}rnel"),
            (b"ab\xffcd\0", "ab"),
            (b"\xe2\x82", ""),
            (&long, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ];
        for (b, want) in cases {
            assert_eq!(c_str(b), *want, "{b:?}");
        }
        let mut long_nul = vec![b'x'; 100];
        long_nul[70] = 0;
        long_nul[80] = 0xff;
        assert_eq!(c_str(&long_nul), "x".repeat(70));
    }

    /// Fields asked for by a fixed list are the fields asked for one by one,
    /// from the first record on and once the places are noted; another list
    /// on the same format still reads right.
    #[test]
    fn named_fields_are_the_fields_by_name() {
        static LIST: [&str; 4] = ["prev_pid", "nope", "prev_comm", "name"];
        static OTHER: [&str; 2] = ["name", "prev_pid"];
        let f = std::sync::Arc::new(EventFormat::parse("sched", SWITCH).unwrap());
        let mut data = vec![0u8; 64];
        data[8..12].copy_from_slice(b"cc1\0");
        data[24..28].copy_from_slice(&(-7i32).to_le_bytes());
        // __data_loc: offset 60, length 4
        data[28..32].copy_from_slice(&((4u32 << 16) | 60).to_le_bytes());
        data[60..64].copy_from_slice(b"dyn\0");
        let r = RecordFields {
            format: &f,
            data: &data,
            endian: Endian::Little,
        };
        for _ in 0..2 {
            let got = r.named(&LIST);
            let want: Vec<_> = LIST.iter().map(|n| r.get(n)).collect();
            assert_eq!(got.to_vec(), want);
            assert_eq!(got[0], Some(Value::Int(-7)));
            assert_eq!(got[1], None);
            assert_eq!(got[2], Some(Value::Str("cc1")));
            assert_eq!(got[3], Some(Value::Str("dyn")));
        }
        assert_eq!(
            r.named(&OTHER),
            [Some(Value::Str("dyn")), Some(Value::Int(-7))]
        );
        // a record too short for a field: that field is absent
        let short = RecordFields {
            format: &f,
            data: &data[..26],
            endian: Endian::Little,
        };
        assert_eq!(short.named(&LIST)[0], None);
        assert_eq!(short.named(&LIST)[2], Some(Value::Str("cc1")));
    }

    #[test]
    fn parses_fields() {
        let f = EventFormat::parse("sched", SWITCH).unwrap();
        assert_eq!(f.name, "sched_switch");
        assert_eq!(f.id, 316);
        assert_eq!(f.fields.len(), 4);
        assert_eq!(f.fields[0].kind, Kind::Str);
        assert_eq!(f.fields[0].name, "prev_comm");
        assert_eq!(f.fields[1].kind, Kind::Num { signed: true });
        assert_eq!(
            f.fields[2].kind,
            Kind::Dyn {
                string: true,
                rel: false
            }
        );
        assert_eq!(f.fields[2].name, "name");
        assert_eq!(f.fields[3].kind, Kind::Bytes);
        assert_eq!(f.flags_off, Some(2));
        let mut data = vec![0u8; 80];
        data[8..11].copy_from_slice(b"abc");
        data[24..28].copy_from_slice(&(-5i32).to_le_bytes());
        data[28..32].copy_from_slice(&((3u32 << 16) | 64).to_le_bytes());
        data[64..67].copy_from_slice(b"hi\0");
        let format = std::sync::Arc::new(f);
        let rf = RecordFields {
            format: &format,
            data: &data,
            endian: Endian::Little,
        };
        let out: Vec<Field> = rf.iter().collect();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].value, Value::Str("abc"));
        assert_eq!(out[1].value, Value::Int(-5));
        assert_eq!(out[2].value, Value::Str("hi"));
        // by name, as the analyses read them
        assert_eq!(rf.get("name"), Some(Value::Str("hi")));
        assert_eq!(rf.get("nope"), None);
    }

    #[test]
    fn print_fmt_labels() {
        let l = print_labels(" \"comm=%s pid=%d child_comm=%s child_pid=%d x=%pS\", REC->parent_comm, REC->parent_pid, __get_str(child), REC->child_pid, (void *)REC->ip");
        assert_eq!(l[0], ("comm".into(), "parent_comm".into(), 's'));
        assert_eq!(l[1], ("pid".into(), "parent_pid".into(), 'd'));
        assert_eq!(l[2], ("child_comm".into(), "child".into(), 's'));
        assert_eq!(l[4], ("x".into(), "ip".into(), 'p'));
        let l = print_labels(" \"prev_state=%s%s ==> next\", (REC->prev_state & 0xff) ? __print_flags(REC->prev_state, \"|\", { 0x01, \"S\" }) : \"R\", REC->prev_state & 0x100 ? \"+\" : \"\"");
        assert_eq!(l[0], ("prev_state".into(), "prev_state".into(), 's'));
    }
}
