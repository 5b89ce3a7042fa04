//! `nmitrace`: find what goes wrong around NMIs in recorded Linux kernel traces.
//! Wiring and output only: parsing lives in `nmitrace-parser`, state in
//! `nmitrace-replay`, findings in `nmitrace-analyses`.

mod analyze;
mod analyze_outputs;
mod batch;
mod convert;
mod events;
mod model_args;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const ABOUT: &str = "Replay recorded Linux kernel traces to find what goes wrong around NMIs: \
page faults in NMI context on lazily-synced vmalloc memory, NMIs in the context-switch window \
where cr3 and `current` disagree, and lost, swallowed or unknown NMIs.";

const AFTER_HELP: &str = "\
Inputs are detected from their content: raw tracefs text (/sys/kernel/tracing/trace),
`trace-cmd report` text, `perf script` text and trace-cmd trace.dat (v6, v7), each plain,
gzip or zstd compressed. `-` reads standard input.

Examples:
  trace-cmd record -e nmi -e exceptions -e sched -e tlb -e vmalloc -e percpu -e printk:console sleep 10
  nmitrace analyze trace.dat
  nmitrace analyze trace.txt.gz --format json > report.json
  nmitrace analyze old-box.txt --kernel 2.6.35 --arch x86_64 --fail-on warning
  cat /sys/kernel/tracing/trace | nmitrace analyze -
  nmitrace events trace.dat --format jsonl | head
  nmitrace convert trace.txt.gz -o trace.dat
  nmitrace analyze trace.dat --plot plots/ --report report.html --tables tables/
  nmitrace events trace.dat --format parquet -o events.parquet
  nmitrace batch /srv/traces --out today --baseline yesterday

Exit status: 0 fine; 1 a finding at or above --fail-on (batch: a regression against --baseline);
2 bad usage or unreadable input.";

#[derive(Parser)]
#[command(name = "nmitrace", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Analyse traces: verdict, findings with evidence, NMI statistics.
    Analyze(analyze::Args),
    /// Print the decoded event stream (one event per line).
    Events(events::Args),
    /// Write any input as a trace.dat (v7 zstd by default) for trace-cmd and KernelShark.
    Convert(convert::Args),
    /// Analyse many traces in parallel: fleet tables, charts, HTML; --baseline gates on regressions.
    Batch(batch::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let res = match cli.cmd {
        Cmd::Analyze(a) => analyze::run(a),
        Cmd::Events(a) => events::run(a),
        Cmd::Convert(a) => convert::run(a),
        Cmd::Batch(a) => batch::run(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nmitrace: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
