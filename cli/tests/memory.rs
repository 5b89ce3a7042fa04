//! Memory does not grow with trace length: peak RSS of `analyze` and
//! `events` (a whole process, measured by wait4) on gcc-large in every
//! trace.dat form — v7 zstd as recorded (33 MB), uncompressed v7 and v6
//! (156 MB each, mapped), and the uncompressed v7 zstd-compressed as a whole
//! file (decompressed to a temporary file) — and as raw text, zstd (read
//! through reused buffers) and plain (475 MB, mapped), stays under 64 MiB.
//! This counts, not times: the same input gives the same pages.

mod common;
use common::*;
use std::path::Path;

const LIMIT_KIB: i64 = 64 * 1024;

/// Run nmitrace with `args`; its peak resident set in KiB.
fn peak_rss_kib(args: &[&str]) -> i64 {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nmitrace"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{args:?}: status {status}"
    );
    ru.ru_maxrss
}

fn check(path: &Path, label: &str) {
    let p = path.to_str().unwrap();
    for args in [vec!["analyze", p], vec!["events", p, "--format", "jsonl"]] {
        let kib = peak_rss_kib(&args);
        eprintln!("{label}: {} peak RSS {} KiB", args[0], kib);
        assert!(
            kib <= LIMIT_KIB,
            "{label}: {} used {kib} KiB (limit {LIMIT_KIB})",
            args[0]
        );
    }
}

#[test]
#[cfg_attr(not(shared_traces), ignore = "needs ../shared/traces")]
fn peak_rss_stays_flat_in_every_input_form() {
    let Some(shared) = shared() else { return };
    let large = shared.join("real/gcc-large");
    let tmp = tempfile::tempdir().unwrap();
    let v7 = tmp.path().join("v7-none.dat");
    let v6 = tmp.path().join("v6.dat");
    let o = nmitrace(&[
        "convert",
        large.join("trace.dat").to_str().unwrap(),
        "--compression",
        "none",
        "-o",
        v7.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = nmitrace(&[
        "convert",
        large.join("trace.dat").to_str().unwrap(),
        "--file-version",
        "6",
        "-o",
        v6.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let size = std::fs::metadata(&v7).unwrap().len();
    assert!(size > 150_000_000, "{size}");
    // Compressed by another process: the child's peak counts the parent's
    // resident set at the spawn (the kernel folds it in at exec), so this
    // process never holds a large buffer.
    let zst = tmp.path().join("v7-none.dat.zst");
    let z = std::process::Command::new("zstd")
        .args([
            "-q",
            "-1",
            v7.to_str().unwrap(),
            "-o",
            zst.to_str().unwrap(),
        ])
        .status();
    assert!(
        z.is_ok_and(|s| s.success()),
        "zstd (scripts/setup.sh installs it) failed"
    );
    check(&large.join("trace.dat"), "v7 zstd");
    check(&v7, "v7 uncompressed");
    check(&v6, "v6");
    check(&zst, "v7 uncompressed in a .zst");
    check(&large.join("trace.txt.zst"), "raw text, zstd");
    // A plain text file is mapped: the pages read must be given back.
    let txt = tmp.path().join("trace.txt");
    let z = std::process::Command::new("zstd")
        .args([
            "-q",
            "-d",
            large.join("trace.txt.zst").to_str().unwrap(),
            "-o",
            txt.to_str().unwrap(),
        ])
        .status();
    assert!(z.is_ok_and(|s| s.success()), "zstd -d failed");
    assert!(std::fs::metadata(&txt).unwrap().len() > 400_000_000);
    check(&txt, "raw text, plain (mapped)");
}
