//! `nmitrace batch`: analyse every trace under some files and directories in
//! parallel, write fleet tables (Parquet), charts and an HTML page, and
//! compare with an earlier batch (`--baseline`) to gate CI on regressions.
//!
//! Significance rule (README "Batches and regressions"):
//! - finding rate: for each kind, the traces with at least one finding of
//!   that kind at severity warning or error, out of the traces analysed. It
//!   regressed when the kind never occurred in the baseline and occurs now,
//!   or when its rate rose and a one-sided Fisher exact test gives p < 0.05;
//! - NMI latency: per handler, the fleet p99 of `delta_ns` (from merged
//!   log-bucket histograms, 10 buckets per decade). It regressed when both
//!   batches have at least 50 calls and the p99 at least doubled, or went
//!   over 1 ms from below.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nmitrace_analyses::histogram::{bucket_lower, LogHistogram};
use nmitrace_analyses::html_report::{self, badge, esc, table, Chart};
use nmitrace_analyses::plots::{self, fleet, fmt_ns};
use nmitrace_analyses::regression::{compare, read_baseline, Baseline, Comparison};
use nmitrace_analyses::tables;
use nmitrace_analyses::{Config, Finding, Kind, Severity};
use nmitrace_parser::{detect, Input, Trace};
use polars::prelude::{Column, DataFrame, PolarsResult};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Files with these extensions are never traces.
const NOT_TRACES: &[&str] = &[
    "md",
    "json",
    "jsonl",
    "py",
    "pyc",
    "rs",
    "toml",
    "lock",
    "csv",
    "html",
    "htm",
    "parquet",
    "png",
    "svg",
    "jpg",
    "sh",
    "yml",
    "yaml",
    "gitignore",
    "pdf",
];

#[derive(clap::Args)]
#[command(after_help = "\
Every file under the given paths is detected by content: traces in any supported format
(compressed or not) are analysed, other files are skipped. Failures are recorded, never fatal.

Writes DIR/traces.parquet (one row per trace), DIR/findings.parquet, DIR/nmi_durations.parquet,
DIR/report.html and DIR/plots/*.{svg,png}. With --baseline OLD_DIR (an earlier batch's --out)
it prints what regressed and exits 1 when something did:
  - a finding kind (warning or error) in traces where the baseline had none of it, or whose
    share of traces rose with a one-sided Fisher exact test p < 0.05;
  - an NMI handler's fleet p99 that at least doubled (>= 50 calls in both) or crossed 1 ms.

Examples:
  nmitrace batch /srv/traces --out fleet-2026-11-21
  nmitrace batch /srv/traces --out today --baseline fleet-2026-11-21 --jobs 8
  find /srv/traces -name '*.dat' -mtime -1 | nmitrace batch --files-from - --out today   # one shard")]
pub struct Args {
    /// Trace files or directories (walked recursively).
    #[arg(required_unless_present = "files_from", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also the paths listed in FILE, one per line (`-`: standard input; blank lines and `#` comments ignored): a shard of a fleet.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// An earlier batch's output directory to compare with (exit 1 on regression).
    #[arg(long, value_name = "OLD_DIR")]
    pub baseline: Option<PathBuf>,
    /// Traces analysed at once (default: all cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Parser threads per trace (default: the cores left over, cores / jobs, at least 1).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub model: crate::model_args::ModelArgs,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Give up on a trace after this many seconds (it gets a failed row; the batch goes on).
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,
}

fn parse_timeout(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// What one trace gave.
pub struct TraceResult {
    pub path: String,
    pub format: String,
    pub compression: Option<String>,
    pub status: &'static str,
    pub error: Option<String>,
    pub kernel: Option<String>,
    pub model: Option<String>,
    pub kernel_source: Option<String>,
    pub arch: Option<String>,
    pub arch_source: Option<String>,
    pub verdict: Option<String>,
    pub events: u64,
    pub lost_events: u64,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    pub nmi_instances: u64,
    pub nmi_p50_ns: Option<u64>,
    pub nmi_p99_ns: Option<u64>,
    pub nmi_max_ns: Option<u64>,
    pub summary: BTreeMap<Kind, u64>,
    pub findings: Vec<Finding>,
    pub durations: BTreeMap<String, LogHistogram>,
    pub seconds: f64,
}

impl TraceResult {
    pub fn failed(path: String, format: String, err: String, seconds: f64) -> TraceResult {
        TraceResult {
            path,
            format,
            compression: None,
            status: "failed",
            error: Some(err),
            kernel: None,
            model: None,
            kernel_source: None,
            arch: None,
            arch_source: None,
            verdict: None,
            events: 0,
            lost_events: 0,
            first_ts_ns: None,
            last_ts_ns: None,
            nmi_instances: 0,
            nmi_p50_ns: None,
            nmi_p99_ns: None,
            nmi_max_ns: None,
            summary: BTreeMap::new(),
            findings: Vec::new(),
            durations: BTreeMap::new(),
            seconds,
        }
    }

    /// Kinds with at least one warning or error.
    fn serious_kinds(&self) -> BTreeSet<Kind> {
        self.findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .map(|f| f.kind)
            .collect()
    }
}

/// What the walk found: the files to look at, in order, and what it
/// passed over with the reason (not a regular file, unreadable, seen already).
#[derive(Default)]
pub struct Walk {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<(String, String)>,
}

/// The paths listed in `list` (`-`: standard input), one per line; blank
/// lines and `#` comments are ignored.
pub fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = if list == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("--files-from -: standard input")?;
        s
    } else {
        std::fs::read_to_string(list).with_context(|| format!("--files-from {}", list.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

/// Walk the inputs: each regular file once (by device and inode, so hard
/// links, symlinks to files seen and symlink loops count once), sorted per
/// directory; FIFOs, sockets and devices are listed as skipped, never opened
/// (a FIFO would block the batch); hidden entries are not walked.
pub fn walk(paths: &[PathBuf]) -> Result<Walk> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut w = Walk::default();
    let mut seen_files: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut seen_dirs: BTreeSet<(u64, u64)> = BTreeSet::new();
    let kind = |md: &std::fs::Metadata| -> &'static str {
        let t = md.file_type();
        if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        }
    };
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        // Follows symlinks: a link to a trace is analysed (once, by inode).
        let md = match std::fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if paths.contains(&p) => {
                return Err(e).with_context(|| format!("{}", p.display()))
            }
            Err(e) => {
                w.skipped
                    .push((p.display().to_string(), format!("unreadable: {e}")));
                continue;
            }
        };
        let id = (md.dev(), md.ino());
        if md.is_dir() {
            if !seen_dirs.insert(id) {
                w.skipped.push((
                    p.display().to_string(),
                    "directory seen already (a symlink loop or a second link)".into(),
                ));
                continue;
            }
            let rd = match std::fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) => {
                    w.skipped.push((
                        p.display().to_string(),
                        format!("unreadable directory: {e}"),
                    ));
                    continue;
                }
            };
            let mut entries: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| {
                    !e.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("")
                        .starts_with('.')
                })
                .collect();
            entries.sort();
            stack.extend(entries.into_iter().rev());
        } else if md.is_file() {
            if seen_files.insert(id) {
                w.files.push(p);
            } else {
                w.skipped.push((
                    p.display().to_string(),
                    "the same file as one listed before (a link)".into(),
                ));
            }
        } else if seen_files.insert(id) {
            w.skipped.push((p.display().to_string(), kind(&md).into()));
        }
    }
    Ok(w)
}

/// The end of a path that fits `max` characters (`…/dir/file.dat`): the
/// progress line shows which file, not which mount point.
fn tail(p: &str, max: usize) -> String {
    let n = p.chars().count();
    if n <= max {
        return p.to_string();
    }
    let skip = n - (max - 1);
    format!("…{}", p.chars().skip(skip).collect::<String>())
}

/// Is this file a trace? `Err(reason)` when it is not (skipped, not failed).
fn open_trace(path: &Path) -> std::result::Result<Result<Trace>, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    if name.contains('.') && NOT_TRACES.contains(&ext.as_str()) {
        return Err(format!(".{ext} file"));
    }
    let input = match Input::open(path) {
        Ok(i) => i,
        Err(e) => return Ok(Err(e.into())),
    };
    let display = path.display().to_string();
    if let Err(e) = detect::detect(&display, input.head()) {
        if !input.head().starts_with(detect::TRACE_DAT_MAGIC) {
            return Err(format!("not a trace ({e})"));
        }
    }
    Ok(Trace::from_input(display, input).map_err(Into::into))
}

fn process(
    trace: Trace,
    config: &Config,
    threads: usize,
    timeout: Option<std::time::Duration>,
) -> TraceResult {
    let t0 = Instant::now();
    let path = trace.name.clone();
    let format = trace
        .info
        .format
        .map(|f| f.name().to_string())
        .unwrap_or_default();
    let deadline = timeout.map(|t| t0 + t);
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::analyze::analyze_trace(trace, config, Some(threads), false, deadline)
    }));
    let secs = t0.elapsed().as_secs_f64();
    let a = match res {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return TraceResult::failed(path, format, format!("{e:#}"), secs),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return TraceResult::failed(path, format, format!("panic: {msg}"), secs);
        }
    };
    let nmitrace_analyses::Analysis {
        report: r,
        timeline,
    } = a;
    let h = &r.nmis.by_handler;
    TraceResult {
        path,
        format,
        compression: r.input.compression.clone(),
        status: "ok",
        error: None,
        kernel: r.input.kernel.clone(),
        model: Some(r.input.model.label.clone()),
        kernel_source: Some(r.input.model.source.into()),
        arch: r.input.arch.clone(),
        arch_source: Some(r.input.model.arch_source.into()),
        verdict: Some(r.coverage.verdict.clone()),
        events: r.events.total,
        lost_events: r.events.lost_events,
        first_ts_ns: r.events.first_ts_ns,
        last_ts_ns: r.events.last_ts_ns,
        nmi_instances: r.nmis.instances,
        nmi_p50_ns: h.values().map(|s| s.p50_ns).max(),
        nmi_p99_ns: h.values().map(|s| s.p99_ns).max(),
        nmi_max_ns: h.values().map(|s| s.max_ns).max(),
        summary: r.summary.clone(),
        durations: timeline.durations,
        findings: r.findings,
        seconds: secs,
    }
}

/// The fleet's merged handler-duration histograms.
pub fn merge_durations(results: &[TraceResult]) -> BTreeMap<String, LogHistogram> {
    let mut m: BTreeMap<String, LogHistogram> = BTreeMap::new();
    for r in results {
        for (k, h) in &r.durations {
            m.entry(k.clone()).or_default().merge(h);
        }
    }
    m
}

fn traces_df(results: &[TraceResult]) -> PolarsResult<DataFrame> {
    let n = results.len();
    // The contract's kinds always, then any other kind found, by name.
    let mut kinds: Vec<Kind> = Kind::CONTRACT.to_vec();
    let extra: BTreeSet<Kind> = results
        .iter()
        .flat_map(|r| r.summary.keys().copied())
        .filter(|k| !Kind::CONTRACT.contains(k))
        .collect();
    kinds.extend(extra);
    let mut cols = vec![
        Column::new(
            "path".into(),
            results.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "format".into(),
            results
                .iter()
                .map(|r| r.format.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "compression".into(),
            results
                .iter()
                .map(|r| r.compression.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "status".into(),
            results.iter().map(|r| r.status).collect::<Vec<_>>(),
        ),
        Column::new(
            "error".into(),
            results.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "kernel".into(),
            results.iter().map(|r| r.kernel.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "model".into(),
            results.iter().map(|r| r.model.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "kernel_source".into(),
            results
                .iter()
                .map(|r| r.kernel_source.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "arch".into(),
            results.iter().map(|r| r.arch.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "arch_source".into(),
            results
                .iter()
                .map(|r| r.arch_source.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "verdict".into(),
            results
                .iter()
                .map(|r| r.verdict.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "events".into(),
            results.iter().map(|r| r.events).collect::<Vec<u64>>(),
        ),
        Column::new(
            "lost_events".into(),
            results.iter().map(|r| r.lost_events).collect::<Vec<u64>>(),
        ),
        Column::new(
            "first_ts_ns".into(),
            results.iter().map(|r| r.first_ts_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "last_ts_ns".into(),
            results.iter().map(|r| r.last_ts_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "nmi_instances".into(),
            results
                .iter()
                .map(|r| r.nmi_instances)
                .collect::<Vec<u64>>(),
        ),
        Column::new(
            "nmi_p50_ns".into(),
            results.iter().map(|r| r.nmi_p50_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "nmi_p99_ns".into(),
            results.iter().map(|r| r.nmi_p99_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "nmi_max_ns".into(),
            results.iter().map(|r| r.nmi_max_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "findings".into(),
            results
                .iter()
                .map(|r| r.findings.len() as u64)
                .collect::<Vec<u64>>(),
        ),
        Column::new(
            "errors".into(),
            results
                .iter()
                .map(|r| {
                    r.findings
                        .iter()
                        .filter(|f| f.severity == Severity::Error)
                        .count() as u64
                })
                .collect::<Vec<u64>>(),
        ),
        Column::new(
            "warnings".into(),
            results
                .iter()
                .map(|r| {
                    r.findings
                        .iter()
                        .filter(|f| f.severity == Severity::Warning)
                        .count() as u64
                })
                .collect::<Vec<u64>>(),
        ),
    ];
    for k in &kinds {
        cols.push(Column::new(
            k.as_str().into(),
            results
                .iter()
                .map(|r| r.summary.get(k).copied().unwrap_or(0))
                .collect::<Vec<u64>>(),
        ));
    }
    cols.push(Column::new(
        "seconds".into(),
        results.iter().map(|r| r.seconds).collect::<Vec<f64>>(),
    ));
    DataFrame::new(n, cols)
}

fn durations_df(m: &BTreeMap<String, LogHistogram>) -> PolarsResult<DataFrame> {
    let mut handler = Vec::new();
    let mut bucket = Vec::new();
    let mut low = Vec::new();
    let mut count = Vec::new();
    for (k, h) in m {
        for (b, c) in h.nonzero_buckets() {
            handler.push(k.as_str());
            bucket.push(b as u32);
            low.push(bucket_lower(b) as f64);
            count.push(c);
        }
    }
    let n = handler.len();
    DataFrame::new(
        n,
        vec![
            Column::new("handler".into(), handler),
            Column::new("bucket".into(), bucket),
            Column::new("bucket_low_ns".into(), low),
            Column::new("count".into(), count),
        ],
    )
}

/// Every finding kind's number of traces (any severity).
fn kind_rates(results: &[TraceResult]) -> Vec<fleet::KindRate> {
    let mut m: BTreeMap<Kind, u64> = BTreeMap::new();
    for r in results {
        for k in r.summary.keys() {
            *m.entry(*k).or_insert(0) += 1;
        }
    }
    let mut v: Vec<fleet::KindRate> = m
        .into_iter()
        .map(|(k, n)| fleet::KindRate {
            kind: k.into(),
            traces: n,
            baseline_traces: None,
            regressed: false,
        })
        .collect();
    v.sort_by(|a, b| b.traces.cmp(&a.traces).then(a.kind.cmp(&b.kind)));
    v
}

/// The summary on standard output; a closed pipe (`| head`) is not an error.
pub fn print_summary(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
}

/// How a batch (or one shard of a fleet) analyses its traces.
pub struct Options {
    /// Traces analysed at once.
    pub jobs: usize,
    /// Parser threads per trace.
    pub threads: usize,
    pub config: Config,
    pub timeout: Option<std::time::Duration>,
    /// Draw a progress bar on standard error (when it is a terminal).
    pub progress: bool,
}

impl Options {
    /// `jobs` traces at once (default: all cores), each with the cores left
    /// over (`threads`, default cores / jobs, at least 1).
    pub fn new(
        jobs: Option<usize>,
        threads: Option<usize>,
        config: Config,
        timeout: Option<f64>,
        progress: bool,
    ) -> Options {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let jobs = jobs.unwrap_or(cores).max(1);
        let threads = threads.unwrap_or(cores / jobs).max(1);
        Options {
            jobs,
            threads,
            config,
            timeout: timeout.map(std::time::Duration::from_secs_f64),
            progress,
        }
    }
}

/// Analyse `files` (in parallel, largest first): one result per trace, in
/// the order given, and the files that are not traces with the reason.
pub fn analyse_files(
    files: &[PathBuf],
    opts: &Options,
) -> Result<(Vec<TraceResult>, Vec<(String, String)>)> {
    let pb = ProgressBar::new(files.len() as u64);
    if !opts.progress || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    } else {
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:24.cyan/blue} {pos}/{len} traces  {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    // Largest first, one trace per task: the big traces do not end up last on
    // one worker. Each file is opened by its worker (not all at once).
    let mut work: Vec<usize> = (0..files.len()).collect();
    work.sort_by_key(|&i| {
        std::cmp::Reverse(std::fs::metadata(&files[i]).map(|m| m.len()).unwrap_or(0))
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs)
        .build()?;
    let mut done: Vec<(usize, std::result::Result<TraceResult, String>)> = pool.install(|| {
        work.into_par_iter()
            .with_max_len(1)
            .map(|i| {
                let path = files[i].display().to_string();
                pb.set_message(tail(&path, 40));
                let r = match open_trace(&files[i]) {
                    Ok(Ok(t)) => Ok(process(t, &opts.config, opts.threads, opts.timeout)),
                    Ok(Err(e)) => Ok(TraceResult::failed(
                        path,
                        String::new(),
                        format!("{e:#}"),
                        0.0,
                    )),
                    Err(why) => Err(why),
                };
                pb.inc(1);
                (i, r)
            })
            .collect()
    });
    pb.finish_and_clear();
    done.sort_by_key(|(i, _)| *i);
    let mut results: Vec<TraceResult> = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for (i, r) in done {
        match r {
            Ok(r) => results.push(r),
            Err(why) => skipped.push((files[i].display().to_string(), why)),
        }
    }
    Ok((results, skipped))
}

/// What a batch (or a merge) has to write and say.
pub struct Batch {
    pub results: Vec<TraceResult>,
    /// Files passed over: not traces (in file order), then what the walk skipped.
    pub skipped: Vec<Skip>,
    /// The fleet's merged handler-duration histograms.
    pub durations: BTreeMap<String, LogHistogram>,
    pub elapsed: f64,
    pub jobs: usize,
}

/// A file a batch passed over.
#[derive(Clone, Debug, PartialEq)]
pub struct Skip {
    pub path: String,
    pub reason: String,
    /// Passed over by the walk (not a regular file, unreadable, seen
    /// already), as opposed to read and found not to be a trace.
    pub by_walk: bool,
}

impl Batch {
    pub fn new(
        results: Vec<TraceResult>,
        not_traces: Vec<(String, String)>,
        walk_skipped: Vec<(String, String)>,
        elapsed: f64,
        jobs: usize,
    ) -> Batch {
        // As the table keeps them (log buckets): a merge of parts, which
        // reads the tables back, then gates and draws exactly as one batch.
        let durations = merge_durations(&results)
            .into_iter()
            .map(|(k, h)| (k, h.bucketed()))
            .collect();
        let mut skipped: Vec<Skip> = not_traces
            .into_iter()
            .map(|(path, reason)| Skip {
                path,
                reason,
                by_walk: false,
            })
            .collect();
        skipped.extend(walk_skipped.into_iter().map(|(path, reason)| Skip {
            path,
            reason,
            by_walk: true,
        }));
        Batch {
            results,
            skipped,
            durations,
            elapsed,
            jobs,
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let t0 = Instant::now();
    let mut paths = args.paths.clone();
    if let Some(list) = &args.files_from {
        paths.extend(read_list(list)?);
    }
    let Walk {
        files,
        skipped: walk_skipped,
    } = walk(&paths)?;
    let baseline = match &args.baseline {
        Some(d) => Some(read_baseline(d).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let opts = Options::new(
        args.jobs,
        args.threads,
        args.model.config(),
        args.timeout,
        !args.no_progress,
    );
    let (results, not_traces) = analyse_files(&files, &opts)?;
    let batch = Batch::new(
        results,
        not_traces,
        walk_skipped,
        t0.elapsed().as_secs_f64(),
        opts.jobs,
    );
    let mut named: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    named.extend(
        args.files_from
            .iter()
            .map(|l| format!("the paths listed in {}", l.display())),
    );
    let (text, code) = finish(&args.out, &batch, baseline.as_ref(), &named.join(" "))?;
    print_summary(&text);
    Ok(ExitCode::from(code))
}

/// Write everything into a staging area, move it into `out`, and give the
/// summary to print and the exit status (1: a regression against the
/// baseline). A failed or killed run leaves the previous output as it was.
pub fn finish(
    out: &Path,
    batch: &Batch,
    baseline: Option<&Baseline>,
    named: &str,
) -> Result<(String, u8)> {
    if batch.results.is_empty() && batch.skipped.is_empty() {
        bail!("no files under {named}");
    }
    let staged = crate::atomic::Staged::dir(out)?;
    let comparison = write_outputs(&staged.path(), batch, baseline)
        .with_context(|| format!("{}: cannot write the batch output", out.display()))?;
    staged.commit()?;
    Ok(summarize(out, batch, comparison.as_ref(), baseline))
}

/// Only the tables (a fleet shard's part: `nmitrace merge` draws the rest).
pub fn write_part(out: &Path, batch: &Batch) -> Result<()> {
    let staged = crate::atomic::Staged::dir(out)?;
    write_tables(&staged.path(), batch)
        .with_context(|| format!("{}: cannot write the part", out.display()))?;
    staged.commit()
}

/// traces, findings, nmi_durations and skipped, as Parquet.
fn write_tables(out: &Path, batch: &Batch) -> Result<()> {
    let results = &batch.results;
    tables::write_parquet(&mut traces_df(results)?, &out.join("traces.parquet"))?;
    let all_findings = results
        .iter()
        .flat_map(|r| r.findings.iter().map(move |f| (r.path.as_str(), f)));
    tables::write_parquet(
        &mut tables::findings_df(all_findings)?,
        &out.join("findings.parquet"),
    )?;
    tables::write_parquet(
        &mut durations_df(&batch.durations)?,
        &out.join("nmi_durations.parquet"),
    )?;
    tables::write_parquet(
        &mut skipped_df(&batch.skipped)?,
        &out.join("skipped.parquet"),
    )?;
    Ok(())
}

fn skipped_df(s: &[Skip]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        s.len(),
        vec![
            Column::new(
                "path".into(),
                s.iter().map(|k| k.path.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "reason".into(),
                s.iter().map(|k| k.reason.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "by_walk".into(),
                s.iter().map(|k| k.by_walk).collect::<Vec<bool>>(),
            ),
        ],
    )
}

/// Tables, charts and the page, into the staging directory `out`.
fn write_outputs(
    out: &Path,
    batch: &Batch,
    baseline: Option<&Baseline>,
) -> Result<Option<Comparison>> {
    write_tables(out, batch)?;
    let results = &batch.results;
    let fleet_durations = &batch.durations;

    // Charts.
    let plot_dir = out.join("plots");
    let ok = results.iter().filter(|r| r.status == "ok").count() as u64;
    let mut charts = Vec::new();
    let rates = fleet::FindingRatesPlot {
        name: "finding_rates".into(),
        title: format!(
            "Finding kinds across the fleet (traces with at least one, any severity; {ok} traces)"
        ),
        n_traces: ok,
        baseline_n: None,
        rates: kind_rates(results),
    };
    charts.push(plots::render(&rates, Some(plot_dir.as_path())).map_err(anyhow::Error::msg)?);
    let lat = plots::durations::DurationsPlot::from_hists(
        "fleet_nmi_latency",
        "NMI handler latency across the fleet",
        fleet_durations,
    );
    charts.push(plots::render(&lat, Some(plot_dir.as_path())).map_err(anyhow::Error::msg)?);
    let comparison = baseline.map(|b| {
        let ok: Vec<&TraceResult> = results.iter().filter(|r| r.status == "ok").collect();
        let mut serious: BTreeMap<nmitrace_analyses::finding::KindName, u64> = BTreeMap::new();
        for k in ok.iter().flat_map(|r| r.serious_kinds()) {
            *serious.entry(k.into()).or_insert(0) += 1;
        }
        compare(ok.len() as u64, &serious, fleet_durations, b)
    });
    if let (Some(c), Some(b)) = (&comparison, baseline) {
        let reg = fleet::FindingRatesPlot {
            name: "regression_finding_rates".into(),
            title: "Finding rates (warning or error) against the baseline".into(),
            n_traces: ok,
            baseline_n: Some(b.traces_ok),
            rates: c.rates.clone(),
        };
        charts.insert(
            0,
            plots::render(&reg, Some(plot_dir.as_path())).map_err(anyhow::Error::msg)?,
        );
        charts.insert(
            1,
            plots::render(
                &fleet::P99Plot {
                    rows: c.p99.clone(),
                },
                Some(plot_dir.as_path()),
            )
            .map_err(anyhow::Error::msg)?,
        );
        std::fs::write(
            out.join("regressions.json"),
            serde_json::to_string_pretty(&c.regressions)?,
        )?;
    }

    // HTML.
    let html = batch_html(batch, &charts, comparison.as_ref(), baseline);
    std::fs::write(out.join("report.html"), html)?;
    Ok(comparison)
}

/// What was done, as lines for standard output, and the exit status.
fn summarize(
    out: &Path,
    batch: &Batch,
    comparison: Option<&Comparison>,
    baseline: Option<&Baseline>,
) -> (String, u8) {
    let results = &batch.results;
    let mut o = String::new();
    let ok = results.iter().filter(|r| r.status == "ok").count() as u64;
    let failed: Vec<&TraceResult> = results.iter().filter(|r| r.status != "ok").collect();
    let events: u64 = results.iter().map(|r| r.events).sum();
    let n_skipped = batch.skipped.len();
    let _ = writeln!(
        o,
        "{} trace{}: {} analysed, {} failed; {} other file{} skipped; {} events in {:.1} s ({} job{})",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        ok,
        failed.len(),
        n_skipped,
        if n_skipped == 1 { "" } else { "s" },
        events,
        batch.elapsed,
        batch.jobs,
        if batch.jobs == 1 { "" } else { "s" }
    );
    for f in &failed {
        let _ = writeln!(
            o,
            "  failed: {}: {}",
            f.path,
            f.error.as_deref().unwrap_or("")
        );
    }
    for s in batch.skipped.iter().filter(|s| s.by_walk) {
        let _ = writeln!(o, "  skipped: {}: {}", s.path, s.reason);
    }
    let rates = kind_rates(results);
    if !rates.is_empty() {
        let s: Vec<String> = rates
            .iter()
            .map(|r| format!("{} in {} traces", r.kind, r.traces))
            .collect();
        let _ = writeln!(o, "findings: {}", s.join(", "));
    }
    let _ = writeln!(
        o,
        "wrote {}",
        out.join("{traces,findings,nmi_durations,skipped}.parquet, report.html, plots/")
            .display()
    );
    let mut code = 0;
    if let (Some(c), Some(b)) = (comparison, baseline) {
        if c.regressions.is_empty() {
            let _ = writeln!(o, "no regression against {}", b.dir.display());
        } else {
            let _ = writeln!(o, "REGRESSIONS against {}:", b.dir.display());
            for r in &c.regressions {
                let _ = writeln!(
                    o,
                    "  {} {}: {} -> {} ({})",
                    r.what, r.kind_or_handler, r.baseline, r.current, r.rule
                );
            }
            code = 1;
        }
    }
    (o, code)
}

fn batch_html(
    batch: &Batch,
    charts: &[plots::Rendered],
    cmp: Option<&Comparison>,
    base: Option<&Baseline>,
) -> String {
    let (results, skipped, elapsed, jobs) =
        (&batch.results, &batch.skipped, batch.elapsed, batch.jobs);
    let mut b = String::new();
    let ok = results.iter().filter(|r| r.status == "ok").count();
    let failed = results.len() - ok;
    let nf: usize = results.iter().map(|r| r.findings.len()).sum();
    let _ = write!(
        b,
        "<section><h2>Summary</h2><p class=\"verdict\">{} traces: {ok} analysed, {failed} failed, {} other files skipped; {nf} findings; {:.1} s with {jobs} jobs</p>",
        results.len(),
        skipped.len(),
        elapsed
    );
    if let (Some(c), Some(base)) = (cmp, base) {
        if c.regressions.is_empty() {
            let _ = write!(
                b,
                "<p>No regression against <code>{}</code>.</p>",
                esc(&base.dir.display().to_string())
            );
        } else {
            let _ = write!(
                b,
                "<p class=\"regression\">{} regression(s) against <code>{}</code>:</p>",
                c.regressions.len(),
                esc(&base.dir.display().to_string())
            );
            let rows: Vec<Vec<String>> = c
                .regressions
                .iter()
                .map(|r| {
                    vec![
                        esc(&r.what),
                        esc(&r.kind_or_handler),
                        esc(&r.baseline),
                        esc(&r.current),
                        esc(&r.rule),
                    ]
                })
                .collect();
            b.push_str(&table(
                &["what", "kind / handler", "baseline", "this batch", "rule"],
                &rows,
            ));
        }
    }
    b.push_str("</section>\n");
    let chart_list: Vec<Chart> = charts
        .iter()
        .map(|c| Chart {
            title: c.title.clone(),
            svg: c.svg.clone(),
        })
        .collect();
    b.push_str(&html_report::charts_html(&chart_list));
    // Traces.
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let status = if r.status == "ok" {
                badge("ok")
            } else {
                format!(
                    "<span class=\"badge failed\">failed</span> {}",
                    esc(r.error.as_deref().unwrap_or(""))
                )
            };
            let kinds: Vec<String> = r
                .summary
                .iter()
                .map(|(k, n)| format!("{}×{n}", esc(k.as_str())))
                .collect();
            vec![
                esc(&r.path),
                esc(&r.format),
                status,
                r.events.to_string(),
                r.lost_events.to_string(),
                r.nmi_instances.to_string(),
                r.nmi_p99_ns
                    .map(|v| esc(&fmt_ns(v as f64)))
                    .unwrap_or_default(),
                kinds.join(", "),
            ]
        })
        .collect();
    let _ = write!(
        b,
        "<section><h2>Traces</h2>{}</section>\n",
        table(
            &["trace", "format", "status", "events", "lost", "NMIs", "NMI p99", "findings"],
            &rows
        )
    );
    // Findings (warnings and errors first).
    let mut fs: Vec<(&str, &Finding)> = results
        .iter()
        .flat_map(|r| r.findings.iter().map(move |f| (r.path.as_str(), f)))
        .collect();
    fs.sort_by_key(|(_, f)| std::cmp::Reverse(f.severity));
    let _ = write!(
        b,
        "<section id=\"findings\"><h2>Findings ({})</h2>",
        fs.len()
    );
    for (t, f) in fs.iter().take(html_report::MAX_FINDINGS_SHOWN) {
        b.push_str(&html_report::findings_html(
            std::slice::from_ref(*f),
            Some(*t),
        ));
    }
    if fs.len() > html_report::MAX_FINDINGS_SHOWN {
        let _ = write!(
            b,
            "<p>{} more in findings.parquet.</p>",
            fs.len() - html_report::MAX_FINDINGS_SHOWN
        );
    }
    b.push_str("</section>\n");
    if !skipped.is_empty() {
        let rows: Vec<Vec<String>> = skipped
            .iter()
            .map(|s| vec![esc(&s.path), esc(&s.reason)])
            .collect();
        let _ = write!(b, "<section><h2>Skipped files</h2><details><summary>{} files</summary>{}</details></section>", skipped.len(), table(&["file", "why"], &rows));
    }
    html_report::page(
        "nmitrace batch report",
        &format!("{} traces", results.len()),
        &b,
    )
}
