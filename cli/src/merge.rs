//! `nmitrace merge`: combine the outputs of several batches (the shards of a
//! fleet) into one, as if one batch had analysed all their traces: traces,
//! findings and skipped files concatenated in the order the parts are given,
//! the duration histograms summed, the report and charts redrawn, and the
//! same regression gate against `--baseline`.

use crate::batch::{self, Batch, Skip, TraceResult};
use anyhow::{bail, Context, Result};
use nmitrace_analyses::finding::Details;
use nmitrace_analyses::histogram::LogHistogram;
use nmitrace_analyses::regression::read_baseline;
use nmitrace_analyses::tables::read_parquet;
use nmitrace_analyses::{Confidence, Finding, Kind, Severity};
use polars::prelude::{DataFrame, PolarsResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
#[command(after_help = "\
Each PART_DIR is the --out of `nmitrace batch` (or a fleet shard's part). The merged
output is what one batch over all the parts' traces writes: traces.parquet and
findings.parquet concatenated in the order the parts are given, nmi_durations.parquet
summed, report.html and plots/ redrawn; --baseline applies the batch's regression gate
(exit 1 on a regression).

Examples:
  nmitrace batch --files-from shard-0 --out parts/0
  nmitrace batch --files-from shard-1 --out parts/1
  nmitrace merge parts/0 parts/1 --out fleet-today --baseline fleet-yesterday")]
pub struct Args {
    /// Batch output directories to merge, in order.
    #[arg(required = true, value_name = "PART_DIR")]
    pub parts: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// An earlier batch's output directory to compare with (exit 1 on regression).
    #[arg(long, value_name = "OLD_DIR")]
    pub baseline: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let baseline = match &args.baseline {
        Some(d) => Some(read_baseline(d).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let (text, code) = merge(&args.parts, &args.out, baseline.as_ref(), Vec::new())?;
    batch::print_summary(&text);
    Ok(ExitCode::from(code))
}

/// Merge `parts` into `out`; `walk_skipped`: files the caller's own walk
/// passed over (listed after the parts' own). The summary and exit status.
pub fn merge(
    parts: &[PathBuf],
    out: &Path,
    baseline: Option<&nmitrace_analyses::regression::Baseline>,
    walk_skipped: Vec<(String, String)>,
) -> Result<(String, u8)> {
    let t0 = Instant::now();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    let mut durations: BTreeMap<String, LogHistogram> = BTreeMap::new();
    for p in parts {
        let part = read_part(p).with_context(|| format!("{}: not a batch output", p.display()))?;
        results.extend(part.results);
        skipped.extend(part.skipped);
        for (k, h) in part.durations {
            durations.entry(k).or_default().merge(&h);
        }
    }
    skipped.extend(walk_skipped.into_iter().map(|(path, reason)| Skip {
        path,
        reason,
        by_walk: true,
    }));
    let batch = Batch {
        results,
        skipped,
        durations,
        elapsed: t0.elapsed().as_secs_f64(),
        jobs: 1,
    };
    let named: Vec<String> = parts.iter().map(|p| p.display().to_string()).collect();
    batch::finish(out, &batch, baseline, &named.join(" "))
}

/// One batch output read back.
pub struct Part {
    pub results: Vec<TraceResult>,
    pub skipped: Vec<Skip>,
    pub durations: BTreeMap<String, LogHistogram>,
}

fn table(dir: &Path, name: &str) -> Result<DataFrame> {
    let p = dir.join(name);
    read_parquet(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

fn strs(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df
        .column(c)?
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn u64s(df: &DataFrame, c: &str) -> PolarsResult<Vec<Option<u64>>> {
    Ok(df.column(c)?.u64()?.iter().collect())
}

/// Read a batch's `traces`, `findings`, `nmi_durations` and `skipped` tables.
pub fn read_part(dir: &Path) -> Result<Part> {
    if !dir.is_dir() {
        bail!("no such directory");
    }
    let t = table(dir, "traces.parquet")?;
    let get = |c: &str| strs(&t, c).with_context(|| format!("traces.parquet: column {c}"));
    let getn = |c: &str| u64s(&t, c).with_context(|| format!("traces.parquet: column {c}"));
    let (path, format, compression, status, error) = (
        get("path")?,
        get("format")?,
        get("compression")?,
        get("status")?,
        get("error")?,
    );
    let (kernel, model, kernel_source, arch, arch_source, verdict) = (
        get("kernel")?,
        get("model")?,
        get("kernel_source")?,
        get("arch")?,
        get("arch_source")?,
        get("verdict")?,
    );
    let (events, lost, first, last, nmis) = (
        getn("events")?,
        getn("lost_events")?,
        getn("first_ts_ns")?,
        getn("last_ts_ns")?,
        getn("nmi_instances")?,
    );
    let (p50, p99, max) = (
        getn("nmi_p50_ns")?,
        getn("nmi_p99_ns")?,
        getn("nmi_max_ns")?,
    );
    let seconds: Vec<Option<f64>> = t
        .column("seconds")
        .and_then(|c| c.f64().map(|c| c.iter().collect()))
        .context("traces.parquet: column seconds")?;
    // The kind columns: between `warnings` and `seconds`.
    let names: Vec<String> = t.get_column_names().iter().map(|s| s.to_string()).collect();
    let from = names
        .iter()
        .position(|n| n == "warnings")
        .context("traces.parquet: no warnings column")?
        + 1;
    let to = names
        .iter()
        .position(|n| n == "seconds")
        .context("traces.parquet: no seconds column")?;
    let mut kinds = Vec::new();
    for n in &names[from..to] {
        let k = Kind::parse(n).with_context(|| format!("traces.parquet: finding kind {n:?} unknown to this nmitrace (a part written by another version?)"))?;
        kinds.push((k, getn(n)?));
    }
    let mut results = Vec::with_capacity(t.height());
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..t.height() {
        let p = path[i].clone().unwrap_or_default();
        index.insert(p.clone(), i);
        let mut r = TraceResult::failed(
            p,
            format[i].clone().unwrap_or_default(),
            String::new(),
            seconds[i].unwrap_or(0.0),
        );
        r.status = if status[i].as_deref() == Some("ok") {
            "ok"
        } else {
            "failed"
        };
        r.error = error[i].clone();
        r.compression = compression[i].clone();
        r.kernel = kernel[i].clone();
        r.model = model[i].clone();
        r.kernel_source = kernel_source[i].clone();
        r.arch = arch[i].clone();
        r.arch_source = arch_source[i].clone();
        r.verdict = verdict[i].clone();
        r.events = events[i].unwrap_or(0);
        r.lost_events = lost[i].unwrap_or(0);
        r.first_ts_ns = first[i];
        r.last_ts_ns = last[i];
        r.nmi_instances = nmis[i].unwrap_or(0);
        r.nmi_p50_ns = p50[i];
        r.nmi_p99_ns = p99[i];
        r.nmi_max_ns = max[i];
        for (k, v) in &kinds {
            if let Some(n) = v[i].filter(|&n| n > 0) {
                r.summary.insert(*k, n);
            }
        }
        results.push(r);
    }

    let f = table(dir, "findings.parquet")?;
    let fget = |c: &str| strs(&f, c).with_context(|| format!("findings.parquet: column {c}"));
    let (trace, kind, sev, conf, comm, message, details, evidence) = (
        fget("trace")?,
        fget("kind")?,
        fget("severity")?,
        fget("confidence")?,
        fget("comm")?,
        fget("message")?,
        fget("details")?,
        fget("evidence")?,
    );
    let ts = u64s(&f, "ts_ns").context("findings.parquet: column ts_ns")?;
    let cpu: Vec<Option<u32>> = f
        .column("cpu")
        .and_then(|c| c.u32().map(|c| c.iter().collect()))
        .context("findings.parquet: column cpu")?;
    let pid: Vec<Option<i32>> = f
        .column("pid")
        .and_then(|c| c.i32().map(|c| c.iter().collect()))
        .context("findings.parquet: column pid")?;
    for i in 0..f.height() {
        let row = || format!("findings.parquet row {i}");
        let t = trace[i].as_deref().unwrap_or("");
        let &ri = index
            .get(t)
            .with_context(|| format!("{}: trace {t:?} is not in traces.parquet", row()))?;
        let k = kind[i].as_deref().unwrap_or("");
        let k = Kind::parse(k)
            .with_context(|| format!("{}: finding kind {k:?} unknown to this nmitrace", row()))?;
        let s = sev[i].as_deref().unwrap_or("");
        let s = Severity::parse(s).with_context(|| format!("{}: severity {s:?}", row()))?;
        let c = conf[i].as_deref().unwrap_or("");
        let c = Confidence::parse(c).with_context(|| format!("{}: confidence {c:?}", row()))?;
        let d: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(details[i].as_deref().unwrap_or("{}"))
                .with_context(|| format!("{}: details are not a JSON object", row()))?;
        let mut fd = Finding::new(k, s, c, Details::Recorded(d));
        fd.ts_ns = ts[i];
        fd.cpu = cpu[i];
        fd.pid = pid[i];
        fd.comm = comm[i].clone();
        fd.message = message[i].clone().unwrap_or_default();
        fd.evidence = match evidence[i].as_deref() {
            None | Some("") => Vec::new(),
            Some(e) => e.split('\n').map(str::to_string).collect(),
        };
        results[ri].findings.push(fd);
    }

    let d = table(dir, "nmi_durations.parquet")?;
    let handler = strs(&d, "handler").context("nmi_durations.parquet: column handler")?;
    let bucket: Vec<Option<u32>> = d
        .column("bucket")
        .and_then(|c| c.u32().map(|c| c.iter().collect()))
        .context("nmi_durations.parquet: column bucket")?;
    let count = u64s(&d, "count").context("nmi_durations.parquet: column count")?;
    let mut durations: BTreeMap<String, LogHistogram> = BTreeMap::new();
    for i in 0..d.height() {
        let (Some(h), Some(b), Some(n)) = (&handler[i], bucket[i], count[i]) else {
            bail!("nmi_durations.parquet row {i}: a null")
        };
        durations
            .entry(h.clone())
            .or_default()
            .add_bucket(b as usize, n);
    }

    // Batches before `skipped.parquet` existed listed skipped files only in
    // their report.
    let mut skipped = Vec::new();
    if dir.join("skipped.parquet").exists() {
        let s = table(dir, "skipped.parquet")?;
        let (p, why) = (strs(&s, "path")?, strs(&s, "reason")?);
        let by_walk: Vec<Option<bool>> = s.column("by_walk")?.bool()?.iter().collect();
        for i in 0..s.height() {
            skipped.push(Skip {
                path: p[i].clone().unwrap_or_default(),
                reason: why[i].clone().unwrap_or_default(),
                by_walk: by_walk[i].unwrap_or(false),
            });
        }
    }
    Ok(Part {
        results,
        skipped,
        durations,
    })
}
