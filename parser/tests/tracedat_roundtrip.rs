//! Round trip: every shared trace.dat converted by the writer (v7 zstd,
//! v7 uncompressed, v6) and read back by live `trace-cmd report -R -t`
//! gives the same events (timestamp, cpu, pid, name, every numeric field)
//! as nmitrace decodes from the source. Skips without trace-cmd or
//! ../shared/traces.

mod tracedat_support;
use nmitrace_parser::tracedat::{compress::Compression, convert, WriterOptions};
use tracedat_support::*;

fn roundtrip(src: &std::path::Path, opts: WriterOptions, tag: &str) {
    let out = std::env::temp_dir().join(format!("nmitrace-rt-{}-{tag}.dat", std::process::id()));
    let f = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    let stats = convert(src, f, opts).expect("convert");
    let mine = decode(src, None);
    let report = trace_cmd_report(&out);
    let oracle = parse_report(&report);
    let hex = hex_field_table(&out);
    let hexf = |e: &str, f: &str| hex.contains(&(e.to_string(), f.to_string()));
    assert_eq!(
        stats.events as usize,
        mine.events.len(),
        "{}: all events written ({:?})",
        src.display(),
        stats.skipped
    );
    assert_eq!(
        oracle.len(),
        mine.events.len(),
        "{} [{tag}]: trace-cmd reads back every event",
        src.display()
    );
    let mut n = 0;
    for (i, (m, o)) in mine.events.iter().zip(&oracle).enumerate() {
        match compare(m, o, &hexf) {
            Ok(k) => n += k,
            Err(e) => panic!("{} [{tag}] event {i}: {e}", src.display()),
        }
    }
    // and nmitrace reads its own output back identically, context flags included
    let back = decode(&out, None);
    assert_eq!(back.events.len(), mine.events.len());
    for (a, b) in mine.events.iter().zip(&back.events) {
        assert_eq!(
            (a.ts_ns, a.cpu, a.pid, &a.name, a.flags),
            (b.ts_ns, b.cpu, b.pid, &b.name, b.flags)
        );
        assert_eq!(
            a.fields,
            b.fields,
            "{} [{tag}] fields of {}",
            src.display(),
            a.name
        );
    }
    eprintln!(
        "{} [{tag}]: {} events, {n} numeric fields equal, {} bytes",
        src.display(),
        oracle.len(),
        stats.bytes
    );
    let _ = std::fs::remove_file(&out);
}

#[cfg_attr(
    not(trace_cmd),
    ignore = "trace-cmd is not installed (scripts/setup.sh installs it)"
)]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn shared_trace_dat_round_trip() {
    if !have_trace_cmd() || shared_traces().is_none() {
        eprintln!("trace-cmd or ../shared/traces absent: skipped");
        return;
    }
    for (name, p) in shared_dat_files() {
        roundtrip(&p, WriterOptions::default(), &format!("{name}-v7zstd"));
        if name.starts_with("real__shell") || name.contains("trappy__trace.dat") {
            roundtrip(
                &p,
                WriterOptions {
                    compression: Compression::None,
                    ..Default::default()
                },
                &format!("{name}-v7none"),
            );
            roundtrip(
                &p,
                WriterOptions {
                    version: 6,
                    ..Default::default()
                },
                &format!("{name}-v6"),
            );
        }
    }
}

/// Text traces: the modelled events (those nmitrace carries formats for)
/// converted to trace.dat and read back by trace-cmd are the same events as
/// the source (timestamp, cpu, pid, name as a multiset; values as nmitrace
/// reads the converted file), and trace-cmd agrees with nmitrace on every
/// numeric field of the converted file.
#[cfg_attr(
    not(trace_cmd),
    ignore = "trace-cmd is not installed (scripts/setup.sh installs it)"
)]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn shared_text_traces_round_trip() {
    if !have_trace_cmd() || shared_traces().is_none() {
        eprintln!("trace-cmd or ../shared/traces absent: skipped");
        return;
    }
    let root = shared_traces().unwrap();
    let mut files = Vec::new();
    for dir in [
        "real/shell-python",
        "real/gcc-medium",
        "public/lisa",
        "public/trappy",
        "public/tracecompass",
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            if !n.ends_with(".dat") && !n.ends_with(".zst") {
                files.push(p);
            }
        }
    }
    files.sort();
    for src in files {
        let out = std::env::temp_dir().join(format!("nmitrace-rt-text-{}.dat", std::process::id()));
        let f = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
        let stats = match convert(&src, f, WriterOptions::default()) {
            Ok(s) => s,
            Err(e) => panic!("{}: convert failed: {e}", src.display()),
        };
        // the source's modelled events: those with a carried format
        let source = decode(&src, None);
        let back = decode(&out, None);
        let report = trace_cmd_report(&out);
        let oracle = parse_report(&report);
        assert_eq!(back.events.len() as u64, stats.events, "{}", src.display());
        assert_eq!(
            oracle.len(),
            back.events.len(),
            "{}: trace-cmd reads every written event",
            src.display()
        );
        let hex = hex_field_table(&out);
        let hexf = |e: &str, f: &str| hex.contains(&(e.to_string(), f.to_string()));
        for (i, (m, o)) in back.events.iter().zip(&oracle).enumerate() {
            if let Err(e) = compare(m, o, &hexf) {
                panic!("{} event {i}: {e}", src.display());
            }
        }
        let written: std::collections::HashSet<&str> =
            back.events.iter().map(|e| e.name.as_str()).collect();
        let mut a: Vec<(u64, u32, i32, &str)> = source
            .events
            .iter()
            .filter(|e| written.contains(e.name.as_str()))
            .map(|e| (e.ts_ns, e.cpu, e.pid, e.name.as_str()))
            .collect();
        let mut b: Vec<(u64, u32, i32, &str)> = oracle
            .iter()
            .map(|e| (e.ts_ns, e.cpu, e.pid, e.name.as_str()))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(
            a.len() as u64 + stats.skipped.values().sum::<u64>(),
            source.events.len() as u64
                - source
                    .events
                    .iter()
                    .filter(|e| !written.contains(e.name.as_str())
                        && !stats
                            .skipped
                            .keys()
                            .any(|k| k.ends_with(&format!(":{}", e.name))))
                    .count() as u64,
            "{}: every source event written or counted as skipped",
            src.display()
        );
        assert!(
            a == b,
            "{}: trace-cmd's events differ from the source's modelled events",
            src.display()
        );
        eprintln!(
            "{}: {} events written, {} skipped ({} kinds), unencodable values {:?}",
            src.display(),
            stats.events,
            stats.skipped.values().sum::<u64>(),
            stats.skipped.len(),
            stats.unencodable
        );
        let _ = std::fs::remove_file(&out);
    }
}
