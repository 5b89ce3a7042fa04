//! `nmitrace batch`: one row per trace over the sample traces and (when
//! present) ../shared/traces; failures recorded, never fatal; a second batch
//! with one injected NMI scenario, against the first as baseline, reports
//! exactly that regression and exits 1.

mod common;
use common::*;
use polars::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn read(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(f).finish().unwrap()
}

fn strings(df: &DataFrame, col: &str) -> Vec<Option<String>> {
    df.column(col)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.map(String::from))
        .collect()
}

/// Every file under `dir` that is not documentation, data or a script: the traces.
fn expected_traces(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            expected_traces(&p, out);
        } else if !name.ends_with(".md") && !name.ends_with(".json") && !name.ends_with(".py") {
            out.insert(p.display().to_string());
        }
    }
}

fn batch(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["batch".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--out".to_string(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    nmitrace(&a)
}

/// The perf scenario with its NMI's fault moved from the per-cpu chunk
/// (vmalloc) to module space: a page fault in NMI that is not a vmalloc
/// fault, a kind no baseline trace has.
fn injected_scenario(dir: &Path) -> PathBuf {
    let src = repo().join("sample-traces/scenarios/perf-vmalloc-fault-in-switch-window/trace.txt");
    let text = std::fs::read_to_string(src).unwrap();
    let old = "address=0xffffe8ffffe03a40 ip=perf_callchain";
    assert_eq!(text.matches(old).count(), 1);
    let p = dir.join("injected-nmi-page-fault.trace.txt");
    std::fs::write(
        &p,
        text.replace(old, "address=0xffffffffc0123456 ip=perf_callchain"),
    )
    .unwrap();
    p
}

#[test]
fn fleet_batch_then_baseline_reports_exactly_the_injected_regression() {
    let mut inputs = vec![repo().join("sample-traces")];
    if let Some(s) = shared() {
        inputs.push(s);
    } else {
        eprintln!("../shared/traces absent: batch over the sample traces only");
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let o = batch(&inputs, &base, &["--jobs", "2"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // One row per trace, every one analysed.
    let mut want = BTreeSet::new();
    for i in &inputs {
        expected_traces(i, &mut want);
    }
    let traces = read(&base.join("traces.parquet"));
    let paths: BTreeSet<String> = strings(&traces, "path")
        .into_iter()
        .map(|p| p.unwrap())
        .collect();
    assert_eq!(traces.height(), paths.len(), "one row per trace");
    assert_eq!(paths, want);
    let status = strings(&traces, "status");
    let failed: Vec<_> = paths
        .iter()
        .zip(&status)
        .filter(|(_, s)| s.as_deref() != Some("ok"))
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
    for col in [
        "events",
        "lost_events",
        "nmi_instances",
        "findings",
        "nmi_vmalloc_fault",
        "slow_nmi_handler",
        "trace_data_loss",
    ] {
        assert_eq!(
            traces.column(col).unwrap().dtype(),
            &DataType::UInt64,
            "{col}"
        );
    }
    // The scenarios' findings are there.
    let findings = read(&base.join("findings.parquet"));
    let kinds: BTreeSet<String> = strings(&findings, "kind")
        .into_iter()
        .map(|k| k.unwrap())
        .collect();
    for k in [
        "nmi_vmalloc_fault",
        "cr3_current_mismatch",
        "unknown_nmi",
        "swallowed_nmi",
        "slow_nmi_handler",
        "nested_nmi",
    ] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    // Real faults in NMI context are in the fleet (../shared/traces/real-nmi/io:
    // nmi_cpu_backtrace's copy_from_user_nmi reading the interrupted user code),
    // at info: the kernel fixes them up. None at warning or above.
    let sev = strings(&findings, "severity");
    let kind_col = strings(&findings, "kind");
    let bad_faults: Vec<_> = kind_col
        .iter()
        .zip(&sev)
        .filter(|(k, s)| k.as_deref() == Some("nmi_page_fault") && s.as_deref() != Some("info"))
        .collect();
    assert!(bad_faults.is_empty(), "{bad_faults:?}");
    let sum: u64 = traces
        .column("findings")
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .sum();
    assert_eq!(sum as usize, findings.height());
    for f in [
        "report.html",
        "nmi_durations.parquet",
        "plots/finding_rates.png",
        "plots/fleet_nmi_latency.svg",
    ] {
        assert!(base.join(f).is_file(), "{f}");
    }

    // Same fleet plus one injected NMI scenario, against the first batch.
    let inj_dir = tmp.path().join("injected");
    std::fs::create_dir(&inj_dir).unwrap();
    injected_scenario(&inj_dir);
    let mut inputs2 = inputs.clone();
    inputs2.push(inj_dir);
    let new = tmp.path().join("new");
    let o = batch(&inputs2, &new, &["--baseline", base.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("REGRESSIONS against"), "{stdout}");
    let reg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("regressions.json")).unwrap())
            .unwrap();
    let reg = reg.as_array().unwrap();
    assert_eq!(reg.len(), 1, "exactly the injected regression: {reg:#?}");
    assert_eq!(reg[0]["what"], "finding rate");
    assert_eq!(reg[0]["kind_or_handler"], "nmi_page_fault");
    assert_eq!(
        read(&new.join("traces.parquet")).height(),
        traces.height() + 1
    );
    for f in [
        "plots/regression_finding_rates.png",
        "plots/regression_nmi_p99.svg",
    ] {
        assert!(new.join(f).is_file(), "{f}");
    }
    let html = std::fs::read_to_string(new.join("report.html")).unwrap();
    assert!(html.contains("1 regression(s)") && html.contains("nmi_page_fault"));

    // The same batch against itself: no regression, exit 0.
    let again = tmp.path().join("again");
    let o = batch(
        &inputs2,
        &again,
        &["--baseline", new.to_str().unwrap(), "--jobs", "1"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("no regression"));
}

#[test]
fn failures_are_recorded_and_non_traces_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("in");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("README.md"), "# notes\n").unwrap();
    std::fs::write(d.join("notes.txt"), "just some words\nnot a trace at all\n").unwrap();
    std::fs::write(d.join("bad.dat"), b"\x17\x08\x44tracing9\0garbage").unwrap();
    let good = repo().join("sample-traces/scenarios/unknown-nmi/trace.txt");
    std::fs::copy(&good, d.join("good.txt")).unwrap();
    // A gzip stream cut short: the trace is analysed up to the cut, with a warning.
    let gz = std::fs::read(repo().join("sample-traces/real/shell-python.trace.txt.gz")).unwrap();
    std::fs::write(d.join("cut.txt.gz"), &gz[..gz.len() / 2]).unwrap();
    let out = tmp.path().join("out");
    let o = batch(&[d.clone()], &out, &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = read(&out.join("traces.parquet"));
    let rows: Vec<(String, String)> = strings(&t, "path")
        .into_iter()
        .zip(strings(&t, "status"))
        .map(|(p, s)| {
            (
                Path::new(&p.unwrap())
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
                s.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("bad.dat".into(), "failed".into()),
            ("cut.txt.gz".into(), "ok".into()),
            ("good.txt".into(), "ok".into())
        ],
        "{stdout}"
    );
    let err = strings(&t, "error");
    assert!(err[0].as_deref().unwrap().contains("version 9"), "{err:?}");
    assert!(
        stdout.contains("1 failed") && stdout.contains("2 other files skipped"),
        "{stdout}"
    );
}

/// `--files-from`: a shard's list of paths (a file, or `-` for standard
/// input), blank lines and comments ignored, analysed as if named.
#[test]
fn files_from_lists_a_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let a = repo().join("sample-traces/scenarios/unknown-nmi/trace.txt");
    let b = repo().join("sample-traces/scenarios/lost-nmis/trace.txt");
    let list = tmp.path().join("shard.txt");
    std::fs::write(
        &list,
        format!("# shard 1 of 2\n{}\n\n{}\n", a.display(), b.display()),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = batch(&[], &out, &["--files-from", list.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let paths: BTreeSet<String> = strings(&read(&out.join("traces.parquet")), "path")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        paths,
        [a.display().to_string(), b.display().to_string()]
            .into_iter()
            .collect()
    );
    // The same list on standard input.
    let out2 = tmp.path().join("out2");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nmitrace"))
        .args([
            "batch",
            "--files-from",
            "-",
            "--out",
            out2.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{}\n", a.display()).as_bytes(),
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        strings(&read(&out2.join("traces.parquet")), "path"),
        vec![Some(a.display().to_string())]
    );
    // A list that cannot be read is a clear error.
    let o = batch(
        &[],
        &tmp.path().join("out3"),
        &["--files-from", "/nonexistent/list"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--files-from /nonexistent/list"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every table of a batch output but the per-trace wall time.
fn tables_without_timing(dir: &Path) -> Vec<(String, DataFrame)> {
    ["traces", "findings", "nmi_durations", "skipped"]
        .iter()
        .map(|t| {
            let mut df = read(&dir.join(format!("{t}.parquet")));
            if *t == "traces" {
                df = df.drop("seconds").unwrap();
            }
            (t.to_string(), df)
        })
        .collect()
}

#[test]
fn merge_of_shards_equals_one_batch_and_gates_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = [repo().join("sample-traces"), tmp.path().join("extra")];
    std::fs::create_dir_all(&inputs[1]).unwrap();
    injected_scenario(&inputs[1]);
    std::fs::write(inputs[1].join("garbage.bin"), b"\x00\x01 not a trace").unwrap();
    let whole = tmp.path().join("whole");
    let o = batch(&inputs, &whole, &["--jobs", "2"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The same files in three shards, by the batch's own walk order.
    let paths = strings(&read(&whole.join("traces.parquet")), "path");
    let skipped = strings(&read(&whole.join("skipped.parquet")), "path");
    let mut all: Vec<String> = paths.into_iter().flatten().collect();
    all.extend(skipped.into_iter().flatten());
    assert!(all.len() > 40, "{}", all.len());
    // The walk's order: the inputs in turn, each depth first with every
    // directory sorted (by path components, not as one string).
    let root = tmp.path().display().to_string();
    all.sort_by_key(|p| {
        (
            p.starts_with(&root),
            p.split('/').map(str::to_string).collect::<Vec<_>>(),
        )
    });
    let n = all.len();
    let mut parts = Vec::new();
    for (i, chunk) in [&all[..n / 3], &all[n / 3..2 * n / 3], &all[2 * n / 3..]]
        .iter()
        .enumerate()
    {
        let list = tmp.path().join(format!("shard{i}.txt"));
        std::fs::write(&list, chunk.join("\n")).unwrap();
        let part = tmp.path().join(format!("part{i}"));
        let o = batch(&[], &part, &["--files-from", list.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        parts.push(part.display().to_string());
    }
    let merged = tmp.path().join("merged");
    let mut args = vec!["merge"];
    args.extend(parts.iter().map(|s| s.as_str()));
    args.extend(["--out", merged.to_str().unwrap()]);
    let o = nmitrace(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (w, m) = (
        tables_without_timing(&whole),
        tables_without_timing(&merged),
    );
    for ((name, a), (_, b)) in w.iter().zip(&m) {
        assert!(a.height() > 0, "{name}");
        assert!(
            a.equals_missing(b),
            "{name}: merged differs from the whole batch"
        );
    }
    assert!(
        merged.join("report.html").exists() && merged.join("plots/fleet_nmi_latency.svg").exists()
    );

    // The gate: the sample traces alone are the baseline; the injected
    // scenario's nmi_page_fault is a regression, for the batch and the merge alike.
    let base = tmp.path().join("base");
    assert_eq!(batch(&inputs[..1], &base, &[]).status.code(), Some(0));
    let b = batch(
        &inputs,
        &tmp.path().join("whole-gated"),
        &["--baseline", base.to_str().unwrap()],
    );
    args.pop();
    let gated = tmp.path().join("merged-gated");
    args.extend([
        gated.to_str().unwrap(),
        "--baseline",
        base.to_str().unwrap(),
    ]);
    let m = nmitrace(&args);
    assert_eq!(
        b.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&b.stdout)
    );
    assert_eq!(
        m.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&m.stdout)
    );
    let regs = |d: &Path| std::fs::read_to_string(d.join("regressions.json")).unwrap();
    assert_eq!(regs(&tmp.path().join("whole-gated")), regs(&gated));
    assert!(regs(&gated).contains("nmi_page_fault"), "{}", regs(&gated));

    // Not a batch output: a clear error naming it.
    let o = nmitrace(&[
        "merge",
        tmp.path().join("extra").to_str().unwrap(),
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("extra: not a batch output"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
