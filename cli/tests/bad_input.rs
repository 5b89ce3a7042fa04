//! Bad input never panics: it gives exit 2 with a message naming the file,
//! where, and what was expected, or a warning with the rest analysed.

mod common;

use common::*;
use std::io::Write;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "panic: {e}");
    assert_ne!(o.status.code(), Some(101), "panic exit: {e}");
}

fn write_tmp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

const GOOD: &str = "\
# tracer: nop
#
          <idle>-0       [000] d..2.   608.685943: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=sh next_pid=12897 next_prio=120
          <idle>-0       [000] d..2.   608.685944: tlb_flush: pages:0 reason:flush on task switch (0)
              sh-12897   [000] .....   608.685987: page_fault_user: address=0x7f34e74e5408 ip=0x55f74c9e143d error_code=0x7
";

#[test]
fn binary_garbage_is_exit_2_naming_the_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let mut junk = vec![0u8; 4096];
    let mut x: u32 = 12345;
    for b in junk.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let p = write_tmp(&d, "garbage.bin", &junk);
    for cmd in ["analyze", "events"] {
        let o = nmitrace(&[cmd, &p]);
        assert_no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        let e = stderr(&o);
        assert!(
            e.contains("garbage.bin") && e.contains("byte ") && e.contains("expected"),
            "{e}"
        );
    }
}

#[test]
fn empty_file_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let p = write_tmp(&d, "empty.txt", b"");
    let o = nmitrace(&["analyze", &p]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("empty.txt") && stderr(&o).contains("empty input"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn comments_only_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let p = write_tmp(&d, "header.txt", b"# tracer: nop\n#\n");
    let o = nmitrace(&["analyze", &p]);
    assert_no_panic(&o);
    // A tracefs header with no events is a valid, empty trace.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let p = write_tmp(&d, "prose.txt", b"hello world\nthis is not a trace\n");
    let o = nmitrace(&["analyze", &p]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("prose.txt: line 1:") && e.contains("expected"),
        "{e}"
    );
}

#[test]
fn directory_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let o = nmitrace(&["analyze", d.path().to_str().unwrap()]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
}

#[test]
fn missing_file_is_exit_2() {
    let o = nmitrace(&["analyze", "/nonexistent/trace.dat"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/trace.dat"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_usage_is_exit_2() {
    let o = nmitrace(&["analyze"]);
    assert_eq!(o.status.code(), Some(2));
    let o = nmitrace(&["analyze", "x", "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

fn many_lines() -> String {
    let mut body = String::new();
    for i in 0..20_000 {
        body.push_str(&format!(
            "              sh-12897   [000] .....   {}.{:06}: page_fault_user: address=0x7f34e74e{:04x} ip=0x55f74c9e143d error_code=0x7\n",
            600 + i / 1000,
            i % 1000,
            (i * 7919) % 65536
        ));
    }
    body
}

#[test]
fn truncated_gzip_warns_and_analyses_what_was_read() {
    let d = tempfile::tempdir().unwrap();
    let body = many_lines();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let cut = &gz[..gz.len() / 2];
    let p = write_tmp(&d, "cut.txt.gz", cut);
    let o = nmitrace(&["analyze", "--format", "json", &p]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total = doc["events"]["total"].as_u64().unwrap();
    assert!(
        total > 1000 && total < 20_000,
        "events read before the cut: {total}"
    );
    assert!(doc["parse"]["warnings"].as_u64().unwrap() >= 1);
    let msgs = doc["parse"]["warning_examples"].to_string();
    assert!(msgs.contains("gzip"), "{msgs}");
}

#[test]
fn truncated_zstd_warns() {
    let d = tempfile::tempdir().unwrap();
    let body = many_lines();
    let z = zstd::stream::encode_all(body.as_bytes(), 3).unwrap();
    let p = write_tmp(&d, "cut.txt.zst", &z[..z.len() * 2 / 3]);
    let o = nmitrace(&["analyze", "--format", "json", &p]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["parse"]["warning_examples"]
        .to_string()
        .contains("zstd"));
    let total = doc["events"]["total"].as_u64().unwrap();
    assert!(
        total > 1000 && total < 20_000,
        "events read before the cut: {total}"
    );
    // Cut inside the first block: nothing decodes, so it is an error that says so.
    let p = write_tmp(&d, "tiny.txt.zst", &z[..20]);
    let o = nmitrace(&["analyze", &p]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("tiny.txt.zst: zstd stream is corrupt or truncated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn line_cut_in_half_is_a_warning_and_the_rest_is_analysed() {
    let d = tempfile::tempdir().unwrap();
    let mut t = GOOD.to_string();
    t.push_str("              sh-12897   [000] .....   608.685990: page_fault_us");
    let p = write_tmp(&d, "torn.txt", t.as_bytes());
    let o = nmitrace(&["analyze", "--format", "json", &p]);
    assert_no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["events"]["total"], 3);
    assert_eq!(doc["parse"]["warnings"], 1);
    assert!(
        doc["parse"]["warning_examples"][0]["at"] == "line 6",
        "{}",
        doc["parse"]
    );
}

#[test]
fn malformed_lines_in_the_middle_are_counted_with_line_numbers() {
    let d = tempfile::tempdir().unwrap();
    let mut t = GOOD.to_string();
    t.push_str("this line is noise\n");
    t.push_str("              sh-12897   [000] .....   notatime: page_fault_user: address=0x1\n");
    t.push_str(GOOD.lines().nth(4).unwrap());
    t.push('\n');
    let p = write_tmp(&d, "noisy.txt", t.as_bytes());
    let doc = analyze_json(std::path::Path::new(&p), &[]);
    assert_eq!(doc["events"]["total"], 4);
    assert_eq!(doc["parse"]["unparsed_lines"], 2);
    assert_eq!(doc["parse"]["unparsed_examples"][0]["at"], "line 6");
    assert_eq!(doc["parse"]["unparsed_examples"][1]["at"], "line 7");
    assert_eq!(
        doc["parse"]["unparsed_examples"][1]["reason"],
        "malformed timestamp"
    );
}

#[test]
fn stdin_is_read_with_dash() {
    use std::process::{Command, Stdio};
    let mut c = Command::new(env!("CARGO_BIN_EXE_nmitrace"))
        .args(["analyze", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(GOOD.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["events"]["total"], 3);
    assert_eq!(doc["input"]["path"], "-");
}

/// Mutated real lines (cut, bytes replaced, duplicated) never panic the parser.
#[test]
fn mutated_lines_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let base = String::from_utf8(read_decompressed(
        &repo().join("sample-traces/real/shell-python.report.txt.gz"),
    ))
    .unwrap();
    let lines: Vec<&str> = base.lines().take(400).collect();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::from("cpus=2\n");
    for _ in 0..5000 {
        let l = lines[(next() % lines.len() as u64) as usize];
        let mut b = l.as_bytes().to_vec();
        match next() % 4 {
            0 => b.truncate((next() % (b.len() as u64 + 1)) as usize),
            1 => {
                for _ in 0..3 {
                    let i = (next() % b.len().max(1) as u64) as usize;
                    if i < b.len() {
                        b[i] = b"[]:-=. (0123456789abcdef)\t>"[(next() % 27) as usize];
                    }
                }
            }
            2 => b.extend_from_slice(l.as_bytes()),
            _ => {}
        }
        out.push_str(&String::from_utf8_lossy(&b));
        out.push('\n');
    }
    let p = write_tmp(&d, "mutated.txt", out.as_bytes());
    for cmd in [vec!["analyze", "--format", "json", &p], vec!["events", &p]] {
        let o = nmitrace(&cmd);
        assert_no_panic(&o);
        assert!(
            matches!(o.status.code(), Some(0) | Some(1)),
            "{}",
            stderr(&o)
        );
    }
}

/// An exit status a user may get: 0, 1 or 2 (never a panic, 101, or a signal).
fn assert_clean_exit(o: &Output, what: &str) {
    assert_no_panic(o);
    let e = stderr(o);
    assert!(!e.contains("internal error"), "{what}: {e}");
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "{what}: status {:?} (a signal if None): {e}",
        o.status.code()
    );
}

/// Inputs that once panicked, whole-process: a blank comm before the PID
/// (the line grammar sliced past its end, during detection) and a v6
/// trace.dat whose `header_page` puts `data` at offset 8, right after the
/// 8-byte commit field, cut 12 bytes into CPU 1's page (the page decoder
/// read past the page, in a decoder thread).
#[test]
fn inputs_that_once_panicked_exit_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let blank = write_tmp(&d, "blank-comm.txt", b" 5 [000] 5.000000: x: y\n");
    let o = nmitrace(&["analyze", &blank]);
    assert_clean_exit(&o, "blank comm");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("blank-comm.txt: line 1")
            && stderr(&o).contains("no task name before the PID"),
        "{}",
        stderr(&o)
    );
    let dat = repo().join("fuzz/regressions/tracedat/v6-data-offset-8-page-cut-at-12.dat");
    for cmd in ["analyze", "events"] {
        let o = nmitrace(&[cmd, dat.to_str().unwrap()]);
        assert_clean_exit(&o, cmd);
    }
    let o = nmitrace(&["analyze", "--format", "json", dat.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let w = doc["parse"]["warning_examples"].to_string();
    assert!(
        w.contains("shorter than its 16-byte header"),
        "the cut page is a warning naming the offset: {w}"
    );
}

/// Line mutations of real traces in each text format, through the whole
/// binary (the in-process test does 1,000 per format): clean exits only.
#[test]
fn mutated_real_traces_exit_cleanly_in_every_format() {
    let d = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (k, f) in [
        "shell-python.trace.txt.gz",
        "shell-python.report.txt.gz",
        "shell-python.perf-script.txt.gz",
        "nmi-switch-window-before-flush.trace.txt.gz",
    ]
    .iter()
    .enumerate()
    {
        let base = read_decompressed(&repo().join("sample-traces/real").join(f));
        let mut lines: Vec<Vec<u8>> = base
            .split(|&c| c == b'\n')
            .take(600)
            .map(|l| l.to_vec())
            .collect();
        for _ in 0..400 {
            let i = (next() % lines.len() as u64) as usize;
            let l = &mut lines[i];
            let p = (next() % (l.len() as u64 + 1)) as usize;
            match next() % 4 {
                0 => l.truncate(p),
                1 => {
                    let e = (p + 1 + (next() % 5) as usize).min(l.len());
                    l.drain(p..e);
                }
                _ => l.insert(p, b"-[]:.=Z( "[(next() % 9) as usize]),
            }
        }
        let p = write_tmp(&d, &format!("m{k}.txt"), &lines.join(&b'\n'));
        for cmd in [
            vec!["analyze", "--format", "json", &p],
            vec!["events", &p],
            vec!["convert", &p, "-o"],
        ] {
            let mut cmd = cmd;
            let out = d.path().join(format!("m{k}.dat"));
            if cmd[0] == "convert" {
                cmd.push(out.to_str().unwrap());
            }
            let o = nmitrace(&cmd);
            assert_clean_exit(&o, &format!("{cmd:?} on {f}"));
        }
    }
}

/// A batch walk a fleet can trust: a symlink back to an ancestor, a second
/// hard link and a FIFO (in the tree and given as a path) — each file once,
/// the FIFO skipped and listed, never opened (it would block).
#[test]
fn batch_walks_each_file_once_and_never_opens_a_fifo() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    let trace = tree.join("a/t.txt.gz");
    std::fs::copy(
        repo().join("sample-traces/real/shell-python.trace.txt.gz"),
        &trace,
    )
    .unwrap();
    std::os::unix::fs::symlink(&tree, tree.join("a/b/loop")).unwrap();
    std::fs::hard_link(&trace, tree.join("a/b/again.txt.gz")).unwrap();
    let fifo = tree.join("fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let out = d.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nmitrace"))
        .args([
            "batch",
            tree.to_str().unwrap(),
            fifo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("batch blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_clean_exit(&o, "batch");
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(so.starts_with("1 trace: 1 analysed"), "{so}");
    assert!(so.contains("fifo: a FIFO"), "{so}");
    assert!(so.contains("loop: directory seen already"), "{so}");
    assert!(so.contains("the same file as one listed before"), "{so}");
    assert_eq!(
        so.matches("a FIFO").count(),
        1,
        "the FIFO listed once: {so}"
    );
}

/// `--timeout`: a trace that takes longer gets a failed row saying so; the
/// batch goes on and exits 0.
#[test]
fn batch_timeout_fails_the_slow_trace_only() {
    let d = tempfile::tempdir().unwrap();
    let big = write_tmp(&d, "big.txt", many_lines().repeat(40).as_bytes());
    let small = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    let out = d.path().join("out");
    let o = nmitrace(&[
        "batch",
        &big,
        small.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "0.000001",
        "--jobs",
        "1",
    ]);
    assert_clean_exit(&o, "batch --timeout");
    assert_eq!(o.status.code(), Some(0));
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        so.contains("failed: ") && so.contains("gave up after") && so.contains("--timeout"),
        "{so}"
    );
    let o = nmitrace(&[
        "batch",
        &big,
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "-3",
    ]);
    assert_eq!(o.status.code(), Some(2), "a negative timeout is bad usage");
}

/// `events BIG | head -1` returns at once: the closed pipe stops the reader
/// (quietly, exit 0), it does not decode the rest.
#[test]
fn a_closed_pipe_stops_the_reading_quietly() {
    let d = tempfile::tempdir().unwrap();
    let big = write_tmp(&d, "big.txt", many_lines().repeat(200).as_bytes());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nmitrace"))
        .args(["events", &big])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    let mut so = child.stdout.take().unwrap();
    std::io::Read::read_exact(&mut so, &mut first).unwrap();
    drop(so);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "quiet: {}", stderr(&o));
}
