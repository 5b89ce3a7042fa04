//! `vmalloc_exposure` against a kernel that really faults lazily: Linux
//! 5.4.59 x86_32 non-PAE, recorded in QEMU (`replay/tests/data/linux-5.4.59-i386`,
//! provenance beside it). The exposure inference is for traces without
//! page-fault events, so the trace is analysed with its `page_fault_kernel`
//! lines taken out, and those lines are the oracle: every vmalloc entry the
//! kernel took a not-present fault on must have been named as exposed
//! before the fault, and with the faults left in, every one of them is a
//! lazy sync the replay expected.

use nmitrace_analyses::{analyze_trace, Config, Kind, Report};
use nmitrace_parser::input::Input;
use nmitrace_parser::Trace;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

/// The kernel's own vmalloc range, from the guest's boot log.
const KERNEL_VMALLOC: (u64, u64) = (0xdf3f_e000, 0xff3f_e000);

fn text() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../replay/tests/data/linux-5.4.59-i386/trace.txt.gz");
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn analyze(name: &str, text: String) -> Report {
    let cfg = Config {
        kernel: Some("5.4.59".into()),
        arch: Some("x86_32".into()),
        ..Config::default()
    };
    let mut t = Trace::from_input(
        name.into(),
        Input::from_bytes(name, text.into_bytes()).unwrap(),
    )
    .unwrap();
    t.probe().unwrap();
    analyze_trace(t, &cfg).unwrap().report
}

/// (ts_ns, 4 MiB entry base) of every not-present kernel fault on a vmalloc address.
fn lazy_faults(text: &str) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    for l in text.lines().filter(|l| l.contains(": page_fault_kernel: ")) {
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
        };
        let (Some(a), Some(ec)) = (field("address="), field("error_code=")) else {
            continue;
        };
        // the timestamp: the field before the event name, `50.594609:`
        let ts = l
            .split(": page_fault_kernel")
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap();
        if (KERNEL_VMALLOC.0..KERNEL_VMALLOC.1).contains(&a) && ec & 1 == 0 {
            v.push(((ts * 1e6).round() as u64 * 1000, a >> 22 << 22));
        }
    }
    v
}

#[test]
fn exposure_names_every_entry_the_kernel_then_faulted_on() {
    let text = text();
    let faults = lazy_faults(&text);
    assert!(
        faults.len() >= 100,
        "{} lazy faults in the excerpt",
        faults.len()
    );
    let without: String = text
        .lines()
        .filter(|l| !l.contains(": page_fault_kernel: "))
        .flat_map(|l| [l, "\n"])
        .collect();
    let r = analyze("5.4.59-i386 without page faults", without);
    // entry base → when it was first named exposed
    let mut named: BTreeMap<u64, u64> = BTreeMap::new();
    for f in r
        .findings
        .iter()
        .filter(|f| f.kind == Kind::VmallocExposure)
    {
        let base = u64::from_str_radix(
            f.details_json()["entry_base"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let ts = f.ts_ns.unwrap();
        named
            .entry(base)
            .and_modify(|t| *t = (*t).min(ts))
            .or_insert(ts);
    }
    let entries: BTreeSet<u64> = faults.iter().map(|f| f.1).collect();
    let unnamed: Vec<String> = faults
        .iter()
        .filter(|(ts, e)| named.get(e).is_none_or(|n| n > ts))
        .map(|(ts, e)| format!("{e:#x} at {ts}"))
        .collect();
    eprintln!(
        "5.4.59 x86_32: {} lazy faults on {} entries; {} exposures named; faults on an entry named exposed before them: {} of {}",
        faults.len(),
        entries.len(),
        named.len(),
        faults.len() - unnamed.len(),
        faults.len()
    );
    assert!(
        unnamed.is_empty(),
        "faults on entries never named exposed before them: {unnamed:?}"
    );
    assert!(
        !r.findings.iter().any(|f| f.kind == Kind::NmiVmallocFault),
        "no fault events, no fault findings"
    );
}

#[test]
fn with_the_faults_traced_each_is_a_lazy_sync_the_replay_expected() {
    let text = text();
    let n = lazy_faults(&text).len() as u64;
    let r = analyze("5.4.59-i386", text);
    let replay = &r.input.model.replay;
    assert_eq!(replay.lazy_vmalloc_syncs, n, "{replay:?}");
    assert!(replay.eager_vmalloc_syncs > 0, "{replay:?}");
    // The inference gives way to the observed faults.
    assert!(!r.findings.iter().any(|f| f.kind == Kind::VmallocExposure));
    assert!(replay.vmalloc_exposures_not_reported > 0);
}
