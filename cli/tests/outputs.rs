//! Outputs are deterministic (the same input gives byte-identical files) and
//! atomic (a failure, even a full disk, leaves the previous output intact).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `dir`, relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    m
}

fn ok(args: &[&str]) -> std::process::Output {
    let o = nmitrace(args);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `analyze` twice: JSON, text, HTML, SVG, PNG and Parquet byte-identical;
/// `events` jsonl, csv and Parquet too.
#[test]
fn analyze_and_events_are_byte_identical_run_to_run() {
    let t = tempfile::tempdir().unwrap();
    let sc = repo().join("sample-traces/scenarios/perf-vmalloc-fault-in-switch-window/trace.txt");
    let real = repo().join("sample-traces/real/nmi-switch-window-before-flush.trace.txt.gz");
    let mut runs = Vec::new();
    for k in 0..2 {
        let d = t.path().join(format!("run{k}"));
        std::fs::create_dir_all(&d).unwrap();
        for (i, input) in [&sc, &real].iter().enumerate() {
            let inp = input.to_str().unwrap();
            let base = d.join(format!("t{i}"));
            let (plots, report, tables) = (
                base.join("plots"),
                base.join("report.html"),
                base.join("tables"),
            );
            let o = ok(&[
                "analyze",
                inp,
                "--kernel",
                "2.6.35",
                "--arch",
                "x86_64",
                "--format",
                "json",
                "--plot",
                plots.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
                "--tables",
                tables.to_str().unwrap(),
            ]);
            std::fs::write(base.join("out.json"), &o.stdout).unwrap();
            std::fs::write(base.join("out.txt"), ok(&["analyze", inp]).stdout).unwrap();
            std::fs::write(base.join("events.jsonl"), ok(&["events", inp]).stdout).unwrap();
            std::fs::write(
                base.join("events.csv"),
                ok(&["events", inp, "--format", "csv"]).stdout,
            )
            .unwrap();
            ok(&[
                "events",
                inp,
                "--format",
                "parquet",
                "-o",
                base.join("events.parquet").to_str().unwrap(),
            ]);
        }
        runs.push(tree(&d));
    }
    assert!(runs[0].len() >= 20, "{:?}", runs[0].keys());
    for (p, b) in &runs[0] {
        assert!(
            runs[1].get(p) == Some(b),
            "{} differs between two runs",
            p.display()
        );
    }
    assert_eq!(runs[0].len(), runs[1].len());
}

/// `batch` with --jobs 1 and --jobs 2: the same tables, charts and page,
/// but for the measured times (`traces.parquet`'s `seconds`, the page's run time).
#[test]
fn batch_is_the_same_with_one_job_or_two() {
    let t = tempfile::tempdir().unwrap();
    let input = repo().join("sample-traces");
    let mut runs = Vec::new();
    for jobs in ["1", "2"] {
        let out = t.path().join(format!("j{jobs}"));
        ok(&[
            "batch",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--jobs",
            jobs,
            "--no-progress",
        ]);
        let mut m = tree(&out);
        // mask the timings
        let traces = nmitrace_analyses::tables::read_parquet(&out.join("traces.parquet")).unwrap();
        let masked = traces.drop("seconds").unwrap();
        m.insert("traces.parquet".into(), format!("{masked:?}").into_bytes());
        let html = String::from_utf8(m[Path::new("report.html")].clone()).unwrap();
        let re = regex::Regex::new(r"in [0-9.]+ s|[0-9.]+ s\b|\d+ jobs?").unwrap();
        m.insert(
            "report.html".into(),
            re.replace_all(&html, "T").into_owned().into_bytes(),
        );
        runs.push(m);
    }
    assert_eq!(
        runs[0].keys().collect::<Vec<_>>(),
        runs[1].keys().collect::<Vec<_>>()
    );
    for (p, b) in &runs[0] {
        assert!(
            &runs[1][p] == b,
            "{} differs between --jobs 1 and --jobs 2",
            p.display()
        );
    }
}

/// A run that fails halfway leaves the previous output as it was and no
/// staging files behind.
#[test]
fn a_failed_run_leaves_the_previous_output_intact() {
    let t = tempfile::tempdir().unwrap();
    let plots = t.path().join("plots");
    let good = repo().join("sample-traces/scenarios/unknown-nmi/trace.txt");
    ok(&[
        "analyze",
        good.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    let before = tree(&plots);
    assert!(before.contains_key(Path::new("timeline.svg")));
    // a second trace that cannot be read: the command fails before any output moves
    let bad = t.path().join("bad.txt");
    std::fs::write(&bad, b"not a trace\n").unwrap();
    let o = nmitrace(&[
        "analyze",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(tree(&plots), before, "the previous charts are untouched");
    let conv = t.path().join("x.dat");
    std::fs::write(&conv, b"previous").unwrap();
    let o = nmitrace(&[
        "convert",
        bad.to_str().unwrap(),
        "-o",
        conv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&conv).unwrap(), b"previous");
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".nmitrace"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A full disk (a 20 KiB tmpfs): the write fails with a message naming the
/// path, and the previous report, trace.dat and batch output are intact.
#[test]
#[cfg_attr(not(root), ignore = "needs root to mount a small tmpfs")]
fn a_full_disk_leaves_the_previous_output_intact() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=20k",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "mount a tmpfs");
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(mnt.clone());
    let trace = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    let tr = trace.to_str().unwrap();
    for (name, args) in [
        ("report.html", vec!["analyze", tr, "--report"]),
        (
            "out.dat",
            vec!["convert", tr, "--compression", "none", "-o"],
        ),
        (
            "events.parquet",
            vec!["events", tr, "--format", "parquet", "-o"],
        ),
    ] {
        let target = mnt.join(name);
        std::fs::write(&target, b"previous").unwrap();
        let mut a = args.clone();
        a.push(target.to_str().unwrap());
        let o = nmitrace(&a);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {e}");
        assert!(
            e.contains(mnt.to_str().unwrap()),
            "{name}: the message names the path: {e}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"previous", "{name}");
    }
    let out = mnt.join("fleet");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("traces.parquet"), b"previous").unwrap();
    let o = nmitrace(&[
        "batch",
        repo().join("sample-traces").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("traces.parquet")).unwrap(),
        b"previous"
    );
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .flatten()
        .chain(std::fs::read_dir(&out).unwrap().flatten())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".nmitrace"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
