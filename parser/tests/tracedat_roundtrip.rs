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
    assert_eq!(stats.events as usize, mine.events.len(), "{}: all events written ({:?})", src.display(), stats.skipped);
    assert_eq!(oracle.len(), mine.events.len(), "{} [{tag}]: trace-cmd reads back every event", src.display());
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
        assert_eq!((a.ts_ns, a.cpu, a.pid, &a.name, a.flags), (b.ts_ns, b.cpu, b.pid, &b.name, b.flags));
        assert_eq!(a.fields, b.fields, "{} [{tag}] fields of {}", src.display(), a.name);
    }
    eprintln!("{} [{tag}]: {} events, {n} numeric fields equal, {} bytes", src.display(), oracle.len(), stats.bytes);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn shared_trace_dat_round_trip() {
    if !have_trace_cmd() || shared_traces().is_none() {
        eprintln!("trace-cmd or ../shared/traces absent: skipped");
        return;
    }
    for (name, p) in shared_dat_files() {
        roundtrip(&p, WriterOptions::default(), &format!("{name}-v7zstd"));
        if name.starts_with("real__shell") || name.contains("trappy__trace.dat") {
            roundtrip(&p, WriterOptions { compression: Compression::None, ..Default::default() }, &format!("{name}-v7none"));
            roundtrip(&p, WriterOptions { version: 6, ..Default::default() }, &format!("{name}-v6"));
        }
    }
}
