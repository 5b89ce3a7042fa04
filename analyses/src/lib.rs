//! nmitrace-analyses: replayed events → findings and the report of SPEC §4.
//!
//! [`analyze_path`] analyses one trace file. Underneath, [`Analyzer`] is a
//! [`nmitrace_parser::Sink`]: feed it a trace's events, then
//! [`Analyzer::finish`] gives the [`Report`]. It drives the replay engine
//! (`nmitrace-replay`), the NMI instance builder ([`nmi`]) and the
//! detectors ([`detect`]), each judging one thing and writing typed
//! [`finding`]s:
//! - [`detect::latch`]: `default_do_nmi` replayed (unknown, swallowed, lost, nested NMIs);
//! - [`detect::switch_window`]: NMIs inside context-switch windows;
//! - [`detect::faults`]: faults inside NMIs;
//! - [`detect::exposure`]: mms lacking vmalloc entries opened during the trace;
//! - [`detect::periodic`]: periodic NMI sources missing beats;
//! - [`detect::slow_handler`]: handlers over `nmi_longest_ns`;
//! - [`detect::console`]: the kernel's own console lines as ground truth.
//!
//! The outputs read only the [`Report`] (and its bounded timeline):
//! [`text_report`], [`html_report`], [`plots`] and [`tables`].

pub mod analyzer;
pub mod counts;
pub mod coverage;
pub mod detect;
pub mod finding;
pub mod histogram;
pub mod html_report;
pub mod nmi;
#[cfg(feature = "plots")]
pub mod plots;
pub mod regression;
pub mod report;
#[cfg(feature = "tables")]
pub mod tables;
pub mod text_report;
pub mod timeline;
pub mod units;

pub use analyzer::Analyzer;
pub use finding::{Confidence, Finding, Kind, Severity};
pub use report::Report;

/// One trace analysed: the report (the JSON document) and the bounded
/// per-CPU timeline the charts and tables draw (not part of the document).
#[derive(Clone, Debug)]
pub struct Analysis {
    pub report: Report,
    pub timeline: timeline::Timeline,
}

/// Options that change what the analyses conclude.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--kernel VERSION`: kernel release to model (overrides what the trace says).
    pub kernel: Option<String>,
    /// `--arch x86_64|x86_32|x86_32-pae`.
    pub arch: Option<String>,
    /// Back-to-back threshold: an NMI starting within this many ns of the
    /// previous one's end on the same CPU is b2b (SPEC §3.6).
    pub b2b_threshold_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            kernel: None,
            arch: None,
            b2b_threshold_ns: DEFAULT_B2B_THRESHOLD_NS,
        }
    }
}

/// Default back-to-back NMI threshold in ns.
pub const DEFAULT_B2B_THRESHOLD_NS: u64 = 2_000;

/// Analyse one trace file (any format nmitrace reads; `-` for standard
/// input): open it, read what its header says, stream every event through
/// the [`Analyzer`] and return the report (`nmitrace analyze --format json`)
/// with its timeline.
///
/// ```no_run
/// let a = nmitrace_analyses::analyze_path("trace.dat", &Default::default())?;
/// println!("{}", a.report.render_text());
/// # Ok::<(), nmitrace_parser::Error>(())
/// ```
pub fn analyze_path(
    path: impl AsRef<std::path::Path>,
    config: &Config,
) -> Result<Analysis, nmitrace_parser::Error> {
    let mut trace = nmitrace_parser::Trace::open(path)?;
    trace.probe()?;
    analyze_trace(trace, config)
}

/// Analyse an opened, probed trace.
pub fn analyze_trace(
    trace: nmitrace_parser::Trace,
    config: &Config,
) -> Result<Analysis, nmitrace_parser::Error> {
    analyze_trace_watched(trace, config, &mut ())
}

/// What sees every event before the analyzer (a progress line, a
/// deadline); returning [`nmitrace_parser::STOP`] ends the reading, and the
/// analysis covers what was read.
pub trait Watch {
    fn event(&mut self, ev: &nmitrace_parser::Event<'_>) -> nmitrace_parser::Flow;
    /// Events the reader counted instead of delivering (see
    /// [`nmitrace_parser::Sink::counted`]).
    fn counted(&mut self, _c: &nmitrace_parser::Counted<'_>) -> nmitrace_parser::Flow {
        nmitrace_parser::CONTINUE
    }
}

/// No watch.
impl Watch for () {
    #[inline]
    fn event(&mut self, _: &nmitrace_parser::Event<'_>) -> nmitrace_parser::Flow {
        nmitrace_parser::CONTINUE
    }
}

/// Analyse an opened, probed trace with `watch` seeing every event first.
pub fn analyze_trace_watched(
    trace: nmitrace_parser::Trace,
    config: &Config,
    watch: &mut dyn Watch,
) -> Result<Analysis, nmitrace_parser::Error> {
    use nmitrace_parser::Sink;
    struct Watched<'a> {
        watch: &'a mut dyn Watch,
        analyzer: &'a mut Analyzer,
    }
    impl Sink for Watched<'_> {
        #[inline]
        fn event(&mut self, ev: &nmitrace_parser::Event<'_>) -> nmitrace_parser::Flow {
            if self.watch.event(ev).is_break() {
                return nmitrace_parser::STOP;
            }
            self.analyzer.event(ev)
        }
        fn notice(&mut self, n: &nmitrace_parser::Notice) {
            self.analyzer.notice(n)
        }
        fn symbols(&mut self, s: &std::sync::Arc<nmitrace_parser::tracedat::symbols::Symbols>) {
            self.analyzer.symbols(s)
        }
        fn countable(&self, kind: nmitrace_parser::EventKind) -> bool {
            self.analyzer.countable(kind)
        }
        fn counted(&mut self, c: &nmitrace_parser::Counted<'_>) -> nmitrace_parser::Flow {
            let _ = self.analyzer.counted(c);
            self.watch.counted(c)
        }
    }
    let info = trace.info.clone();
    let name = trace.name.clone();
    let mut analyzer = Analyzer::for_trace(config.clone(), &info);
    let stats = trace.run(&mut Watched {
        watch,
        analyzer: &mut analyzer,
    })?;
    Ok(analyzer.finish_analysis(&name, &info, &stats))
}

#[cfg(test)]
mod tests;
