//! nmitrace-parser: bytes → typed kernel trace events.
//!
//! Every supported input is auto-detected from its content ([`detect`]):
//! raw tracefs text, `trace-cmd report` text, `perf script` text and
//! trace-cmd `trace.dat` (v6/v7), each plain, gzip or zstd compressed.
//!
//! Sources are streaming: [`Trace::run`] pushes events, in trace order, into
//! a [`Sink`]; memory is bounded by the chunk size, not the trace length.
//!
//! ```no_run
//! use nmitrace_parser::{Trace, Sink, Event, Notice};
//! struct Count(u64);
//! impl Sink for Count {
//!     fn event(&mut self, _ev: &Event<'_>) -> nmitrace_parser::Flow { self.0 += 1; nmitrace_parser::CONTINUE }
//!     fn notice(&mut self, _n: &Notice) {}
//! }
//! let trace = Trace::open("trace.dat").unwrap();
//! let mut c = Count(0);
//! trace.run(&mut c).unwrap();
//! println!("{} events", c.0);
//! ```

pub mod detect;
pub mod error;
pub mod event;
pub mod input;
pub mod json;
pub mod kind;
pub mod model;
pub mod text;
pub mod tracedat;

pub use detect::Format;
pub use error::{Error, Result};
pub use event::{Context, Event, Field, Fields, Origin, Value};
pub use input::Input;
pub use kind::EventKind;

use std::path::Path;

/// Something that happened in the trace that is not an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The ring buffer dropped events (`CPU:N [LOST M EVENTS]`,
    /// `[M EVENTS DROPPED]`, a trace.dat page with the missed-events flag).
    /// `count` is `None` when the format only says "some".
    LostEvents {
        cpu: u32,
        count: Option<u64>,
        /// Timestamp of the first event after the loss, when known.
        ts_ns: Option<u64>,
        origin: Origin,
    },
    /// `##### CPU N buffer started ####`: events before this on CPU N were overwritten.
    BufferStarted { cpu: u32, origin: Origin },
    /// A line that is not an event and not known metadata. Counted, never silently dropped.
    Unparsed {
        origin: Origin,
        text: String,
        reason: String,
    },
    /// A recoverable problem (torn last line, truncated chunk…); the rest is still read.
    Warning { origin: Origin, message: String },
}

/// What a [`Sink`] says after each event: go on reading, or stop.
pub type Flow = std::ops::ControlFlow<()>;

/// Go on reading.
pub const CONTINUE: Flow = std::ops::ControlFlow::Continue(());

/// Stop reading: the consumer has what it needs, or cannot take more (a
/// closed pipe). The reader returns at once, `Ok`, with [`ParseStats::stopped`].
pub const STOP: Flow = std::ops::ControlFlow::Break(());

/// Receives a trace's events in order (ripgrep's `Sink` is the model: each
/// call may stop the search).
pub trait Sink {
    /// One event. Return [`STOP`] to end the reading here.
    fn event(&mut self, ev: &Event<'_>) -> Flow;
    fn notice(&mut self, n: &Notice);
    /// The trace's kernel symbols, offered (trace.dat with kallsyms) before
    /// the first event that prints an address as a function
    /// (`nmi_handler`'s `%ps`), so that the sink can name it.
    fn symbols(&mut self, _symbols: &std::sync::Arc<tracedat::symbols::Symbols>) {}
    /// May events of `kind` reach the sink as counts ([`Sink::counted`])
    /// instead of one by one, where one by one they would tell it nothing
    /// new? A reader that can tell (trace.dat's, on each CPU's own stream;
    /// a text trace's, in each chunk of lines) then counts an event instead
    /// of delivering it when it is in task or softirq context (flags known,
    /// neither NMI nor hardirq) with the same pid as the CPU's previous
    /// event, which was such an event too: not the first after a switch, an
    /// NMI, a lost-events marker or any event of another kind. In text that
    /// says no context (no flags column), when the CPU's previous event was
    /// the same event of the same pid, also without a context
    /// ([`Counted::context_known`] is then false). Default: no, every event
    /// is delivered.
    fn countable(&self, _kind: EventKind) -> bool {
        false
    }
    /// Events counted instead of delivered (see [`Sink::countable`]), by CPU
    /// and event: trace.dat's at the end of the reading, a text trace's after
    /// the events of each chunk of lines they were counted in (returning
    /// [`STOP`] ends the reading there).
    fn counted(&mut self, _c: &Counted<'_>) -> Flow {
        CONTINUE
    }
    /// Does the sink only print each event as a line of this format? A
    /// reader that can (trace.dat's) then formats the lines on its decoding
    /// threads, in parallel, and hands them over in order by
    /// [`Sink::line`] instead of [`Sink::event`]; the others keep calling
    /// `event`. Default: no.
    fn line_format(&self) -> Option<LineFormat> {
        None
    }
    /// One event as a formatted line of [`Sink::line_format`]'s format (with
    /// its newline), where `event` would have been called.
    fn line(&mut self, _line: &str) -> Flow {
        CONTINUE
    }
}

/// A line format a reader can produce on its decoding threads (see
/// [`Sink::line_format`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// [`json::json_line`]: `events --format jsonl`.
    Jsonl,
}

impl LineFormat {
    /// Append `ev` as one line of this format.
    #[inline]
    pub fn write(self, out: &mut String, ev: &Event<'_>) {
        match self {
            LineFormat::Jsonl => json::json_line(out, ev),
        }
    }
}

/// Events of one name on one CPU that were counted, not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted<'a> {
    pub cpu: u32,
    pub system: Option<&'a str>,
    pub name: &'a str,
    pub kind: EventKind,
    pub count: u64,
    /// Their earliest and latest timestamps.
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    /// Their context was known (task or softirq, from flags); otherwise the
    /// format says none (text without a flags column).
    pub context_known: bool,
}

/// What a source knows about the trace as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceInfo {
    pub format: Option<Format>,
    /// Outer compression of the file (`gzip`, `zstd`), if any.
    pub compression: Option<&'static str>,
    /// Kernel release, e.g. `6.18.44` (trace.dat UNAME option).
    pub kernel: Option<String>,
    /// Machine, e.g. `x86_64` (trace.dat UNAME option, or guessed from the
    /// trace: see `arch_from`).
    pub arch: Option<String>,
    /// How `arch` was learnt from the trace (`trace.dat UNAME`, `trace.dat
    /// kallsyms`, `event names`…).
    pub arch_from: Option<&'static str>,
    /// Number of CPUs, when the header says (`cpus=N`, `#P:N`).
    pub cpus: Option<u32>,
    /// Clock, when known (`local`, `x86-tsc`, `counter`…).
    pub clock: Option<String>,
    /// Events the ring buffer overwrote before the trace starts (overwrite
    /// mode, a flight recorder), when the header says: tracefs
    /// `# entries-in-buffer/entries-written: A/B` gives B − A.
    pub overwritten: Option<u64>,
}

/// Counters a source reports when it is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Events handed to the sink.
    pub events: u64,
    /// Input lines (text) or bytes (binary) read.
    pub lines: u64,
    pub bytes: u64,
    /// Lines that were neither events nor known metadata.
    pub unparsed: u64,
    /// Comment and metadata lines (`#…`, `cpus=`, markers).
    pub metadata_lines: u64,
    pub warnings: u64,
    /// The sink stopped the reading before the end of the input.
    pub stopped: bool,
}

/// An opened trace, format detected, ready to stream.
pub struct Trace {
    pub name: String,
    input: Input,
    pub info: TraceInfo,
    /// Parallelism for parsing (None = all cores).
    pub threads: Option<usize>,
    /// trace.dat metadata read by [`Trace::probe`], kept for [`Trace::run`].
    meta: Option<tracedat::header::Meta>,
}

impl Trace {
    /// Open a file (or `-` for stdin) and detect its format.
    pub fn open(path: impl AsRef<Path>) -> Result<Trace> {
        let path = path.as_ref();
        let input = Input::open(path)?;
        Trace::from_input(path.display().to_string(), input)
    }

    /// Wrap already-opened input.
    pub fn from_input(name: String, input: Input) -> Result<Trace> {
        let format = detect::detect(&name, input.head())?;
        let info = TraceInfo {
            format: Some(format),
            compression: input.compression(),
            ..Default::default()
        };
        Ok(Trace {
            name,
            input,
            info,
            threads: None,
            meta: None,
        })
    }

    pub fn format(&self) -> Format {
        self.info.format.expect("format detected at open")
    }

    /// Read header information without streaming the events
    /// (kernel version for trace.dat, `cpus=` for text). Cheap.
    pub fn probe(&mut self) -> Result<()> {
        match self.format() {
            Format::TraceDat { .. } => {
                self.meta = tracedat::probe(&self.name, &mut self.input, &mut self.info)?;
                Ok(())
            }
            _ => text::probe(&self.name, self.input.head(), &mut self.info),
        }
    }

    /// Stream every event into `sink`, in trace order.
    pub fn run(self, sink: &mut dyn Sink) -> Result<ParseStats> {
        let Trace {
            name,
            input,
            info,
            threads,
            meta,
        } = self;
        match info.format.expect("format detected at open") {
            Format::TraceDat { .. } => tracedat::run(&name, input, meta, sink, threads),
            f => text::run(&name, f, input, sink, threads),
        }
    }
}
