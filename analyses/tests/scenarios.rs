//! Every scenario in `sample-traces/scenarios` gives exactly its expected
//! findings in all three text formats, and the real traces in
//! `../shared/traces/real` give no warning/error finding except
//! `trace_data_loss` (skipped when `../shared` is absent).

#[allow(unused_imports)]
use nmitrace_analyses::{Confidence, Kind, Severity};
use nmitrace_analyses::{Config, Report};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn analyze(path: &Path, cfg: &Config) -> Report {
    nmitrace_analyses::analyze_path(path, cfg)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .report
}

fn config(args: &[String]) -> Config {
    let mut c = Config::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => c.kernel = it.next().cloned(),
            "--arch" => c.arch = it.next().cloned(),
            "--b2b-threshold-ns" => c.b2b_threshold_ns = it.next().unwrap().parse().unwrap(),
            other => panic!("unknown arg {other}"),
        }
    }
    c
}

type Key = (String, String, String, Option<u64>);

fn expected(j: &serde_json::Value) -> BTreeMap<Key, u64> {
    let mut m = BTreeMap::new();
    for f in j["findings"].as_array().unwrap() {
        let k = (
            f["kind"].as_str().unwrap().to_string(),
            f["severity"].as_str().unwrap().to_string(),
            f["confidence"].as_str().unwrap().to_string(),
            f["cpu"].as_u64(),
        );
        *m.entry(k).or_default() += f["count"].as_u64().unwrap_or(1);
    }
    m
}

fn actual(r: &Report) -> BTreeMap<Key, u64> {
    let mut m = BTreeMap::new();
    for f in &r.findings {
        *m.entry((
            f.kind.to_string(),
            f.severity.to_string(),
            f.confidence.to_string(),
            f.cpu.map(u64::from),
        ))
        .or_default() += 1;
    }
    m
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-traces/scenarios")
}

#[test]
fn scenarios_give_exactly_their_expected_findings() {
    let dir = scenarios_dir();
    let mut runs = 0;
    let mut failures = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for sc in dirs {
        let mut exps: Vec<PathBuf> = std::fs::read_dir(&sc)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("expected") && n.ends_with(".json")
            })
            .collect();
        exps.sort();
        for exp in exps {
            let j: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&exp).unwrap()).unwrap();
            let args: Vec<String> = match &j["args"] {
                serde_json::Value::Array(a) => {
                    a.iter().map(|v| v.as_str().unwrap().to_string()).collect()
                }
                serde_json::Value::String(s) => s.split_whitespace().map(String::from).collect(),
                _ => Vec::new(),
            };
            let cfg = config(&args);
            let want = expected(&j);
            for file in ["trace.txt", "report.txt", "perf.txt"] {
                let p = sc.join(file);
                if !p.exists() {
                    failures.push(format!("{}: missing", p.display()));
                    continue;
                }
                let r = analyze(&p, &cfg);
                runs += 1;
                let got = actual(&r);
                if got != want {
                    let msgs: Vec<String> = r
                        .findings
                        .iter()
                        .map(|f| {
                            format!(
                                "  {} {} {} cpu {:?}: {}",
                                f.kind, f.severity, f.confidence, f.cpu, f.message
                            )
                        })
                        .collect();
                    failures.push(format!(
                        "{} with {}: expected {:?}\n got {:?}\n{}",
                        p.display(),
                        exp.file_name().unwrap().to_string_lossy(),
                        want,
                        got,
                        msgs.join("\n")
                    ));
                }
            }
        }
    }
    assert!(runs > 0, "no scenarios found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {runs} runs differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The same story replayed in three formats gives the same findings in the
/// same order with the same messages (not just the same multiset).
#[test]
fn scenario_formats_agree_on_timestamps() {
    let dir = scenarios_dir().join("perf-vmalloc-fault-in-switch-window");
    if !dir.exists() {
        return;
    }
    let cfg = config(&[
        "--kernel".into(),
        "2.6.35".into(),
        "--arch".into(),
        "x86_64".into(),
    ]);
    let reports: Vec<Report> = ["trace.txt", "report.txt", "perf.txt"]
        .iter()
        .map(|f| analyze(&dir.join(f), &cfg))
        .collect();
    let key = |r: &Report| {
        r.findings
            .iter()
            .map(|f| (f.kind.clone(), f.ts_ns, f.cpu, f.pid))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&reports[0]), key(&reports[1]));
    assert_eq!(key(&reports[0]), key(&reports[2]));
    for r in &reports {
        for f in &r.findings {
            assert!(!f.evidence.is_empty(), "{} has no evidence", f.kind);
        }
    }
}

fn real_traces() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/real");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for d in rd.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            for f in files.flatten() {
                v.push(f.path());
            }
        }
    }
    v.sort();
    v
}

fn check_real(p: &Path) {
    let r = analyze(p, &Config::default());
    let bad: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning && f.kind != Kind::TraceDataLoss)
        .map(|f| format!("{} {}: {}", f.kind, f.severity, f.message))
        .collect();
    assert!(bad.is_empty(), "{}: {}", p.display(), bad.join("\n"));
    // trace_data_loss only where the trace lost events.
    let losses = r
        .findings
        .iter()
        .filter(|f| f.kind == Kind::TraceDataLoss)
        .count() as u64;
    assert_eq!(losses, r.events.lost_event_markers, "{}", p.display());
}

#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn real_traces_give_no_warnings() {
    let traces = real_traces();
    if traces.is_empty() {
        eprintln!("../shared/traces/real absent: skipped");
        return;
    }
    eprintln!("checking {} real traces", traces.len());
    for p in traces {
        check_real(&p);
    }
}

/// The same scenarios, converted to trace.dat (v7 zstd and v6) with the
/// parser's writer, give the same findings: the analyses work unchanged on
/// binary input (flags from common_flags, no raw lines for evidence). The
/// writer gives each handler name a made-up address listed in the file's
/// kallsyms; the reader names the handlers from them again, so NMIs that
/// run several handlers keep them apart and the handler table is the same.
#[test]
fn scenarios_as_trace_dat_give_the_same_findings() {
    use nmitrace_parser::tracedat::{convert, WriterOptions};
    let dir = scenarios_dir();
    let tmp = std::env::temp_dir().join(format!("nmitrace-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    let mut runs = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for sc in dirs {
        let src = sc.join("trace.txt");
        let exp = sc.join("expected.json");
        if !src.exists() || !exp.exists() {
            continue;
        }
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&exp).unwrap()).unwrap();
        let args: Vec<String> = j["args"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let cfg = config(&args);
        let want = expected(&j);
        let text_handlers: Vec<(String, u64, u64)> = analyze(&src, &cfg)
            .nmis
            .by_handler
            .iter()
            .map(|(k, v)| (k.clone(), v.count, v.handled))
            .collect();
        for version in [7u32, 6] {
            let out = tmp.join(format!(
                "{}-v{version}.dat",
                sc.file_name().unwrap().to_string_lossy()
            ));
            let opts = WriterOptions {
                version,
                compression: if version == 7 {
                    nmitrace_parser::tracedat::compress::Compression::Zstd
                } else {
                    nmitrace_parser::tracedat::compress::Compression::None
                },
                ..WriterOptions::default()
            };
            convert(&src, std::fs::File::create(&out).unwrap(), opts)
                .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            let r = analyze(&out, &cfg);
            runs += 1;
            let got = actual(&r);
            if got != want {
                failures.push(format!(
                    "{} (trace.dat v{version}): expected {want:?}\n got {got:?}",
                    sc.display()
                ));
            }
            let handlers: Vec<(String, u64, u64)> = r
                .nmis
                .by_handler
                .iter()
                .map(|(k, v)| (k.clone(), v.count, v.handled))
                .collect();
            if handlers != text_handlers {
                failures.push(format!("{} (trace.dat v{version}): handlers {handlers:?}, the text gives {text_handlers:?}", sc.display()));
            }
            for f in &r.findings {
                if f.evidence.is_empty() {
                    failures.push(format!(
                        "{} v{version}: {} without evidence",
                        sc.display(),
                        f.kind
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(runs > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
