//! `analyze --format json` counts every event of every text trace: the
//! `events.total` and `events.by_name` it reports must equal counts taken
//! independently from the raw text with a regular expression (not with the
//! project's parser).

mod common;

use common::*;
use regex::Regex;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The independent oracle: one regex for an event line of any of the three
/// text formats, capturing the event name.
fn event_line_regex() -> Regex {
    Regex::new(
        r"(?x)^
        \s*(?:\S+:\s+)??                 # trace-cmd instance prefix
        .*?(?:-|\s)\d+(?:/\d+)?          # COMM-PID | COMM PID | COMM PID/TID
        \s*(?:\(\s*[-\d]+\)\s*)?         # optional TGID column
        \s\[\d+\]\s+                     # [CPU]
        (?:[.dDbXNnpLlBhHsZz0-9a-f]{4,6}\s+)?  # flags column
        \d+(?:\.\d+)?:\s+                # timestamp
        (?:\w+:)?                        # perf `system:`
        (?P<name>\w+)(?P<sep>:|\(|\s+->\s|\s+<-)",
    )
    .unwrap()
}

fn oracle_counts(path: &Path) -> (u64, BTreeMap<String, u64>) {
    let re = event_line_regex();
    let raw = std::fs::File::open(path).unwrap();
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path).unwrap().read(&mut magic).unwrap();
    let reader: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(raw).unwrap())
    } else {
        Box::new(raw)
    };
    let mut by_name = BTreeMap::new();
    let mut total = 0;
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        let l = String::from_utf8_lossy(&line);
        if let Some(c) = re.captures(&l) {
            let name = &c["name"];
            let name = match c["sep"].trim() {
                "(" => format!("sys_enter_{}", name.trim_start_matches("sys_")),
                s if s.starts_with("->") => format!("sys_exit_{}", name.trim_start_matches("sys_")),
                s if s.starts_with("<-") => "function".to_string(),
                _ => name.to_string(),
            };
            *by_name.entry(name).or_insert(0) += 1;
            total += 1;
        }
    }
    (total, by_name)
}

fn check(path: &Path) {
    let (total, by_name) = oracle_counts(path);
    assert!(total > 0, "{}: the oracle found no events", path.display());
    let doc = analyze_json(path, &["--fail-on", "never"]);
    let ev = &doc["events"];
    let got: BTreeMap<String, u64> = ev["by_name"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(
        got,
        by_name,
        "{}: by_name differs from the independent count",
        path.display()
    );
    assert_eq!(
        ev["total"].as_u64().unwrap(),
        total,
        "{}: total",
        path.display()
    );
    assert_eq!(
        doc["parse"]["unparsed_lines"].as_u64(),
        Some(0),
        "{}: unparsed lines: {}",
        path.display(),
        doc["parse"]
    );
    eprintln!(
        "{}: {} events, {} names, format {}",
        path.display(),
        total,
        by_name.len(),
        doc["input"]["format"]
    );
}

fn text_traces_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            text_traces_under(&p, out);
        } else if !p.to_string_lossy().ends_with(".dat") && !p.to_string_lossy().ends_with(".md") {
            let head = read_head(&p);
            if !head.starts_with(b"\x17\x08\x44tracing") {
                out.push(p);
            }
        }
    }
}

fn read_head(p: &Path) -> Vec<u8> {
    let mut b = vec![0; 16];
    let n = std::fs::File::open(p).unwrap().read(&mut b).unwrap();
    b.truncate(n);
    b
}

#[test]
fn bundled_sample_text_traces_match_independent_counts() {
    let mut files = Vec::new();
    text_traces_under(&repo().join("sample-traces/real"), &mut files);
    assert!(files.len() >= 3, "sample traces missing: {files:?}");
    for f in files {
        check(&f);
    }
}

#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn shared_real_and_public_text_traces_match_independent_counts() {
    let Some(shared) = shared() else {
        eprintln!("../shared/traces not present: skipped");
        return;
    };
    let mut files = Vec::new();
    text_traces_under(&shared, &mut files);
    // Every text form of every shared trace: raw, report and perf script.
    assert!(
        files.len() >= 15,
        "expected the shared text traces, found {files:?}"
    );
    for f in files {
        check(&f);
    }
}
