//! Real NMIs, judged against the kernel's own register dumps.
//!
//! Every capture of `../shared/traces/real-nmi` (and of this repository's
//! own recordings in `tests/data/real-nmi`, trimmed by
//! `scripts/trim-capture.py`) holds real NMIs whose `nmi_cpu_backtrace` dump
//! was traced; `truth.json` says, from those dumps alone
//! (`../shared/tools/label-real-nmis.py`), whether each NMI ran in a
//! context-switch window. Each capture is analysed in every form it has
//! (trace.dat, raw tracefs text, `trace-cmd report`, `perf script`) and as
//! raw text with the console lines removed (no dumps), and:
//! - every NMI the dumps put inside a window is reported;
//! - with the dumps, no `cr3_current_mismatch` lands on an NMI they put outside;
//! - without them, none is `observed`, and an `inferred` one only on an NMI
//!   stamped with prev's pid between `sched_switch` and its reason-0 flush
//!   (checked on the raw lines here, not by the analyser's own account);
//! - every page fault the dumps saw inside an NMI is an `nmi_page_fault`;
//! - nothing else is a warning or an error.

#[allow(unused_imports)]
use nmitrace_analyses::{Confidence, Kind, Severity};
use nmitrace_analyses::{Config, Finding, Report};
use nmitrace_parser::{Input, Trace};
use std::path::{Path, PathBuf};

struct Truth {
    cpu: u32,
    ts_ns: u64,
    pid: i32,
    rip: String,
    in_window: Option<bool>,
    faults: usize,
}

fn truths(path: &Path) -> Vec<(String, Vec<Truth>)> {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut v: Vec<(String, Vec<Truth>)> = j
        .as_object()
        .unwrap()
        .iter()
        .map(|(cap, ns)| {
            let ns = ns
                .as_array()
                .unwrap()
                .iter()
                .map(|n| Truth {
                    cpu: n["cpu"].as_u64().unwrap() as u32,
                    ts_ns: n["ts_us"].as_u64().unwrap() * 1000,
                    pid: n["pid"].as_i64().unwrap_or(-1) as i32,
                    rip: n["rip"].as_str().unwrap_or("?").to_string(),
                    in_window: n["in_window"].as_bool(),
                    faults: n["faults_in_nmi"].as_array().map_or(0, |a| a.len()),
                })
                .collect();
            (cap.clone(), ns)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn analyze_input(name: &str, input: Input) -> Report {
    let mut t =
        Trace::from_input(name.to_string(), input).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.probe().unwrap();
    nmitrace_analyses::analyze_trace(t, &Config::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .report
}

fn read_all(p: &Path) -> Vec<u8> {
    Input::open(p).unwrap().into_bytes().unwrap().to_vec()
}

/// Does a finding belong to this NMI (same CPU, the dump's first line inside
/// the NMI's interval; the event clock may run a few µs off delta_ns)?
fn matches(f: &Finding, t: &Truth) -> bool {
    let s = f
        .details_json()
        .get("nmi_start_ns")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let e = f
        .details_json()
        .get("nmi_end_ns")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    f.cpu == Some(t.cpu) && s.saturating_sub(20_000) <= t.ts_ns && t.ts_ns <= e + 2_000
}

/// From the raw lines alone: was the NMI stamped with prev's pid after its
/// CPU's last `sched_switch` away from that pid, with no reason-0 flush by
/// it and no event of next since?
fn stamped_prev_before_flush(raw: &str, t: &Truth) -> bool {
    let cpu_tag = format!("[{:03}]", t.cpu);
    let lines: Vec<&str> = raw
        .lines()
        .filter(|l| l.contains(&cpu_tag) && !l.starts_with('#'))
        .collect();
    let ts_of = |l: &str| -> u64 {
        let after = &l[l.find(&cpu_tag).unwrap() + cpu_tag.len()..];
        let tok = after
            .split_whitespace()
            .find(|w| w.ends_with(':') && w.contains('.'))
            .unwrap_or("0:");
        let (s, us) = tok.trim_end_matches(':').split_once('.').unwrap();
        s.parse::<u64>().unwrap() * 1_000_000_000 + us[..6].parse::<u64>().unwrap() * 1000
    };
    let Some(at) = lines
        .iter()
        .position(|l| l.contains(": nmi_handler:") && ts_of(l) >= t.ts_ns)
    else {
        return false;
    };
    let stamp = format!("-{} ", t.pid);
    for l in lines[..at].iter().rev() {
        if l.contains(": sched_switch:") {
            return l.contains(&format!("prev_pid={} ", t.pid));
        }
        if !l.contains(&stamp) {
            return false; // another task ran since
        }
        if l.contains(": tlb_flush:") && l.contains("reason:flush on task switch (0)") {
            return false; // after the flush: that would be observed, not inferred
        }
    }
    false
}

#[derive(Default)]
struct Tally {
    runs: usize,
    nmis: usize,
    in_window: usize,
    failures: Vec<String>,
}

fn check_capture(dir: &Path, truth: &[Truth], tally: &mut Tally) {
    let name = dir.display().to_string();
    let mut forms: Vec<(&str, Report)> = Vec::new();
    for (form, file) in [
        ("trace.dat", "trace.dat"),
        ("raw", "trace.txt.gz"),
        ("report", "report.txt.gz"),
        ("perf", "perf.txt.gz"),
    ] {
        let p = dir.join(file);
        if p.exists() {
            forms.push((
                form,
                analyze_input(&p.display().to_string(), Input::open(&p).unwrap()),
            ));
        }
    }
    let raw_path = dir.join("trace.txt.gz");
    let raw_nc = raw_path.exists().then(|| {
        let raw = String::from_utf8(read_all(&raw_path)).unwrap();
        let kept: String = raw
            .split_inclusive('\n')
            .filter(|l| !l.contains(": console: "))
            .collect();
        forms.push((
            "raw without console",
            analyze_input(
                &format!("{name}/trace.txt.gz (no console)"),
                Input::from_bytes("nc", kept.clone().into_bytes()).unwrap(),
            ),
        ));
        kept
    });
    for (form, r) in &forms {
        tally.runs += 1;
        let dumps = *form != "raw without console";
        let cr3: Vec<&Finding> = r
            .findings
            .iter()
            .filter(|f| f.kind == Kind::Cr3CurrentMismatch)
            .collect();
        let mut used = vec![false; cr3.len()];
        for t in truth {
            let hits: Vec<usize> = (0..cr3.len()).filter(|&i| matches(cr3[i], t)).collect();
            for &i in &hits {
                used[i] = true;
            }
            let what = format!(
                "{name} [{form}] NMI cpu {} at {} ns pid {} rip {}",
                t.cpu, t.ts_ns, t.pid, t.rip
            );
            match t.in_window {
                Some(true) if hits.is_empty() => tally
                    .failures
                    .push(format!("{what}: in the window by the dump, not reported")),
                Some(false) if dumps && !hits.is_empty() => tally.failures.push(format!(
                    "{what}: outside by the dump, reported: {}",
                    cr3[hits[0]].message
                )),
                Some(false) => {
                    for &i in &hits {
                        if cr3[i].confidence == Confidence::Observed {
                            tally.failures.push(format!(
                                "{what}: outside by the dump, reported as observed: {}",
                                cr3[i].message
                            ));
                        } else if !stamped_prev_before_flush(raw_nc.as_deref().unwrap_or(""), t) {
                            tally.failures.push(format!("{what}: inferred, but the NMI is not stamped prev between sched_switch and its flush"));
                        }
                    }
                }
                _ => {}
            }
            if t.faults > 0 {
                let faults = r
                    .findings
                    .iter()
                    .filter(|f| {
                        f.kind == Kind::NmiPageFault
                            && f.cpu == Some(t.cpu)
                            && f.ts_ns.is_some_and(|ts| {
                                ts + 20_000 >= t.ts_ns && ts <= t.ts_ns + 1_000_000
                            })
                    })
                    .count();
                if faults < t.faults {
                    tally.failures.push(format!(
                        "{what}: {} page fault(s) in the NMI by the dump, {faults} nmi_page_fault",
                        t.faults
                    ));
                }
            }
        }
        for (i, f) in cr3.iter().enumerate() {
            if !used[i] {
                tally.failures.push(format!(
                    "{name} [{form}]: cr3_current_mismatch on no NMI of the truth: {}",
                    f.message
                ));
            }
        }
        // Nothing else the kernel's output would contradict: warnings and
        // errors are only the switch-window findings checked above, and
        // slow handlers the kernel itself timed (under QEMU TCG the
        // backtrace handler takes 1-2 ms): the handler line cited prints a
        // `delta_ns` of 1 ms or more.
        for f in &r.findings {
            if f.kind == Kind::SlowNmiHandler && kernel_timed_slow(f) {
                continue;
            }
            if f.severity >= Severity::Warning && f.kind != Kind::Cr3CurrentMismatch {
                tally.failures.push(format!(
                    "{name} [{form}]: {} {}: {}",
                    f.kind, f.severity, f.message
                ));
            }
        }
    }
    tally.nmis += truth.len();
    tally.in_window += truth.iter().filter(|t| t.in_window == Some(true)).count();
}

/// The evidence line of a slow-handler finding prints the kernel's own
/// `delta_ns`, at or over `nmi_longest_ns` (1 ms), and the finding says that value.
fn kernel_timed_slow(f: &Finding) -> bool {
    let said = f.details_json()["delta_ns"].as_u64();
    f.evidence.iter().any(|l| {
        // `delta_ns: 1886120` (the tracepoint's format), `delta_ns=1886120` (perf script)
        let Some(i) = l.find("delta_ns") else {
            return false;
        };
        let printed: Option<u64> = l[i + 8..]
            .trim_start_matches([':', '=', ' '])
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok());
        printed.is_some_and(|d| d >= 1_000_000 && Some(d) == said)
    })
}

fn check_runs(runs: &[(PathBuf, PathBuf)]) -> Tally {
    let mut tally = Tally::default();
    for (dir, truth) in runs {
        for (cap, ts) in truths(truth) {
            let d = dir.join(&cap);
            if d.is_dir() && !ts.is_empty() {
                check_capture(&d, &ts, &mut tally);
            }
        }
    }
    tally
}

fn list(root: &Path, truth_of: impl Fn(&Path) -> PathBuf) -> Vec<(PathBuf, PathBuf)> {
    let mut v: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let t = truth_of(&p);
            (p, t)
        })
        .collect();
    v.sort();
    v
}

fn report(t: &Tally, what: &str) {
    eprintln!(
        "{what}: {} NMIs ({} in a switch window by the dumps), {} analyses",
        t.nmis, t.in_window, t.runs
    );
    assert!(t.runs > 0 && t.in_window > 0, "{what}: nothing checked");
    assert!(
        t.failures.is_empty(),
        "{} of the verdicts disagree with the kernel's dumps:\n{}",
        t.failures.len(),
        t.failures.join("\n")
    );
}

/// This repository's own recordings (pingpong, exec- and kthread-heavy
/// workloads, `perf script` flight recorders), trimmed around each NMI.
#[test]
fn own_real_nmi_captures_agree_with_their_dumps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-nmi");
    let runs = list(&root, |d| d.join("truth.json"));
    report(&check_runs(&runs), "tests/data/real-nmi");
}

/// The shared captures, every form.
#[test]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
fn shared_real_nmi_captures_agree_with_their_dumps() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let runs = list(&shared.join("traces/real-nmi"), |d| {
        shared
            .join("truth/real-nmi")
            .join(d.file_name().unwrap())
            .join("truth.json")
    });
    report(&check_runs(&runs), "../shared/traces/real-nmi");
}

/// The real NMI captures of `sample-traces/real` show what its catalogue says.
#[test]
fn sample_nmi_captures_show_what_the_catalogue_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-traces/real");
    let get = |name: &str| {
        let p = dir.join(name);
        analyze_input(&p.display().to_string(), Input::open(&p).unwrap())
    };
    let only = |r: &Report, kind: &str| -> Vec<Finding> {
        r.findings
            .iter()
            .filter(|f| f.kind.as_str() == kind)
            .cloned()
            .collect()
    };
    let quiet = |r: &Report, except: &str| {
        let loud: Vec<String> = r
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning && f.kind.as_str() != except)
            .map(|f| f.message.clone())
            .collect();
        assert!(loud.is_empty(), "{loud:?}");
        assert_eq!(
            only(r, "trace_overwritten").len(),
            1,
            "a flight recorder's overwritten past is a note"
        );
    };

    let r = get("nmi-switch-window-before-flush.trace.txt.gz");
    let w = only(&r, "cr3_current_mismatch");
    assert_eq!((w.len(), w[0].confidence.as_str()), (1, "observed"));
    assert_eq!(
        w[0].details_json()["window_from"],
        "sched_switch, before the reason-0 tlb_flush"
    );
    assert_eq!(
        w[0].details_json()["interrupted_rip"],
        "0010:switch_mm_irqs_off+0x23c/0x3d0"
    );
    assert!(w[0].details_json()["confirmed_by"]
        .as_str()
        .unwrap()
        .contains("after switch_mm's cr3 write"));
    assert_eq!(
        (
            w[0].details_json()["prev_pid"].as_i64(),
            w[0].details_json()["next_pid"].as_i64()
        ),
        (Some(15781), Some(15783))
    );
    quiet(&r, "cr3_current_mismatch");

    let r = get("nmi-switch-window-in-switch-to.trace.txt.gz");
    let w = only(&r, "cr3_current_mismatch");
    assert_eq!((w.len(), w[0].confidence.as_str()), (1, "observed"));
    assert_eq!(w[0].details_json()["window_from"], "tlb_flush reason 0");
    assert_eq!(
        w[0].details_json()["interrupted_rip"],
        "0010:__wrgsbase_inactive+0x8/0x20"
    );
    quiet(&r, "cr3_current_mismatch");

    let r = get("nmi-page-fault-copy-from-user.trace.txt.gz");
    let p = only(&r, "nmi_page_fault");
    assert_eq!((p.len(), p[0].severity.as_str()), (1, "info"));
    assert_eq!(p[0].details_json()["user_address"], true);
    assert_eq!(p[0].details_json()["address"], "0x7f479baf8aad");
    assert!(only(&r, "cr3_current_mismatch").is_empty());
    quiet(&r, "");
}
