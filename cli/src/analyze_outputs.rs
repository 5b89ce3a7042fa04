//! `analyze --plot DIR`, `--report FILE.html`, `--tables DIR`: charts, the
//! HTML page and Parquet tables of each analysed trace.

use crate::atomic::Staged;
use anyhow::{Context, Result};
use nmitrace_analyses::html_report::{self, Chart};
use nmitrace_analyses::{plots, tables, Analysis};
use nmitrace_parser::Trace;
use std::path::{Path, PathBuf};

/// Where the extra outputs go (all optional).
pub struct Outputs<'a> {
    pub plot: Option<&'a Path>,
    pub report: Option<&'a Path>,
    pub tables: Option<&'a Path>,
}

/// For several traces: `DIR/<n>-<stem>` (or `FILE-<n>-<stem>.html`), one per trace.
fn per_trace(base: &Path, i: usize, n: usize, trace: &str, is_file: bool) -> PathBuf {
    if n == 1 {
        return base.to_path_buf();
    }
    let stem: String = Path::new(trace)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("trace")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if is_file {
        let fstem = base
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("report");
        let ext = base.extension().and_then(|s| s.to_str()).unwrap_or("html");
        base.with_file_name(format!("{fstem}-{}-{stem}.{ext}", i + 1))
    } else {
        base.join(format!("{}-{stem}", i + 1))
    }
}

/// Write every output into staging areas, then move them all into place
/// (see [`crate::atomic`]): a failure leaves the previous outputs intact.
pub fn write(out: &Outputs<'_>, reports: &[Analysis], threads: Option<usize>) -> Result<()> {
    let plot = out.plot.map(Staged::dir).transpose()?;
    let tables = out.tables.map(Staged::dir).transpose()?;
    // --report FILE: one file per trace, staged together in the file's directory.
    let report = out
        .report
        .map(|f| Staged::dir(&parent_dir(f)))
        .transpose()?;
    let said = write_staged(
        out,
        reports,
        threads,
        plot.as_ref(),
        report.as_ref(),
        tables.as_ref(),
    )?;
    for s in [plot, report, tables].into_iter().flatten() {
        s.commit()?;
    }
    for line in said {
        eprintln!("nmitrace: wrote {line}");
    }
    Ok(())
}

fn parent_dir(f: &Path) -> PathBuf {
    match f.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The same path under the staging area of its target.
fn staged(s: &Staged, target_root: &Path, p: &Path) -> PathBuf {
    s.path().join(p.strip_prefix(target_root).unwrap_or(p))
}

fn write_staged(
    out: &Outputs<'_>,
    reports: &[Analysis],
    threads: Option<usize>,
    plot: Option<&Staged>,
    report: Option<&Staged>,
    tables: Option<&Staged>,
) -> Result<Vec<String>> {
    let n = reports.len();
    let mut said = Vec::new();
    for (i, a) in reports.iter().enumerate() {
        let r = &a.report;
        let path = &r.input.path;
        if out.plot.is_some() || out.report.is_some() {
            let target = out.plot.map(|d| per_trace(d, i, n, path, false));
            let dir = match (&target, plot, out.plot) {
                (Some(t), Some(s), Some(root)) => Some(staged(s, root, t)),
                _ => None,
            };
            let charts = plots::trace_charts(a, dir.as_deref())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("charts of {path}"))?;
            // The zoomed findings: a second pass over the trace for their events.
            let zooms = plots::zoom::collect(path, r, threads)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("zoomed charts of {path}"))?;
            let zoomed = plots::zoom_charts(&zooms, dir.as_deref())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("zoomed charts of {path}"))?;
            if let Some(d) = &target {
                said.push(format!(
                    "{}",
                    d.join("{timeline,nmi_durations,mm_out_of_sync}.{svg,png}")
                        .display()
                ));
                if !zoomed.is_empty() {
                    said.push(format!(
                        "{} ({} zoomed finding{})",
                        d.join("zoom-*.{svg,png}").display(),
                        zoomed.len(),
                        if zoomed.len() == 1 { "" } else { "s" }
                    ));
                }
            }
            if let (Some(f), Some(s)) = (out.report, report) {
                let f = per_trace(f, i, n, path, true);
                let staged_f = staged(s, &parent_dir(out.report.unwrap()), &f);
                let charts: Vec<Chart> = charts
                    .into_iter()
                    .map(|c| Chart {
                        title: c.title,
                        svg: c.svg,
                    })
                    .collect();
                let zoomed: Vec<(usize, Chart)> = zoomed
                    .into_iter()
                    .map(|(k, c)| {
                        (
                            k,
                            Chart {
                                title: c.title,
                                svg: c.svg,
                            },
                        )
                    })
                    .collect();
                std::fs::write(
                    &staged_f,
                    html_report::trace_html_zoomed(r, &charts, &zoomed),
                )
                .with_context(|| format!("{}", f.display()))?;
                said.push(f.display().to_string());
            }
        }
        if let (Some(root), Some(s)) = (out.tables, tables) {
            let target = per_trace(root, i, n, path, false);
            let d = staged(s, root, &target);
            tables::write_report_tables(a, &d)
                .with_context(|| format!("tables of {path} in {}", d.display()))?;
            // The events table: a second pass over the trace, streamed in row groups.
            let rows = if path == "-" || path == "<stdin>" {
                None
            } else {
                let mut trace = Trace::open(path)?;
                trace.threads = threads;
                let mut w = tables::EventsWriter::create(&d.join("events.parquet"))?;
                trace.run(&mut w)?;
                Some(w.finish()?)
            };
            if a.timeline.nmis.dropped() > 0 {
                eprintln!(
                    "nmitrace: {}: nmi_instances.parquet holds an even sample of {} of the {} NMI instances",
                    path,
                    a.timeline.nmis.items().len(),
                    a.timeline.nmis.seen()
                );
            }
            match rows {
                Some(_) => said.push(format!(
                    "{}",
                    target
                        .join("{events,nmi_instances,findings}.parquet")
                        .display()
                )),
                None => said.push(format!(
                    "{} (standard input cannot be read twice: no events table)",
                    target.join("{nmi_instances,findings}.parquet").display()
                )),
            }
        }
    }
    Ok(said)
}
