//! Findings, typed: what kind, how bad, how sure, and the details of each
//! kind, serialised to the output contract's strings and keys (README
//! "Output"). A leaf: it depends on nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A finding kind. Declared in the alphabetical order of their names, so
/// that sorting by kind sorts by name (as the JSON's `summary` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Cr3CurrentMismatch,
    FindingsTruncated,
    LostNmi,
    NestedNmi,
    NmiPageFault,
    NmiVmallocFault,
    SlowNmiHandler,
    SwallowedNmi,
    TraceDataLoss,
    TraceOverwritten,
    UnknownNmi,
    VmallocExposure,
}

impl Kind {
    /// The ten kinds of the output contract (SPEC §4), in its order: always
    /// a column of `traces.parquet`.
    pub const CONTRACT: [Kind; 10] = [
        Kind::NmiVmallocFault,
        Kind::NmiPageFault,
        Kind::VmallocExposure,
        Kind::Cr3CurrentMismatch,
        Kind::UnknownNmi,
        Kind::SwallowedNmi,
        Kind::LostNmi,
        Kind::NestedNmi,
        Kind::SlowNmiHandler,
        Kind::TraceDataLoss,
    ];

    pub const ALL: [Kind; 12] = [
        Kind::Cr3CurrentMismatch,
        Kind::FindingsTruncated,
        Kind::LostNmi,
        Kind::NestedNmi,
        Kind::NmiPageFault,
        Kind::NmiVmallocFault,
        Kind::SlowNmiHandler,
        Kind::SwallowedNmi,
        Kind::TraceDataLoss,
        Kind::TraceOverwritten,
        Kind::UnknownNmi,
        Kind::VmallocExposure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cr3CurrentMismatch => "cr3_current_mismatch",
            Kind::FindingsTruncated => "findings_truncated",
            Kind::LostNmi => "lost_nmi",
            Kind::NestedNmi => "nested_nmi",
            Kind::NmiPageFault => "nmi_page_fault",
            Kind::NmiVmallocFault => "nmi_vmalloc_fault",
            Kind::SlowNmiHandler => "slow_nmi_handler",
            Kind::SwallowedNmi => "swallowed_nmi",
            Kind::TraceDataLoss => "trace_data_loss",
            Kind::TraceOverwritten => "trace_overwritten",
            Kind::UnknownNmi => "unknown_nmi",
            Kind::VmallocExposure => "vmalloc_exposure",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Notes about the trace as a whole, not about an NMI or a switch.
    pub fn is_trace_note(self) -> bool {
        matches!(
            self,
            Kind::TraceDataLoss | Kind::TraceOverwritten | Kind::FindingsTruncated
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding kind as a file names it: one of this version's, or one a
/// baseline written by another version holds. Ordered by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KindName {
    Known(Kind),
    Other(String),
}

impl KindName {
    pub fn parse(s: &str) -> KindName {
        Kind::parse(s).map_or_else(|| KindName::Other(s.to_string()), KindName::Known)
    }

    pub fn as_str(&self) -> &str {
        match self {
            KindName::Known(k) => k.as_str(),
            KindName::Other(s) => s,
        }
    }
}

impl From<Kind> for KindName {
    fn from(k: Kind) -> KindName {
        KindName::Known(k)
    }
}

impl Ord for KindName {
    fn cmp(&self, o: &KindName) -> std::cmp::Ordering {
        self.as_str().cmp(o.as_str())
    }
}

impl PartialOrd for KindName {
    fn partial_cmp(&self, o: &KindName) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad: ordered, `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Error]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure: the trace shows it, or the model says it would happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Observed,
    Inferred,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Observed => "observed",
            Confidence::Inferred => "inferred",
        }
    }

    pub fn parse(s: &str) -> Option<Confidence> {
        match s {
            "observed" => Some(Confidence::Observed),
            "inferred" => Some(Confidence::Inferred),
            _ => None,
        }
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn no<T>(v: &Option<T>) -> bool {
    v.is_none()
}

fn not(b: &bool) -> bool {
    !*b
}

/// One handler's run inside an NMI.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HandlerRun {
    pub handler: String,
    pub delta_ns: u64,
    pub handled: i64,
}

/// What the NMI's own register dump said about the interrupted context.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interrupted {
    #[serde(rename = "interrupted_rip", default, skip_serializing_if = "no")]
    pub rip: Option<String>,
    #[serde(rename = "interrupted_pid", default, skip_serializing_if = "no")]
    pub pid: Option<i32>,
    /// As printed, `0x…`.
    #[serde(rename = "interrupted_cr3", default, skip_serializing_if = "no")]
    pub cr3: Option<String>,
    #[serde(rename = "interrupted_user_mode", default, skip_serializing_if = "not")]
    pub user_mode: bool,
}

/// The NMI a finding is about: its bounds, handlers and dump.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NmiFacts {
    pub nmi_start_ns: u64,
    pub nmi_end_ns: u64,
    pub handled: i64,
    pub handlers: Vec<HandlerRun>,
    #[serde(flatten)]
    pub interrupted: Option<Interrupted>,
}

/// `cr3_current_mismatch`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowDetails {
    #[serde(flatten)]
    pub nmi: NmiFacts,
    pub prev_pid: i32,
    #[serde(skip_serializing_if = "no")]
    pub prev_comm: Option<String>,
    pub next_pid: i32,
    #[serde(skip_serializing_if = "no")]
    pub next_comm: Option<String>,
    #[serde(flatten)]
    pub bounds: Option<WindowBounds>,
    pub window_from: String,
    #[serde(skip_serializing_if = "no")]
    pub fault_in_nmi: Option<bool>,
    /// exec's (or kthread_use_mm's) reverse window.
    #[serde(skip_serializing_if = "no")]
    pub reverse: Option<bool>,
    #[serde(skip_serializing_if = "no")]
    pub confirmed_by: Option<String>,
}

/// A switch window's mms and bounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowBounds {
    pub current_mm: String,
    pub cr3_mm: String,
    pub window_start_ns: u64,
    pub window_end_ns: Option<u64>,
}

/// The vmalloc entry a fault was on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmallocEntry {
    pub entry: u16,
    pub table_index: u64,
    pub entry_base: String,
    pub lacked_by_model: bool,
    pub cr3_mm: Option<String>,
    pub synced_into: Option<String>,
    pub wrong_pgd: bool,
}

/// `nmi_vmalloc_fault` and `nmi_page_fault`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FaultDetails {
    #[serde(flatten)]
    pub vmalloc: Option<VmallocEntry>,
    #[serde(skip_serializing_if = "no")]
    pub user_address: Option<bool>,
    #[serde(skip_serializing_if = "no")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "no")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "no")]
    pub nmi_context_from: Option<String>,
    #[serde(skip_serializing_if = "no")]
    pub in_switch_window: Option<bool>,
    #[serde(skip_serializing_if = "no")]
    pub era: Option<String>,
    #[serde(skip_serializing_if = "no")]
    pub nmi_start_ns: Option<u64>,
    #[serde(skip_serializing_if = "no")]
    pub handlers: Option<Vec<String>>,
    #[serde(flatten)]
    pub interrupted: Option<Interrupted>,
    #[serde(skip_serializing_if = "no")]
    pub confirmed_by: Option<String>,
}

/// `unknown_nmi` and `swallowed_nmi`: the latch's judgement.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatchDetails {
    #[serde(flatten)]
    pub nmi: Option<NmiFacts>,
    #[serde(skip_serializing_if = "no")]
    pub b2b: Option<bool>,
    /// Present (maybe null) when the replay judged it.
    #[serde(skip_serializing_if = "no")]
    pub gap_ns: Option<Option<i64>>,
    #[serde(skip_serializing_if = "no")]
    pub swallow_nmi: Option<bool>,
    #[serde(skip_serializing_if = "no")]
    pub b2b_threshold_ns: Option<u64>,
    #[serde(skip_serializing_if = "no")]
    pub b2b_from: Option<&'static str>,
    #[serde(skip_serializing_if = "no")]
    pub console_confirmed: Option<bool>,
    /// Present (maybe null) when a console line was matched.
    #[serde(skip_serializing_if = "no")]
    pub reason: Option<Option<String>>,
}

/// `lost_nmi`, observed (edges collapsed in the latch) or inferred (beats missing).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LostDetails {
    Edges {
        #[serde(flatten)]
        nmi: NmiFacts,
        lost: i64,
        sources: i64,
        delivered: i64,
        counted: &'static str,
        vendor: &'static str,
        #[serde(skip_serializing_if = "no")]
        b2b_follower_ns: Option<u64>,
    },
    Beats {
        handler: String,
        period_ns: u64,
        gap_ns: u64,
        lost: u64,
        idle_ns: u64,
    },
}

/// `nested_nmi`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NestedDetails {
    #[serde(flatten)]
    pub nmi: NmiFacts,
    pub outer_handler: String,
    pub outer_start_ns: u64,
    pub outer_end_ns: u64,
    pub after_fault_in_nmi: bool,
    pub era: String,
}

/// `slow_nmi_handler`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlowDetails {
    pub handler: String,
    pub delta_ns: u64,
    #[serde(skip_serializing_if = "no")]
    pub threshold_ns: Option<u64>,
    #[serde(skip_serializing_if = "no")]
    pub kernel_prints_too_long: Option<bool>,
    #[serde(flatten)]
    pub interrupted: Option<Interrupted>,
    #[serde(skip_serializing_if = "no")]
    pub console_confirmed: Option<bool>,
}

/// `vmalloc_exposure`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExposureDetails {
    pub entry: u16,
    pub table_index: u64,
    pub entry_base: String,
    pub opened_by: &'static str,
    pub opened_at_ns: u64,
    pub percpu: bool,
    pub mm: String,
    pub assumption: &'static str,
    #[serde(skip_serializing_if = "no")]
    pub exposed_loads: Option<u64>,
    #[serde(skip_serializing_if = "no")]
    pub exposed_mms: Option<u64>,
    #[serde(skip_serializing_if = "no")]
    pub exposed_mms_at_least: Option<bool>,
}

/// What a finding's kind says in detail.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Details {
    Window(Box<WindowDetails>),
    Fault(Box<FaultDetails>),
    Latch(Box<LatchDetails>),
    Lost(Box<LostDetails>),
    Nested(Box<NestedDetails>),
    Slow(SlowDetails),
    Exposure(Box<ExposureDetails>),
    DataLoss {
        lost: Option<u64>,
        at: String,
    },
    Overwritten {
        overwritten: u64,
        #[serde(skip_serializing_if = "no")]
        at: Option<String>,
    },
    Truncated {
        kind: Kind,
        suppressed: u64,
    },
    /// Details read back from a table (`findings.parquet`'s `details`, by
    /// `nmitrace merge`): the JSON object as written, key order kept.
    Recorded(serde_json::Map<String, serde_json::Value>),
}

impl Details {
    /// The NMI the finding is about, when it is about one.
    pub fn nmi(&self) -> Option<&NmiFacts> {
        match self {
            Details::Window(w) => Some(&w.nmi),
            Details::Latch(l) => l.nmi.as_ref(),
            Details::Lost(l) => match &**l {
                LostDetails::Edges { nmi, .. } => Some(nmi),
                LostDetails::Beats { .. } => None,
            },
            Details::Nested(n) => Some(&n.nmi),
            _ => None,
        }
    }

    /// What the NMI's dump said about the interrupted context.
    pub fn interrupted(&self) -> Option<&Interrupted> {
        match self {
            Details::Fault(f) => f.interrupted.as_ref(),
            Details::Slow(s) => s.interrupted.as_ref(),
            d => d.nmi().and_then(|n| n.interrupted.as_ref()),
        }
    }

    /// The kernel output that confirms the finding, when one does.
    pub fn confirmed_by(&self) -> Option<&str> {
        match self {
            Details::Window(w) => w.confirmed_by.as_deref(),
            Details::Fault(f) => f.confirmed_by.as_deref(),
            Details::Recorded(m) => m.get("confirmed_by").and_then(|v| v.as_str()),
            _ => None,
        }
    }

    /// Points in time the finding spans (NMI, window, outer NMI bounds).
    pub fn times(&self) -> Vec<u64> {
        let mut v = Vec::new();
        if let Some(n) = self.nmi() {
            v.extend([n.nmi_start_ns, n.nmi_end_ns]);
        }
        match self {
            Details::Window(w) => {
                if let Some(b) = &w.bounds {
                    v.push(b.window_start_ns);
                    v.extend(b.window_end_ns);
                }
            }
            Details::Nested(n) => v.extend([n.outer_start_ns, n.outer_end_ns]),
            Details::Fault(f) => v.extend(f.nmi_start_ns),
            _ => {}
        }
        v
    }

    /// The switch window (start, end if closed), for a switch finding.
    pub fn window(&self) -> Option<(u64, Option<u64>)> {
        match self {
            Details::Window(w) => w
                .bounds
                .as_ref()
                .map(|b| (b.window_start_ns, b.window_end_ns)),
            _ => None,
        }
    }
}

/// One finding (README "Output").
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub confidence: Confidence,
    pub ts_ns: Option<u64>,
    pub cpu: Option<u32>,
    pub pid: Option<i32>,
    pub comm: Option<String>,
    pub message: String,
    pub details: Details,
    /// Trace lines that prove the finding, as the trace printed them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

impl Finding {
    pub fn new(
        kind: Kind,
        severity: Severity,
        confidence: Confidence,
        details: Details,
    ) -> Finding {
        Finding {
            kind,
            severity,
            confidence,
            ts_ns: None,
            cpu: None,
            pid: None,
            comm: None,
            message: String::new(),
            details,
            evidence: Vec::new(),
        }
    }

    /// The details as the JSON document has them (for readers of the contract, and tests).
    pub fn details_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.details).unwrap_or_default()
    }

    /// Where the NMI's own register dump says the CPU was: `RIP …, CR3 …, current PID …`.
    pub fn interrupted_at(&self) -> Option<String> {
        let recorded;
        let d = match &self.details {
            Details::Recorded(m) => {
                recorded =
                    serde_json::from_value::<Interrupted>(serde_json::Value::Object(m.clone()))
                        .ok()?;
                &recorded
            }
            d => d.interrupted()?,
        };
        let mut s = format!("RIP {}", d.rip.as_deref()?);
        if let Some(c) = &d.cr3 {
            s.push_str(&format!(", CR3 {c}"));
        }
        if let Some(p) = d.pid {
            s.push_str(&format!(", current PID {p}"));
        }
        if d.user_mode {
            s.push_str(" (user mode)");
        }
        Some(s)
    }
}

/// Findings kept per kind; the rest are counted.
pub const MAX_PER_KIND: u64 = 1000;

/// A finding's place in [`Findings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FindingId(usize);

/// Collects findings with a per-kind cap, so a pathological trace cannot
/// grow the report without bound. Ids stay valid until [`Findings::into_vec`].
#[derive(Default)]
pub struct Findings {
    list: Vec<Option<Finding>>,
    per_kind: std::collections::BTreeMap<Kind, u64>,
    suppressed: std::collections::BTreeMap<Kind, u64>,
}

impl Findings {
    /// Add a finding; its id when kept (not over the cap).
    pub fn push(&mut self, f: Finding) -> Option<FindingId> {
        let n = self.per_kind.entry(f.kind).or_default();
        *n += 1;
        if *n > MAX_PER_KIND {
            *self.suppressed.entry(f.kind).or_default() += 1;
            return None;
        }
        self.list.push(Some(f));
        Some(FindingId(self.list.len() - 1))
    }

    pub fn get_mut(&mut self, id: FindingId) -> Option<&mut Finding> {
        self.list.get_mut(id.0).and_then(|f| f.as_mut())
    }

    /// Withdraw a finding (the kernel's own output refuted it).
    pub fn remove(&mut self, id: FindingId) -> Option<Finding> {
        self.list.get_mut(id.0).and_then(|f| f.take())
    }

    /// Withdraw every finding of `kind`; how many.
    pub fn remove_kind(&mut self, kind: Kind) -> u64 {
        let mut n = 0;
        for f in self.list.iter_mut() {
            if f.as_ref().is_some_and(|f| f.kind == kind) {
                *f = None;
                n += 1;
            }
        }
        n
    }

    /// The findings kept, in the order they came, with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (FindingId, &Finding)> {
        self.list
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (FindingId(i), f)))
    }

    /// The kept findings plus one `findings_truncated` note per capped kind.
    pub fn into_vec(self) -> Vec<Finding> {
        let mut out: Vec<Finding> = self.list.into_iter().flatten().collect();
        for (kind, n) in self.suppressed {
            let mut f = Finding::new(
                Kind::FindingsTruncated,
                Severity::Info,
                Confidence::Observed,
                Details::Truncated {
                    kind,
                    suppressed: n,
                },
            );
            f.message =
                format!("{n} more {kind} findings were not listed (limit {MAX_PER_KIND} per kind)");
            out.push(f);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialised_as_the_output_contract_says() {
        let mut f = Finding::new(
            Kind::SlowNmiHandler,
            Severity::Warning,
            Confidence::Observed,
            Details::Slow(SlowDetails {
                handler: "h".into(),
                delta_ns: 5,
                threshold_ns: Some(1),
                console_confirmed: Some(true),
                ..Default::default()
            }),
        );
        f.message = "m".into();
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(
            j,
            r#"{"kind":"slow_nmi_handler","severity":"warning","confidence":"observed","ts_ns":null,"cpu":null,"pid":null,"comm":null,"message":"m","details":{"handler":"h","delta_ns":5,"threshold_ns":1,"console_confirmed":true}}"#
        );
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort();
            s
        };
        assert_eq!(names, sorted, "kinds are declared in name order");
        names.dedup();
        assert_eq!(Kind::parse("lost_nmi"), Some(Kind::LostNmi));
    }

    #[test]
    fn present_but_null_and_absent_differ() {
        let l = LatchDetails {
            gap_ns: Some(None),
            b2b: Some(false),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"b2b":false,"gap_ns":null}"#
        );
        let w = Details::Overwritten {
            overwritten: 3,
            at: None,
        };
        assert_eq!(serde_json::to_string(&w).unwrap(), r#"{"overwritten":3}"#);
    }

    #[test]
    fn the_cap_counts_what_it_drops() {
        let mut fs = Findings::default();
        for _ in 0..MAX_PER_KIND + 3 {
            fs.push(Finding::new(
                Kind::LostNmi,
                Severity::Info,
                Confidence::Observed,
                Details::DataLoss {
                    lost: None,
                    at: String::new(),
                },
            ));
        }
        let v = fs.into_vec();
        assert_eq!(v.len() as u64, MAX_PER_KIND + 1);
        assert_eq!(v.last().unwrap().kind, Kind::FindingsTruncated);
        assert_eq!(
            v.last().unwrap().message,
            "3 more lost_nmi findings were not listed (limit 1000 per kind)"
        );
    }
}
