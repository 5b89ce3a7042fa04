//! `nmitrace convert`: write any input as a trace.dat that trace-cmd and
//! KernelShark open.

use anyhow::{bail, Context as _, Result};
use clap::ValueEnum;
use nmitrace_parser::tracedat::compress::Compression;
use nmitrace_parser::tracedat::{convert, WriterOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Comp {
    Zstd,
    None,
}

#[derive(clap::Args)]
#[command(after_help = "\
From text, the modelled events (SPEC §2.5: sched, exceptions, nmi, tlb, vmalloc, percpu,
irq_vectors) are written with the format files nmitrace carries, and their NMI/irq context
bits set from the source's flags; other events are counted and reported as skipped.
Functions the text names where the format holds an address (nmi_handler's
`perf_event_nmi_handler()`, a page fault's `ip=__put_user_4`) get made-up addresses listed
in the file's kallsyms, so nmitrace and `trace-cmd report` print the names again.
From a trace.dat, every event is kept with the file's own formats and kallsyms.

Examples:
  nmitrace convert trace.txt.gz -o trace.dat
  nmitrace convert trace.dat --file-version 6 -o trace.v6.dat
  trace-cmd report -i trace.dat")]
pub struct Args {
    /// Input trace (any supported format; `-` for standard input).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output trace.dat.
    #[arg(short, long, value_name = "OUT.dat")]
    pub output: PathBuf,
    /// trace.dat file version.
    #[arg(long, value_name = "6|7", default_value_t = 7, value_parser = clap::value_parser!(u32).range(6..=7))]
    pub file_version: u32,
    /// Compression of v7 sections and per-CPU data (v6 is never compressed).
    #[arg(long, value_enum, default_value_t = Comp::Zstd)]
    pub compression: Comp,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.output == args.input {
        bail!(
            "{}: output would overwrite the input",
            args.output.display()
        );
    }
    let opts = WriterOptions {
        version: args.file_version,
        compression: if args.file_version == 6 || args.compression == Comp::None {
            Compression::None
        } else {
            Compression::Zstd
        },
        ..Default::default()
    };
    // Written under a staging name and moved into place when complete: a
    // failure leaves any previous file as it was.
    let staged = crate::atomic::Staged::file(&args.output)?;
    let out = std::fs::File::create(staged.path())
        .with_context(|| format!("{}: cannot create", args.output.display()))?;
    let stats = convert(&args.input, std::io::BufWriter::new(out), opts).map_err(|e| {
        // A failure to write names the output; one to read names the input already.
        let write = e.path == "trace.dat writer";
        let e = anyhow::Error::from(e);
        if write {
            e.context(format!("{}: cannot write", args.output.display()))
        } else {
            e
        }
    })?;
    staged.commit()?;
    eprintln!(
        "nmitrace: wrote {} events to {} ({} bytes)",
        stats.events,
        args.output.display(),
        stats.bytes
    );
    let skipped: u64 = stats.skipped.values().sum();
    if skipped > 0 {
        eprintln!("nmitrace: skipped {skipped} events without a carried format:");
        for (name, n) in &stats.skipped {
            eprintln!("  {name:<40} {n:>10}");
        }
    }
    for (field, n) in &stats.unencodable {
        eprintln!(
            "nmitrace: warning: {n} values of {field} were not numbers and were written as 0"
        );
    }
    Ok(ExitCode::SUCCESS)
}
