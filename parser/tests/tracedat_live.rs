//! Every shared trace.dat decoded by nmitrace against live
//! `trace-cmd report -R -t -i FILE`, event for event: timestamp (ns), cpu,
//! pid, event name and every numeric field. Skips cleanly when trace-cmd or
//! `../shared/traces` is absent.

mod tracedat_support;
use tracedat_support::*;

fn check(path: &std::path::Path, threads: Option<usize>) {
    let report = trace_cmd_report(path);
    let oracle = parse_report(&report);
    let mine = decode(path, threads);
    let hex = hex_field_table(path);
    let hexf = |e: &str, f: &str| hex.contains(&(e.to_string(), f.to_string()));
    assert!(
        !oracle.is_empty(),
        "{}: trace-cmd printed no events",
        path.display()
    );
    let mut numeric = 0;
    for (i, (m, o)) in mine.events.iter().zip(&oracle).enumerate() {
        match compare(m, o, &hexf) {
            Ok(n) => numeric += n,
            Err(e) => panic!("{}: event {i}: {e}\n oracle: {o:?}", path.display()),
        }
    }
    assert_eq!(
        mine.events.len(),
        oracle.len(),
        "{}: event count (mine vs trace-cmd)",
        path.display()
    );
    eprintln!(
        "{}: {} events, {} numeric fields equal",
        path.display(),
        oracle.len(),
        numeric
    );
}

#[cfg_attr(
    not(trace_cmd),
    ignore = "trace-cmd is not installed (scripts/setup.sh installs it)"
)]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn live_trace_cmd_matches() {
    if !have_trace_cmd() {
        eprintln!("trace-cmd not installed: skipped");
        return;
    }
    let files = shared_dat_files();
    if files.is_empty() {
        eprintln!("../shared/traces absent: skipped");
        return;
    }
    for (_, p) in &files {
        check(p, None);
    }
    // v7 without compression, made on the fly
    let tmp = std::env::temp_dir().join(format!("nmitrace-v7none-{}.dat", std::process::id()));
    let src = &files
        .iter()
        .find(|(n, _)| n == "real__shell-python__trace.dat")
        .unwrap()
        .1;
    let ok = std::process::Command::new("trace-cmd")
        .args([
            "convert",
            "--file-version",
            "7",
            "--compression",
            "none",
            "-i",
        ])
        .arg(src)
        .arg("-o")
        .arg(&tmp)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        check(&tmp, Some(1));
        let _ = std::fs::remove_file(&tmp);
    }
}
