//! nmitrace-analyses: replayed events → findings and the report of SPEC §4.
//!
//! [`Analyzer`] is a [`Sink`]: feed it a trace's events, then
//! [`Analyzer::finish`] gives the [`Report`].

pub mod counts;
pub mod report;

use nmitrace_parser::{Event, Notice, ParseStats, Sink, TraceInfo};
pub use report::{Finding, Report};

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
        Config { kernel: None, arch: None, b2b_threshold_ns: DEFAULT_B2B_THRESHOLD_NS }
    }
}

/// Default back-to-back NMI threshold in ns.
pub const DEFAULT_B2B_THRESHOLD_NS: u64 = 2_000;

/// Runs every analysis over one trace.
pub struct Analyzer {
    #[allow(dead_code)]
    config: Config,
    counts: counts::EventCounts,
    notices: counts::NoticeLog,
}

impl Analyzer {
    pub fn new(config: Config) -> Analyzer {
        Analyzer { config, counts: counts::EventCounts::default(), notices: counts::NoticeLog::default() }
    }

    /// Close the analyses and build the report.
    pub fn finish(self, path: &str, info: &TraceInfo, stats: &ParseStats) -> Report {
        let mut report = Report::new(path, info);
        report.events = self.counts.into_block(&self.notices);
        report.parse = report::ParseBlock::new(stats, &self.notices);
        report.findings.extend(self.notices.data_loss_findings());
        report.finalize();
        report
    }
}

impl Sink for Analyzer {
    #[inline]
    fn event(&mut self, ev: &Event<'_>) {
        self.counts.add(ev);
    }

    fn notice(&mut self, n: &Notice) {
        self.notices.add(n);
    }
}
