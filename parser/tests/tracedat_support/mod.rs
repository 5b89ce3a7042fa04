//! Shared by the trace.dat tests: parsing `trace-cmd report -R -t` lines and
//! comparing them with decoded events.
#![allow(dead_code)]

use nmitrace_parser::{Event, Notice, Sink, Value};
use std::path::PathBuf;

/// `../shared/traces` relative to the repository root, when present.
pub fn shared_traces() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    p.is_dir().then_some(p)
}

/// The trace.dat files of the shared corpus (relative name, path).
pub fn shared_dat_files() -> Vec<(String, PathBuf)> {
    let Some(root) = shared_traces() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for rel in [
        "real/shell-python/trace.dat",
        "real/shell-python/trace.v6.dat",
        "real/gcc-medium/trace.dat",
        "public/lisa/sched_load.dat",
        "public/lisa/example_rtapp.dat",
        "public/trappy/trace.dat",
        "public/trappy/raw_trace.dat",
        "public/trappy/trace_idle.dat",
    ] {
        let p = root.join(rel);
        if p.is_file() {
            v.push((rel.replace('/', "__"), p));
        }
    }
    v
}

pub fn have_trace_cmd() -> bool {
    std::process::Command::new("trace-cmd")
        .arg("--help")
        .output()
        .is_ok()
}

/// `trace-cmd report -R -t -i FILE`, stdout as a string.
pub fn trace_cmd_report(path: &std::path::Path) -> String {
    let out = std::process::Command::new("trace-cmd")
        .args(["report", "-R", "-t", "-i"])
        .arg(path)
        .output()
        .expect("run trace-cmd");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One event line of `trace-cmd report -R -t`.
#[derive(Debug, Clone)]
pub struct OracleEvent {
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: i32,
    pub name: String,
    pub payload: String,
}

/// Parse `   comm-PID   [CPU]  SECS.NANOS: NAME:   payload`.
pub fn parse_oracle_line(line: &str) -> Option<OracleEvent> {
    // find "[ddd]" followed by a timestamp and ':'
    let b = line.as_bytes();
    let mut i = 0;
    while let Some(open) = line[i..].find(" [").map(|x| x + i) {
        let rest = &line[open + 2..];
        let close = rest.find(']')?;
        let cpu_s = &rest[..close];
        if !cpu_s.is_empty() && cpu_s.bytes().all(|c| c.is_ascii_digit()) {
            let after = rest[close + 1..].trim_start();
            if let Some(colon) = after.find(": ") {
                let ts_s = after[..colon].trim();
                if let Some((s, ns)) = ts_s.split_once('.') {
                    if let (Ok(s), Ok(nsv)) = (s.parse::<u64>(), ns.parse::<u64>()) {
                        let scale = 10u64.pow(9 - ns.len().min(9) as u32);
                        let ns = nsv;
                        let ts_ns = s * 1_000_000_000 + ns * scale;
                        let head = line[..open].trim_end();
                        let dash = head.rfind('-')?;
                        let pid: i32 = head[dash + 1..].trim().parse().ok()?;
                        let tail = &after[colon + 2..];
                        let nc = tail.find(':')?;
                        let name = tail[..nc].trim().to_string();
                        let payload = tail[nc + 1..].trim().to_string();
                        return Some(OracleEvent {
                            ts_ns,
                            cpu: cpu_s.parse().ok()?,
                            pid,
                            name,
                            payload,
                        });
                    }
                }
            }
        }
        i = open + 2;
        if i >= b.len() {
            break;
        }
    }
    None
}

/// Parse all event lines of a report.
pub fn parse_report(text: &str) -> Vec<OracleEvent> {
    text.lines().filter_map(parse_oracle_line).collect()
}

/// An owned copy of a decoded event.
#[derive(Debug, Clone)]
pub struct Mine {
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: i32,
    pub name: String,
    pub fields: Vec<(String, OwnedValue)>,
    pub flags: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Int(i64),
    Uint(u64),
    Str(String),
    Bytes(Vec<u8>),
}

#[derive(Default)]
pub struct Collect {
    pub events: Vec<Mine>,
    pub notices: Vec<Notice>,
}

impl Sink for Collect {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.events.push(Mine {
            ts_ns: ev.ts_ns,
            cpu: ev.cpu,
            pid: ev.pid,
            name: ev.name.to_string(),
            flags: ev.ctx.to_common_flags(),
            fields: ev
                .fields
                .iter()
                .map(|f| {
                    (
                        f.name.to_string(),
                        match f.value {
                            Value::Int(v) => OwnedValue::Int(v),
                            Value::Uint(v) => OwnedValue::Uint(v),
                            Value::Str(s) => OwnedValue::Str(s.to_string()),
                            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
                        },
                    )
                })
                .collect(),
        });
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, n: &Notice) {
        self.notices.push(n.clone());
    }
}

pub fn decode(path: &std::path::Path, threads: Option<usize>) -> Collect {
    let mut t = nmitrace_parser::Trace::open(path).expect("open");
    t.threads = threads;
    let mut c = Collect::default();
    t.run(&mut c).expect("decode");
    c
}

fn parse_num(s: &str, hex: bool) -> Option<u64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()?
    } else if hex {
        u64::from_str_radix(s, 16).ok()?
    } else {
        s.parse::<u64>().ok()?
    };
    Some(if neg {
        (v as i64).wrapping_neg() as u64
    } else {
        v
    })
}

/// Compare one decoded event with one oracle line. `hex_fields` says which
/// fields the event's print fmt prints in hex without a `0x` (`%x`, `%llx`).
/// Returns the number of numeric fields compared, or a description of the mismatch.
pub fn compare(
    m: &Mine,
    o: &OracleEvent,
    hex_fields: &dyn Fn(&str, &str) -> bool,
) -> Result<usize, String> {
    if m.ts_ns != o.ts_ns || m.cpu != o.cpu || m.pid != o.pid || m.name != o.name {
        return Err(format!(
            "header differs: mine {} {} {} {} / oracle {} {} {} {}",
            m.ts_ns, m.cpu, m.pid, m.name, o.ts_ns, o.cpu, o.pid, o.name
        ));
    }
    // split the payload by the known field names, in order
    let mut compared = 0;
    let p = &o.payload;
    let mut pos = 0;
    let mut spans = Vec::new();
    for (name, _) in &m.fields {
        let key = format!("{name}=");
        let found = if p[pos..].starts_with(&key) {
            Some(pos)
        } else {
            p[pos..].find(&format!(" {key}")).map(|i| pos + i + 1)
        };
        match found {
            Some(at) => {
                spans.push(Some((at, at + key.len())));
                pos = at + key.len();
            }
            None => spans.push(None),
        }
    }
    for (i, (name, val)) in m.fields.iter().enumerate() {
        let Some((_, start)) = spans[i] else { continue };
        let end = spans[i + 1..]
            .iter()
            .flatten()
            .next()
            .map(|&(k, _)| k)
            .unwrap_or(p.len());
        let text = p[start..end.max(start)].trim();
        match val {
            OwnedValue::Int(_) | OwnedValue::Uint(_) => {
                let mine = match val {
                    OwnedValue::Int(v) => *v as u64,
                    OwnedValue::Uint(v) => *v,
                    _ => unreachable!(),
                };
                let hex = hex_fields(&m.name, name);
                let Some(theirs) = parse_num(text, hex) else {
                    continue;
                };
                let ok = theirs == mine
                    || (theirs as u32 == mine as u32
                        && (theirs >> 32 == 0 || theirs >> 32 == 0xffff_ffff))
                    || (theirs as u16 == mine as u16 && theirs >> 16 == 0)
                    || (theirs as u8 == mine as u8 && theirs >> 8 == 0);
                if !ok {
                    return Err(format!(
                        "{} field {name}: mine {mine} ({mine:#x}), oracle {text:?}",
                        m.name
                    ));
                }
                compared += 1;
            }
            OwnedValue::Str(s) => {
                if !text.is_empty()
                    && !s.is_empty()
                    && text != s
                    && !text.starts_with(s.as_str())
                    && !s.starts_with(text)
                {
                    return Err(format!(
                        "{} field {name}: mine {s:?}, oracle {text:?}",
                        m.name
                    ));
                }
            }
            OwnedValue::Bytes(_) => {}
        }
    }
    Ok(compared)
}

/// Fields printed in hex without `0x`, from the format files' print fmt.
pub fn hex_field_table(path: &std::path::Path) -> std::collections::HashSet<(String, String)> {
    let bytes = std::fs::read(path).unwrap();
    let meta =
        nmitrace_parser::tracedat::read_meta(&path.display().to_string(), &bytes).expect("meta");
    let mut set = std::collections::HashSet::new();
    for f in &meta.formats {
        let Some(pf) = f.text.find("print fmt:") else {
            continue;
        };
        let pf = &f.text[pf..];
        for fl in &f.fields {
            let key = format!("{}=%", fl.name);
            if let Some(i) = pf.find(&key) {
                let spec = &pf[i + key.len()..];
                let conv = spec
                    .chars()
                    .find(|c| c.is_ascii_alphabetic() && !matches!(c, 'l' | 'h' | 'z' | 'j' | 't'));
                if matches!(conv, Some('x') | Some('X')) {
                    set.insert((f.name.clone(), fl.name.clone()));
                }
            }
        }
    }
    set
}

/// FNV-1a over the event headers (ts, cpu, pid, name), one a line.
pub fn header_hash<'a>(it: impl Iterator<Item = (u64, u32, i32, &'a str)>) -> (u64, u64) {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut n = 0;
    for (ts, cpu, pid, name) in it {
        n += 1;
        for b in format!("{ts} {cpu} {pid} {name}\n").bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    (n, h)
}
