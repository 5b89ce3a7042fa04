//! What the trace let nmitrace check, and the verdict that follows: `CLEAN`
//! only for what was checked (`NOTHING TO CHECK`, `CLEAN (partial: …)`),
//! with the events to record for what could not be.

use serde::Serialize;

/// The events `trace-cmd record` needs for every analysis.
pub const RECORD_ALL: &str =
    "trace-cmd record -e nmi -e exceptions -e sched -e tlb -e vmalloc -e percpu -e irq_vectors -e printk:console";

/// One analysis and whether the trace could support it.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub analysis: &'static str,
    /// `checked`, `partial`, `not checked`, `not applicable`.
    pub status: &'static str,
    /// Why it is partial, not checked or not applicable (empty when checked).
    pub why: String,
    /// The `trace-cmd record` events that would make it checkable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<&'static str>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    /// `PROBLEMS FOUND`, `WARNINGS`, `CLEAN`, `CLEAN (partial: …)` or `NOTHING TO CHECK (…)`.
    pub verdict: String,
    pub checks: Vec<Check>,
    /// What to record for the checks that could not run, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// What the trace holds, as far as coverage is concerned.
pub struct Seen<'a> {
    pub nmi_handlers: bool,
    /// Events in NMI context by their flags, or NMI console lines: NMIs
    /// happened even without `nmi_handler` events.
    pub nmi_evidence: bool,
    pub page_faults: bool,
    pub flags_known: bool,
    pub sched_switch: bool,
    pub tlb_flush: bool,
    pub vmalloc_events: bool,
    pub lazy_kernel: bool,
    pub lost_markers: u64,
    pub lost_events: u64,
    pub foreign_arch: Option<&'a str>,
    pub errors: usize,
    pub warnings: usize,
}

fn check(
    analysis: &'static str,
    status: &'static str,
    why: impl Into<String>,
    record: Option<&'static str>,
) -> Check {
    Check {
        analysis,
        status,
        why: why.into(),
        record,
    }
}

pub fn assess(s: &Seen<'_>) -> Coverage {
    let mut checks = Vec::new();
    if let Some(a) = s.foreign_arch {
        let why = format!("a {a} trace: the NMI model is x86's");
        for name in [
            "NMI latch and handlers",
            "page faults in NMI",
            "context-switch windows",
            "vmalloc exposure",
        ] {
            checks.push(check(name, "not applicable", why.clone(), None));
        }
        return Coverage {
            verdict: verdict(s, &checks),
            checks,
            record: None,
        };
    }
    if s.nmi_handlers {
        checks.push(check("NMI latch and handlers", "checked", "", None));
    } else {
        let why = if s.nmi_evidence {
            "NMIs ran (NMI-context events or console lines) but no nmi:nmi_handler events: the handlers, their durations and the latch cannot be seen"
        } else {
            "no nmi:nmi_handler events: no NMI was traced (none happened, or the tracepoint was off)"
        };
        checks.push(check(
            "NMI latch and handlers",
            "not checked",
            why,
            Some("-e nmi"),
        ));
    }
    let any_nmi = s.nmi_handlers || s.nmi_evidence;
    if !s.page_faults {
        checks.push(check(
            "page faults in NMI",
            "not checked",
            "no exceptions:page_fault_* events: faults inside NMIs cannot be seen",
            Some("-e exceptions"),
        ));
    } else if !any_nmi {
        checks.push(check(
            "page faults in NMI",
            "not checked",
            "no NMIs to look inside",
            Some("-e nmi"),
        ));
    } else if !s.flags_known {
        checks.push(check(
            "page faults in NMI",
            "partial",
            "the format has no context flags: NMI context is taken from the handlers' intervals",
            None,
        ));
    } else {
        checks.push(check("page faults in NMI", "checked", "", None));
    }
    if !s.sched_switch {
        checks.push(check(
            "context-switch windows",
            "not checked",
            "no sched:sched_switch events",
            Some("-e sched"),
        ));
    } else if !any_nmi {
        checks.push(check(
            "context-switch windows",
            "not checked",
            "no NMIs to place in them",
            Some("-e nmi"),
        ));
    } else if !s.tlb_flush {
        checks.push(check(
            "context-switch windows",
            "partial",
            "no tlb:tlb_flush events: windows from sched_switch only (the cr3 write is not seen)",
            Some("-e tlb"),
        ));
    } else {
        checks.push(check("context-switch windows", "checked", "", None));
    }
    if !s.lazy_kernel {
        checks.push(check(
            "vmalloc exposure",
            "not applicable",
            "this kernel syncs vmalloc mappings eagerly (no lazy faults)",
            None,
        ));
    } else if !s.vmalloc_events {
        checks.push(check("vmalloc exposure", "not checked", "no vmalloc:alloc_vmap_area or percpu:percpu_create_chunk events: new vmalloc entries cannot be seen", Some("-e vmalloc -e percpu")));
    } else {
        checks.push(check("vmalloc exposure", "checked", "", None));
    }
    if s.lost_markers > 0 {
        checks.push(check("trace completeness", "partial", format!("{} events lost in {} places: findings near them may be incomplete (record with a larger buffer, trace-cmd record -b)", s.lost_events, s.lost_markers), None));
    } else {
        checks.push(check("trace completeness", "checked", "", None));
    }
    let missing: Vec<&str> = checks.iter().filter_map(|c| c.record).collect();
    let record = (!missing.is_empty()).then(|| {
        let mut m: Vec<&str> = missing
            .iter()
            .flat_map(|r| r.split(" -e "))
            .map(|x| x.trim_start_matches("-e ").trim())
            .filter(|x| !x.is_empty())
            .collect();
        m.sort();
        m.dedup();
        format!("{RECORD_ALL} (missing here: {})", m.join(", "))
    });
    Coverage {
        verdict: verdict(s, &checks),
        checks,
        record,
    }
}

fn verdict(s: &Seen<'_>, checks: &[Check]) -> String {
    if s.errors > 0 {
        return "PROBLEMS FOUND".into();
    }
    if s.warnings > 0 {
        return "WARNINGS".into();
    }
    if let Some(a) = s.foreign_arch {
        return format!("NOTHING TO CHECK ({a} trace: the NMI model is x86's)");
    }
    if !s.nmi_handlers && !s.nmi_evidence {
        return "NOTHING TO CHECK (no NMIs in the trace)".into();
    }
    let partial: Vec<String> = checks
        .iter()
        .filter(|c| c.status == "partial" || c.status == "not checked")
        .map(|c| format!("{} {}", c.analysis, c.status))
        .collect();
    if partial.is_empty() {
        "CLEAN".into()
    } else {
        format!("CLEAN (partial: {})", partial.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Seen<'static> {
        Seen {
            nmi_handlers: true,
            nmi_evidence: true,
            page_faults: true,
            flags_known: true,
            sched_switch: true,
            tlb_flush: true,
            vmalloc_events: true,
            lazy_kernel: true,
            lost_markers: 0,
            lost_events: 0,
            foreign_arch: None,
            errors: 0,
            warnings: 0,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(assess(&seen()).verdict, "CLEAN");
        assert!(assess(&seen()).record.is_none());
        let c = assess(&Seen {
            nmi_handlers: false,
            nmi_evidence: false,
            ..seen()
        });
        assert_eq!(c.verdict, "NOTHING TO CHECK (no NMIs in the trace)");
        assert!(c.record.unwrap().contains("missing here: nmi"));
        let c = assess(&Seen {
            tlb_flush: false,
            page_faults: false,
            ..seen()
        });
        assert_eq!(
            c.verdict,
            "CLEAN (partial: page faults in NMI not checked; context-switch windows partial)"
        );
        assert_eq!(
            assess(&Seen {
                warnings: 1,
                tlb_flush: false,
                ..seen()
            })
            .verdict,
            "WARNINGS"
        );
        assert_eq!(
            assess(&Seen {
                foreign_arch: Some("aarch64"),
                ..seen()
            })
            .verdict,
            "NOTHING TO CHECK (aarch64 trace: the NMI model is x86's)"
        );
        assert_eq!(
            assess(&Seen {
                lazy_kernel: false,
                ..seen()
            })
            .verdict,
            "CLEAN",
            "not applicable is not partial"
        );
    }
}
