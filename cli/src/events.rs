//! `nmitrace events`: the decoded event stream as JSON lines or CSV.

use anyhow::{Context, Result};
use clap::ValueEnum;
use nmitrace_parser::json::json_line;
use nmitrace_parser::{Event, Notice, Sink, Trace};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// One JSON object per event: ts_ns, cpu, pid, comm, name, fields (numbers as numbers).
    Jsonl,
    /// ts_ns,cpu,pid,comm,context,system,name,fields (fields as `k=v` joined by spaces).
    Csv,
    /// Only the number of events (decodes everything, prints one line: a parse-only run).
    Count,
    /// A Parquet table (needs -o FILE): ts_ns, cpu, pid, comm, context, system, name, fields (JSON).
    Parquet,
}

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  nmitrace events trace.dat --format jsonl | head
  nmitrace events trace.txt.gz --format csv > events.csv
  nmitrace events trace.dat --format count
  nmitrace events trace.dat --format parquet -o events.parquet
  nmitrace events trace.dat --format parquet --split -o tables/   # tables/sched_switch.parquet, ...")]
pub struct Args {
    /// Trace file (`-` for standard input).
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    #[arg(long, value_enum, default_value_t = EventsFormat::Jsonl)]
    pub format: EventsFormat,
    /// Output file (required for --format parquet; the text formats go to standard output).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With --format parquet: -o names a directory, one table per event (DIR/<event>.parquet)
    /// with a typed column per field (ts_ns, __cpu, __pid, __comm, __context, then the fields).
    #[arg(long)]
    pub split: bool,
    /// Parser threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

struct Printer<W: Write> {
    out: W,
    format: EventsFormat,
    err: Option<std::io::Error>,
    line: String,
    count: u64,
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

impl<W: Write> Printer<W> {
    fn format_event(&mut self, ev: &Event<'_>) {
        use std::fmt::Write;
        let l = &mut self.line;
        match self.format {
            EventsFormat::Jsonl => json_line(l, ev),
            EventsFormat::Csv => {
                let _ = write!(l, "{},{},{},", ev.ts_ns, ev.cpu, ev.pid);
                csv_field(l, ev.comm.unwrap_or(""));
                let _ = write!(l, ",{},{},", ev.ctx.label(), ev.system.unwrap_or(""));
                csv_field(l, ev.name);
                l.push(',');
                let fields: Vec<String> = ev
                    .fields
                    .iter()
                    .map(|f| format!("{}={}", f.name, f.value))
                    .collect();
                csv_field(l, &fields.join(" "));
                l.push('\n');
            }
            EventsFormat::Count | EventsFormat::Parquet => {}
        }
    }
}

/// Bytes of formatted lines written at once.
const OUT_CHUNK: usize = 1 << 20;

impl<W: Write> Printer<W> {
    /// Write the lines formatted so far; false when nothing more can be
    /// written (a closed pipe, `| head`, or a full disk): stop decoding.
    fn write_out(&mut self) -> bool {
        if let Err(e) = self.out.write_all(self.line.as_bytes()) {
            self.err = Some(e);
            return false;
        }
        self.line.clear();
        true
    }
}

impl<W: Write> Sink for Printer<W> {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        if self.format == EventsFormat::Count {
            self.count += 1;
            return nmitrace_parser::CONTINUE;
        }
        // Lines collect in one buffer, written out a MiB at a time (no
        // second copy through a BufWriter).
        self.format_event(ev);
        if self.line.len() >= OUT_CHUNK && !self.write_out() {
            return nmitrace_parser::STOP;
        }
        nmitrace_parser::CONTINUE
    }

    /// JSON lines can be formatted by the reader's decoding threads.
    fn line_format(&self) -> Option<nmitrace_parser::LineFormat> {
        (self.format == EventsFormat::Jsonl).then_some(nmitrace_parser::LineFormat::Jsonl)
    }

    fn line(&mut self, line: &str) -> nmitrace_parser::Flow {
        self.line.push_str(line);
        if self.line.len() >= OUT_CHUNK && !self.write_out() {
            return nmitrace_parser::STOP;
        }
        nmitrace_parser::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        match n {
            Notice::Warning { origin, message } => {
                eprintln!("nmitrace: warning: {origin}: {message}")
            }
            Notice::Unparsed {
                origin,
                text,
                reason,
            } => eprintln!("nmitrace: warning: {origin}: not parsed ({reason}): {text}"),
            Notice::LostEvents {
                cpu, count, origin, ..
            } => match count {
                Some(c) => eprintln!("nmitrace: warning: {origin}: CPU {cpu} lost {c} events"),
                None => eprintln!("nmitrace: warning: {origin}: CPU {cpu} lost events"),
            },
            Notice::BufferStarted { .. } => {}
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.split && args.format != EventsFormat::Parquet {
        eprintln!("nmitrace: error: --split goes with --format parquet (one table per event in the -o directory)");
        return Ok(ExitCode::from(2));
    }
    if args.format == EventsFormat::Parquet {
        let Some(out) = &args.output else {
            eprintln!("nmitrace: error: --format parquet needs -o FILE (Parquet is binary)");
            return Ok(ExitCode::from(2));
        };
        let mut trace = Trace::open(&args.trace)?;
        trace.threads = args.threads;
        if args.split {
            let staged = crate::atomic::Staged::dir(out)?;
            let cannot = || format!("{}: cannot write", out.display());
            let mut w = nmitrace_analyses::tables::SplitWriter::create(&staged.path())
                .with_context(cannot)?;
            trace.run(&mut w)?;
            for n in &w.notices {
                eprintln!("nmitrace: warning: {n}");
            }
            let (mismatched, extra, over) = (w.mismatched, w.extra_fields, w.over_cap);
            let (rows, tables) = w.finish().with_context(cannot)?;
            staged.commit()?;
            if mismatched + extra + over > 0 {
                eprintln!("nmitrace: warning: {mismatched} values not of their column's type (null), {extra} events with fields their first row lacked (not stored), {over} events beyond the table cap");
            }
            eprintln!(
                "nmitrace: wrote {rows} events in {tables} tables to {}",
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let staged = crate::atomic::Staged::file(out)?;
        let cannot = || format!("{}: cannot write", out.display());
        let mut w =
            nmitrace_analyses::tables::EventsWriter::create(&staged.path()).with_context(cannot)?;
        trace.run(&mut w)?;
        for n in &w.notices {
            eprintln!("nmitrace: warning: {n}");
        }
        let rows = w.finish().with_context(cannot)?;
        staged.commit()?;
        eprintln!("nmitrace: wrote {rows} events to {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.output.is_some() {
        eprintln!(
            "nmitrace: error: -o is for --format parquet; text formats go to standard output"
        );
        return Ok(ExitCode::from(2));
    }
    let mut trace = Trace::open(&args.trace)?;
    trace.threads = args.threads;
    let stdout = std::io::stdout();
    let mut p = Printer {
        out: BufWriter::with_capacity(1 << 16, stdout.lock()),
        format: args.format,
        err: None,
        line: String::with_capacity(OUT_CHUNK + 4096),
        count: 0,
    };
    if args.format == EventsFormat::Csv {
        let _ = p
            .out
            .write_all(b"ts_ns,cpu,pid,comm,context,system,name,fields\n");
    }
    trace.run(&mut p)?;
    if p.err.is_none() {
        p.write_out();
    }
    if args.format == EventsFormat::Count {
        let _ = writeln!(p.out, "{}", p.count);
    }
    if let Some(e) = p.err {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e.into());
    }
    if let Err(e) = p.out.flush() {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    Ok(ExitCode::SUCCESS)
}
