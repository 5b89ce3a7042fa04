//! `nmitrace`: find what goes wrong around NMIs in recorded Linux kernel traces.
//! Wiring and output only: parsing lives in `nmitrace-parser`, state in
//! `nmitrace-replay`, findings in `nmitrace-analyses`.

use nmitrace_cli::{analyze, batch, convert, events, merge};

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
  nmitrace merge parts/0 parts/1 --out today --baseline yesterday

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
    /// Combine batch outputs (the shards of a fleet) into one, as one batch over all their traces.
    Merge(merge::Args),
}

/// Exit status of an internal error: a bug in nmitrace (EX_SOFTWARE).
const EXIT_INTERNAL: u8 = nmitrace_cli::EXIT_INTERNAL;

/// Where and why the last panic happened (the hook keeps it quiet: the
/// command reports it once, as an internal error).
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut g) = LAST_PANIC.lock() {
            *g = Some(format!("{msg}{at}"));
        }
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let res = std::panic::catch_unwind(|| match cli.cmd {
        Cmd::Analyze(a) => analyze::run(a),
        Cmd::Events(a) => events::run(a),
        Cmd::Convert(a) => convert::run(a),
        Cmd::Batch(a) => batch::run(a),
        Cmd::Merge(a) => merge::run(a),
    });
    match res {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("nmitrace: error: {e:#}");
            let internal = e.chain().any(|c| {
                c.downcast_ref::<nmitrace_parser::Error>()
                    .is_some_and(|p| p.internal)
            });
            ExitCode::from(if internal { EXIT_INTERNAL } else { 2 })
        }
        Err(_) => {
            let why = LAST_PANIC
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_default();
            eprintln!("nmitrace: internal error: {why}; this is a bug in nmitrace: please report it with the input");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}
