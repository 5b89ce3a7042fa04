//! trace.dat decoding against committed `trace-cmd` oracle output.
//!
//! For every shared trace.dat, `tests/data/tracedat_oracle/<name>.txt` holds
//! what trace-cmd 3.1.6 / libtraceevent 1.7.1 printed for it:
//!
//! * `events N fnv H`: the event count of `trace-cmd report -R -t -i FILE`
//!   and an FNV-1a 64 hash over every event's `ts_ns cpu pid name` line
//!   (see `tracedat_support::header_hash`), i.e. every event's header;
//! * the first and last 100 event lines of that report, verbatim, whose
//!   fields are compared value by value.
//!
//! Generated with `cargo test -p nmitrace-parser --test tracedat_oracle --
//! --ignored regenerate_oracle` (runs `trace-cmd report -R -t -i FILE` on
//! each file of ../shared/traces). The test skips when ../shared is absent.

mod tracedat_support;
use std::path::PathBuf;
use tracedat_support::*;

const N: usize = 100;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tracedat_oracle")
}

fn files() -> Vec<(String, PathBuf)> {
    let mut v = shared_dat_files();
    if let Some(root) = shared_traces() {
        let p = root.join("real/gcc-large/trace.dat");
        if p.is_file() {
            v.push(("real__gcc-large__trace.dat".into(), p));
        }
    }
    v
}

#[test]
#[ignore]
fn regenerate_oracle() {
    assert!(have_trace_cmd(), "trace-cmd is needed to regenerate");
    std::fs::create_dir_all(data_dir()).unwrap();
    for (name, path) in files() {
        let report = trace_cmd_report(&path);
        let lines: Vec<&str> = report
            .lines()
            .filter(|l| parse_oracle_line(l).is_some())
            .collect();
        let evs: Vec<OracleEvent> = lines.iter().filter_map(|l| parse_oracle_line(l)).collect();
        let (n, h) = header_hash(evs.iter().map(|e| (e.ts_ns, e.cpu, e.pid, e.name.as_str())));
        let mut out = format!("events {n} fnv {h:016x}\n");
        let head = lines.len().min(N);
        let tail_start = lines.len().saturating_sub(N).max(head);
        out.push_str(&format!("first {head}\n"));
        for l in &lines[..head] {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(&format!("last {}\n", lines.len() - tail_start));
        for l in &lines[tail_start..] {
            out.push_str(l);
            out.push('\n');
        }
        std::fs::write(data_dir().join(format!("{name}.txt")), out).unwrap();
    }
}

#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn matches_committed_oracle() {
    let files = files();
    if files.is_empty() {
        eprintln!("../shared/traces absent: skipped");
        return;
    }
    for (name, path) in files {
        let oracle_path = data_dir().join(format!("{name}.txt"));
        let Ok(text) = std::fs::read_to_string(&oracle_path) else {
            panic!("no committed oracle {}", oracle_path.display());
        };
        let mut lines = text.lines();
        let summary: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let n: u64 = summary[1].parse().unwrap();
        let h = u64::from_str_radix(summary[3], 16).unwrap();
        let first: usize = lines
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let head: Vec<OracleEvent> = (&mut lines)
            .take(first)
            .map(|l| parse_oracle_line(l).unwrap())
            .collect();
        let last: usize = lines
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let tail: Vec<OracleEvent> = (&mut lines)
            .take(last)
            .map(|l| parse_oracle_line(l).unwrap())
            .collect();

        let mine = decode(&path, None);
        let (mn, mh) = header_hash(
            mine.events
                .iter()
                .map(|e| (e.ts_ns, e.cpu, e.pid, e.name.as_str())),
        );
        assert_eq!(mn, n, "{name}: event count");
        assert_eq!(mh, h, "{name}: hash of every event's ts/cpu/pid/name");
        let hex = hex_field_table(&path);
        let hexf = |e: &str, f: &str| hex.contains(&(e.to_string(), f.to_string()));
        let tail_mine = &mine.events[mine.events.len() - tail.len()..];
        for (m, o) in mine
            .events
            .iter()
            .zip(&head)
            .chain(tail_mine.iter().zip(&tail))
        {
            if let Err(e) = compare(m, o, &hexf) {
                panic!("{name}: {e}");
            }
        }
        eprintln!("{name}: {n} events match");
    }
}
