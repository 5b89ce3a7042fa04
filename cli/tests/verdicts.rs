//! A verdict a user can trust at a glance: what could be checked, every
//! assumption labelled with its source, one rendering per value, usage
//! errors for invalid model options, and messages said once.

mod common;

use common::*;
use std::path::Path;

fn text(args: &[&str]) -> String {
    let o = nmitrace(args);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

const HEAD: &str = "# tracer: nop\n#\n";

/// A trace without NMIs is `NOTHING TO CHECK`, never `CLEAN`, and says what to record.
#[test]
fn no_nmis_is_nothing_to_check_with_what_to_record() {
    let p = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    let j = analyze_json(&p, &[]);
    assert_eq!(
        j["coverage"]["verdict"],
        "NOTHING TO CHECK (no NMIs in the trace)"
    );
    assert!(j["coverage"]["record"]
        .as_str()
        .unwrap()
        .starts_with("trace-cmd record -e nmi"));
    let t = text(&["analyze", p.to_str().unwrap()]);
    assert!(
        t.contains("verdict: NOTHING TO CHECK (no NMIs in the trace)"),
        "{t}"
    );
    assert!(t.contains("record: trace-cmd record -e nmi"), "{t}");
}

/// NMIs but no tlb_flush and no page-fault events: `CLEAN (partial: …)`.
#[test]
fn missing_events_make_a_clean_verdict_partial() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "partial.txt",
        &format!(
            "{HEAD}            bash-100     [000] d..2.   100.000010: sched_switch: prev_comm=bash prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=cc1 next_pid=200 next_prio=120\n             cc1-200     [000] d.Z1.   100.000100: nmi_handler: perf_event_nmi_handler() delta_ns: 3000 handled: 1\n"
        ),
    );
    let j = analyze_json(Path::new(&p), &[]);
    let v = j["coverage"]["verdict"].as_str().unwrap();
    assert!(v.starts_with("CLEAN (partial: "), "{v}");
    assert!(
        v.contains("page faults in NMI not checked")
            && v.contains("context-switch windows partial"),
        "{v}"
    );
    let checks = j["coverage"]["checks"].as_array().unwrap();
    let w = checks
        .iter()
        .find(|c| c["analysis"] == "context-switch windows")
        .unwrap();
    assert!(w["why"]
        .as_str()
        .unwrap()
        .contains("no tlb:tlb_flush events"));
}

/// Everything recorded and nothing wrong: `CLEAN`; a warning: `WARNINGS`;
/// an error: `PROBLEMS FOUND`.
#[test]
fn clean_warnings_problems() {
    let real = repo().join("sample-traces/real/nmi-page-fault-copy-from-user.trace.txt.gz");
    assert_eq!(analyze_json(&real, &[])["coverage"]["verdict"], "CLEAN");
    let w = repo().join("sample-traces/real/nmi-switch-window-in-switch-to.trace.txt.gz");
    assert_eq!(analyze_json(&w, &[])["coverage"]["verdict"], "WARNINGS");
    let e = repo().join("sample-traces/scenarios/perf-vmalloc-fault-in-switch-window/trace.txt");
    assert_eq!(
        analyze_json(&e, &["--kernel", "2.6.35"])["coverage"]["verdict"],
        "PROBLEMS FOUND"
    );
}

/// A non-x86 trace gets no x86 replay: it says the NMI model is x86's and
/// reports counts only.
#[test]
fn a_non_x86_trace_is_not_replayed_as_x86() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "arm.txt",
        &format!(
            "{HEAD}            bash-100     [000] d..2.   100.000010: ipi_raise: target_mask=00000000,00000002 (Function call interrupts)\n            bash-100     [000] d..2.   100.000020: sched_switch: prev_comm=bash prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=cc1 next_pid=200 next_prio=120\n"
        ),
    );
    let j = analyze_json(Path::new(&p), &[]);
    assert_eq!(
        j["coverage"]["verdict"],
        "NOTHING TO CHECK (arm64 trace: the NMI model is x86's)"
    );
    assert_eq!(j["input"]["model"]["foreign_arch"], "arm64");
    assert_eq!(j["events"]["total"], 2, "counts still");
    let notes = j["input"]["model"]["notes"].to_string();
    assert!(
        notes.contains("only event counts and the time span"),
        "{notes}"
    );
}

/// Every assumption says where it came from: the trace, the command line or a default.
#[test]
fn assumptions_are_labelled_with_their_source() {
    let p = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    let src = |j: &serde_json::Value, what: &str| -> String {
        j["input"]["model"]["assumptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["what"] == what)
            .unwrap()["source"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let j = analyze_json(&p, &[]);
    assert_eq!(src(&j, "kernel"), "default");
    assert!(
        src(&j, "arch").starts_with("trace: event names"),
        "{}",
        src(&j, "arch")
    );
    assert_eq!(src(&j, "b2b_threshold_ns"), "default");
    assert_eq!(
        src(&j, "vmalloc_range"),
        "trace",
        "alloc_vmap_area vstart/vend"
    );
    assert!(
        j["input"]["kernel"].is_null(),
        "input.kernel is what the trace says: nothing"
    );
    let j = analyze_json(&p, &["--kernel", "5.4", "--b2b-threshold-ns", "900"]);
    assert_eq!(src(&j, "kernel"), "command line");
    assert_eq!(src(&j, "b2b_threshold_ns"), "command line");
    let t = text(&["analyze", p.to_str().unwrap()]);
    assert!(t.contains("assumed: kernel 6.18 (default)"), "{t}");
}

/// A field the kernel prints in hex without `0x` (`task_newtask`'s
/// `clone_flags=%llx`) is one number in every form: text and trace.dat agree.
#[test]
fn hex_printed_fields_are_the_same_number_from_text_and_trace_dat() {
    let d = tempfile::tempdir().unwrap();
    let src = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    let dat = d.path().join("x.dat");
    let o = nmitrace(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        dat.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let first = |p: &str| -> serde_json::Value {
        let t = text(&["events", p]);
        serde_json::from_str(
            t.lines()
                .find(|l| l.contains("\"task_newtask\""))
                .expect("a task_newtask event"),
        )
        .unwrap()
    };
    let a = first(src.to_str().unwrap());
    let b = first(dat.to_str().unwrap());
    assert_eq!(
        a["fields"]["clone_flags"], 0x4100,
        "text `clone_flags=4100` is hex"
    );
    assert_eq!(a["fields"]["clone_flags"], b["fields"]["clone_flags"]);
    let csv = text(&["events", src.to_str().unwrap(), "--format", "csv"]);
    assert!(
        csv.lines()
            .any(|l| l.contains("task_newtask") && l.contains("clone_flags=16640")),
        "csv too"
    );
}

/// Invalid --kernel / --arch values are usage errors that list the accepted forms.
#[test]
fn invalid_model_options_are_usage_errors() {
    let p = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    for (opt, val, want) in [
        ("--kernel", "banana", "e.g. 2.6.35, 5.8"),
        ("--arch", "sparc", "x86_64"),
    ] {
        let o = nmitrace(&["analyze", p.to_str().unwrap(), opt, val]);
        assert_eq!(o.status.code(), Some(2), "{opt} {val}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(val) && e.contains(want), "{e}");
    }
}

/// Errors are said once; a directory points at `batch`; the text report
/// lists parse warnings and unparsed lines with their line numbers.
#[test]
fn messages_are_said_once_with_line_numbers() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.dat");
    let o = nmitrace(&["analyze", missing.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    let o = nmitrace(&["analyze", d.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nmitrace batch"),
        "a directory points at batch"
    );
    let p = write(
        d.path(),
        "warn.txt",
        &format!("{HEAD}            bash-100     [000] d..2.   100.000010: sched_wakeup: comm=x pid=1 prio=120 target_cpu=000\nthis is no event line\n            bash-100     [000] d..2.   100.000020: sched_wakeup: comm=x pid=1 prio=120 target_cpu=000"),
    );
    let t = text(&["analyze", &p]);
    assert!(
        t.contains("unparsed lines: 1") && t.contains("line 4: this is no event line"),
        "{t}"
    );
    assert!(
        t.contains("warnings: 1") && t.contains("last line has no newline"),
        "{t}"
    );
}
