//! The report of SPEC §4: one JSON document per trace, and its text form.

use crate::finding::{Finding, Kind, Severity};
use nmitrace_parser::TraceInfo;
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub input: InputBlock,
    pub events: EventsBlock,
    pub nmis: NmisBlock,
    pub findings: Vec<Finding>,
    /// Findings per kind (sorted by name).
    pub summary: BTreeMap<Kind, u64>,
    /// How the input was read: lines, unparsed lines with examples, warnings.
    pub parse: ParseBlock,
    /// What could be checked, and the verdict.
    pub coverage: crate::coverage::Coverage,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputBlock {
    pub path: String,
    pub format: String,
    pub compression: Option<String>,
    pub kernel: Option<String>,
    pub arch: Option<String>,
    /// The kernel-era model the replay used, and whether it is a what-if.
    pub model: ModelBlock,
}

/// What the replay assumed about the kernel, and what it counted (README "Output").
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelBlock {
    /// The kernel release modelled.
    pub kernel: String,
    pub arch: &'static str,
    /// Where the kernel came from: `trace`, `command line`, `default`, `what-if`.
    pub source: &'static str,
    pub arch_source: &'static str,
    /// The trace's own architecture when it is not x86's (counts only).
    pub foreign_arch: Option<String>,
    /// Every assumption, with where it came from.
    pub assumptions: Vec<Assumption>,
    pub what_if: bool,
    pub trace_kernel: Option<String>,
    pub label: String,
    pub era: &'static str,
    pub page_directory: &'static str,
    pub vmalloc_range: [String; 2],
    pub vmalloc_range_from: &'static str,
    pub vmalloc_entries: usize,
    pub lazy_vmalloc_faults: bool,
    pub nested_nmi_corrupts_stack: bool,
    pub vmalloc_fault_uses_active_mm: bool,
    pub b2b_threshold_ns: u64,
    pub switch_windows_from: &'static str,
    pub replay: ReplayCounts,
    pub notes: Vec<String>,
}

/// One assumption of the model.
#[derive(Clone, Debug, Serialize)]
pub struct Assumption {
    pub what: &'static str,
    pub value: AssumedValue,
    pub source: String,
}

/// An assumption's value: text or a number.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum AssumedValue {
    Text(String),
    Number(u64),
}

impl std::fmt::Display for AssumedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssumedValue::Text(s) => f.write_str(s),
            AssumedValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// What the replay counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayCounts {
    pub context_switches: u64,
    pub switch_windows: u64,
    pub fallback_windows: u64,
    pub non_switch_cr3_writes: u64,
    pub forks: u64,
    pub execs: u64,
    pub lazy_vmalloc_syncs: u64,
    pub eager_vmalloc_syncs: u64,
    pub vmalloc_entries_opened: usize,
    pub b2b_nmis: u64,
    pub switch_windows_refuted_by_nmi_dump: u64,
    pub switch_windows_refuted_by_trace: u64,
    pub switches_contradicted: u64,
    pub vmalloc_exposures_not_reported: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EventsBlock {
    pub total: u64,
    pub by_name: BTreeMap<String, u64>,
    pub by_cpu: BTreeMap<String, u64>,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
    /// Events the ring buffer reported lost (sum of the markers that give a number).
    pub lost_events: u64,
    /// Number of loss markers.
    pub lost_event_markers: u64,
    /// Events overwritten before the trace starts (overwrite mode): not a gap.
    pub overwritten_events: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NmisBlock {
    pub instances: u64,
    pub by_handler: BTreeMap<String, HandlerStats>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HandlerStats {
    pub count: u64,
    pub handled: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ParseBlock {
    pub lines: u64,
    pub unparsed_lines: u64,
    pub unparsed_examples: Vec<BTreeMap<String, String>>,
    pub warnings: u64,
    pub warning_examples: Vec<BTreeMap<String, String>>,
}

impl Report {
    pub fn new(path: &str, info: &TraceInfo) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            input: InputBlock {
                path: path.into(),
                format: info
                    .format
                    .map(|f| f.name().to_string())
                    .unwrap_or_default(),
                compression: info.compression.map(Into::into),
                kernel: info.kernel.clone(),
                arch: info.arch.clone(),
                model: ModelBlock::default(),
            },
            events: EventsBlock::default(),
            nmis: NmisBlock::default(),
            findings: Vec::new(),
            summary: BTreeMap::new(),
            parse: ParseBlock::default(),
            coverage: Default::default(),
        }
    }

    /// Sort findings deterministically and fill the summary.
    pub fn finalize(&mut self) {
        self.findings.sort_by(|a, b| {
            (a.ts_ns, a.cpu, a.kind, &a.message).cmp(&(b.ts_ns, b.cpu, b.kind, &b.message))
        });
        self.summary.clear();
        for f in &self.findings {
            *self.summary.entry(f.kind).or_default() += 1;
        }
    }

    /// The most severe finding's severity, if any finding.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}
