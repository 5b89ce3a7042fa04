//! Exit status contract: 0 fine, 1 a finding at or above --fail-on, 2 bad input.

mod common;
use common::*;

#[test]
fn fail_on_gates_exit_status_by_severity() {
    let t = repo().join("sample-traces/scenarios/perf-vmalloc-fault-in-switch-window/trace.txt");
    let t = t.to_str().unwrap();
    let k = ["--kernel", "2.6.35", "--arch", "x86_64"];
    let run = |extra: &[&str]| {
        let mut a = vec!["analyze", t];
        a.extend_from_slice(&k);
        a.extend_from_slice(extra);
        nmitrace(&a).status.code()
    };
    // This scenario has error findings.
    assert_eq!(
        run(&[]),
        Some(0),
        "no --fail-on: findings do not change the exit status"
    );
    assert_eq!(run(&["--fail-on", "error"]), Some(1));
    assert_eq!(run(&["--fail-on", "warning"]), Some(1));
    assert_eq!(run(&["--fail-on", "never"]), Some(0));
    // A real 6.18 trace has no warning or error findings.
    let real = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    assert_eq!(
        nmitrace(&["analyze", real.to_str().unwrap(), "--fail-on", "warning"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn several_traces_give_a_json_array_and_the_worst_status() {
    let a = repo().join("sample-traces/real/shell-python.report.txt.gz");
    let b = repo().join("sample-traces/scenarios/unknown-nmi/trace.txt");
    let o = nmitrace(&[
        "analyze",
        "--format",
        "json",
        "--fail-on",
        "warning",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc.as_array().map(|v| v.len()), Some(2));
    assert_eq!(doc[1]["summary"]["unknown_nmi"], 1);
}
