//! The real files the structure-aware targets mutate, loaded once.
use std::io::Read;
use std::sync::OnceLock;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(b).read_to_end(&mut out);
    out
}

/// Real text traces, every format: the sample traces and the real NMI excerpts.
pub fn text() -> Vec<&'static [u8]> {
    static T: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    T.get_or_init(|| {
        [
            &include_bytes!("../../sample-traces/real/shell-python.trace.txt.gz")[..],
            &include_bytes!("../../sample-traces/real/shell-python.report.txt.gz")[..],
            &include_bytes!("../../sample-traces/real/shell-python.perf-script.txt.gz")[..],
            &include_bytes!("../../sample-traces/real/nmi-switch-window-before-flush.trace.txt.gz")
                [..],
            &include_bytes!("../../sample-traces/real/nmi-page-fault-copy-from-user.trace.txt.gz")
                [..],
            &include_bytes!(
                "../../analyses/tests/data/real-nmi/pingpong-c/capture-005/report.txt.gz"
            )[..],
            &include_bytes!(
                "../../analyses/tests/data/real-nmi/perf-pingpong/capture-007/perf.txt.gz"
            )[..],
        ]
        .iter()
        .map(|b| gunzip(b))
        .collect()
    })
    .iter()
    .map(|v| v.as_slice())
    .collect()
}

/// trace.dat files: the seeds, plus every `*.dat` in $NMITRACE_FUZZ_BASE.
pub fn tracedat() -> Vec<&'static [u8]> {
    static T: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut v: Vec<Vec<u8>> = vec![
            include_bytes!("../seeds/tracedat/v6.dat").to_vec(),
            include_bytes!("../seeds/tracedat/v7-none.dat").to_vec(),
            include_bytes!("../seeds/tracedat/v7-zstd.dat").to_vec(),
        ];
        if let Some(dir) = std::env::var_os("NMITRACE_FUZZ_BASE") {
            if let Ok(rd) = std::fs::read_dir(dir) {
                let mut paths: Vec<_> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "dat"))
                    .collect();
                paths.sort();
                v.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
            }
        }
        v
    })
    .iter()
    .map(|v| v.as_slice())
    .collect()
}
