//! `analyze --plot DIR`, `--report FILE.html`, `--tables DIR`: charts, the
//! HTML page and Parquet tables of each analysed trace.

use anyhow::{Context, Result};
use nmitrace_analyses::html_report::{self, Chart};
use nmitrace_analyses::{plots, tables, Report};
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
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if is_file {
        let fstem = base.file_stem().and_then(|s| s.to_str()).unwrap_or("report");
        let ext = base.extension().and_then(|s| s.to_str()).unwrap_or("html");
        base.with_file_name(format!("{fstem}-{}-{stem}.{ext}", i + 1))
    } else {
        base.join(format!("{}-{stem}", i + 1))
    }
}

pub fn write(out: &Outputs<'_>, reports: &[Report], threads: Option<usize>) -> Result<()> {
    let n = reports.len();
    for (i, r) in reports.iter().enumerate() {
        let path = &r.input.path;
        if out.plot.is_some() || out.report.is_some() {
            let dir = out.plot.map(|d| per_trace(d, i, n, path, false));
            let charts = plots::trace_charts(r, dir.as_deref()).map_err(anyhow::Error::msg).with_context(|| format!("charts of {path}"))?;
            if let Some(d) = &dir {
                eprintln!("nmitrace: wrote {}/{{timeline,nmi_durations,mm_out_of_sync}}.{{svg,png}}", d.display());
            }
            if let Some(f) = out.report {
                let f = per_trace(f, i, n, path, true);
                if let Some(parent) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
                }
                let charts: Vec<Chart> = charts.into_iter().map(|c| Chart { title: c.title, svg: c.svg }).collect();
                std::fs::write(&f, html_report::trace_html(r, &charts)).with_context(|| format!("{}", f.display()))?;
                eprintln!("nmitrace: wrote {}", f.display());
            }
        }
        if let Some(d) = out.tables {
            let d = per_trace(d, i, n, path, false);
            tables::write_report_tables(r, &d).with_context(|| format!("tables of {path} in {}", d.display()))?;
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
            if r.timeline.nmis.dropped() > 0 {
                eprintln!(
                    "nmitrace: {}: nmi_instances.parquet holds an even sample of {} of the {} NMI instances",
                    path,
                    r.timeline.nmis.items().len(),
                    r.timeline.nmis.seen()
                );
            }
            match rows {
                Some(_) => eprintln!("nmitrace: wrote {}/{{events,nmi_instances,findings}}.parquet", d.display()),
                None => eprintln!("nmitrace: wrote {}/{{nmi_instances,findings}}.parquet (standard input cannot be read twice: no events table)", d.display()),
            }
        }
    }
    Ok(())
}
