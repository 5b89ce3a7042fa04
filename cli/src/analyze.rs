//! `nmitrace analyze`: run the analyses over each trace and print the report.

use anyhow::Result;
use clap::ValueEnum;
use nmitrace_analyses::{Analysis, Config};
use nmitrace_parser::Trace;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// A readable report: verdict, findings with evidence, NMI statistics.
    Text,
    /// The JSON document of the output contract (one per trace; an array for several).
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Severity {
    Info,
    Warning,
    Error,
    /// Never fail on findings.
    Never,
}

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  nmitrace analyze trace.dat
  nmitrace analyze trace.txt.gz --format json
  nmitrace analyze old.txt --kernel 2.6.35 --arch x86_64     # model an old kernel
  nmitrace analyze new.dat --kernel 3.10                      # what-if: replay under another era
  nmitrace analyze a.dat b.dat --fail-on warning              # gate CI on findings
  nmitrace analyze trace.dat --plot plots/ --report report.html --tables tables/")]
pub struct Args {
    /// Trace files (`-` for standard input).
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutFormat::Text)]
    pub format: OutFormat,
    #[command(flatten)]
    pub model: crate::model_args::ModelArgs,
    /// Exit 1 when a finding at or above this severity is reported (default: exit 0 whatever is found).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// Parser threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Write charts into DIR as SVG and PNG: per-CPU timeline, NMI handler durations, mms out of sync.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Write a self-contained HTML report: summary, findings with evidence, charts.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Write Parquet tables into DIR: events.parquet, nmi_instances.parquet, findings.parquet.
    #[arg(long, value_name = "DIR")]
    pub tables: Option<PathBuf>,
}

pub fn analyze_one(
    path: &std::path::Path,
    config: &Config,
    threads: Option<usize>,
) -> Result<Analysis> {
    analyze_trace(Trace::open(path)?, config, threads, true, None)
}

/// Run the analyses over an opened trace. `progress`: show a progress line
/// on a terminal (off where the caller draws its own, as `batch` does);
/// `deadline`: give up then (an error saying so).
pub fn analyze_trace(
    mut trace: Trace,
    config: &Config,
    threads: Option<usize>,
    progress: bool,
    deadline: Option<std::time::Instant>,
) -> Result<Analysis> {
    let t0 = std::time::Instant::now();
    trace.threads = threads;
    trace.probe()?;
    let name = trace.name.clone();
    let mut p = crate::progress::Progress::new(&name, progress, deadline);
    let analysis = nmitrace_analyses::analyze_trace_watched(trace, config, &mut p);
    p.done();
    if p.timed_out {
        anyhow::bail!(
            "{name}: gave up after {:.1} s (--timeout); the trace was not analysed to its end",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(analysis?)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = args.model.config();
    let mut reports = Vec::new();
    for p in &args.traces {
        reports.push(analyze_one(p, &config, args.threads)?);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        OutFormat::Json => {
            if reports.len() == 1 {
                serde_json::to_writer_pretty(&mut out, &reports[0].report)?;
            } else {
                let all: Vec<&nmitrace_analyses::Report> =
                    reports.iter().map(|a| &a.report).collect();
                serde_json::to_writer_pretty(&mut out, &all)?;
            }
            writeln!(out)?;
        }
        OutFormat::Text => {
            for (i, r) in reports.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                out.write_all(r.report.render_text().as_bytes())?;
            }
        }
    }
    out.flush()?;
    let extra = crate::analyze_outputs::Outputs {
        plot: args.plot.as_deref(),
        report: args.report.as_deref(),
        tables: args.tables.as_deref(),
    };
    if extra.plot.is_some() || extra.report.is_some() || extra.tables.is_some() {
        crate::analyze_outputs::write(&extra, &reports, args.threads)?;
    }
    let threshold = match args.fail_on {
        Some(Severity::Info) => Some(nmitrace_analyses::Severity::Info),
        Some(Severity::Warning) => Some(nmitrace_analyses::Severity::Warning),
        Some(Severity::Error) => Some(nmitrace_analyses::Severity::Error),
        Some(Severity::Never) | None => None,
    };
    let worst = reports.iter().filter_map(|a| a.report.max_severity()).max();
    Ok(match (threshold, worst) {
        (Some(t), Some(w)) if w >= t => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
