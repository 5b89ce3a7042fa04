//! The x86 NMI latch (SPEC §3.6): every finished NMI replayed through
//! `default_do_nmi()` (arch/x86/kernel/nmi.c): back-to-back detection (a
//! timing proxy for `regs->ip == __this_cpu_read(last_nmi_rip)`), `handled`,
//! `swallow_nmi`, hence unknown and swallowed NMIs; lost NMI edges (more
//! sources serviced than NMIs delivered for them); and nested NMIs
//! (overlapping instances).

use super::{Cx, Detector};
use crate::finding::{
    Confidence, Details, Finding, FindingId, Findings, Kind, LatchDetails, LostDetails,
    NestedDetails, Severity,
};
use crate::nmi::instance::Instance;
use nmitrace_replay::fmt_ts;

/// What the back-to-back verdicts rest on.
pub const B2B_FROM: &str = "timing proxy: the NMI started within b2b_threshold_ns of the previous one's end; the kernel tests regs->ip == last_nmi_rip, which the trace does not carry";

/// The last finished instance on a CPU, waiting for its follower to settle
/// how many NMIs were delivered for its sources.
#[derive(Default)]
struct LatchCpu {
    prev: Option<Instance>,
    /// `swallow_nmi`: the previous NMI handled more than one source.
    swallow: bool,
}

/// `default_do_nmi()` replayed, per CPU.
#[derive(Default)]
pub struct Latch {
    cpus: Vec<LatchCpu>,
    /// NMIs replayed.
    pub instances: u64,
    /// Of which back-to-back.
    pub b2b: u64,
}

impl Latch {
    fn cpu(&mut self, cpu: u32) -> &mut LatchCpu {
        let c = cpu as usize;
        if c >= self.cpus.len() {
            self.cpus.resize_with(c + 1, LatchCpu::default);
        }
        &mut self.cpus[c]
    }

    /// No follower will come for the last NMI on `cpu` (lost events, end of
    /// trace): settle its edges alone.
    pub fn end_cpu(&mut self, cpu: u32, out: &mut Findings) {
        let Some(c) = self.cpus.get_mut(cpu as usize) else {
            return;
        };
        if let Some(p) = c.prev.take() {
            lost_check(&p, None, out);
        }
        c.swallow = false;
    }
}

impl Detector for Latch {
    fn on_instance(&mut self, inst: &mut Instance, cx: &Cx<'_>, out: &mut Findings) {
        if inst.handlerless {
            return;
        }
        if let Some(o) = &inst.overlap {
            out.push(nested_finding(inst, o, cx));
        }
        let (thr, tol) = (cx.b2b_threshold_ns, cx.tol);
        let cpu = inst.cpu;
        let c = self.cpu(cpu);
        let b2b = c
            .prev
            .as_ref()
            .is_some_and(|p| inst.start + tol >= p.end && inst.start <= p.end + thr);
        let gap = c.prev.as_ref().map(|p| inst.start as i64 - p.end as i64);
        if !b2b {
            c.swallow = false;
        }
        let empty = inst.handled == 0;
        let mut swallowed = false;
        let mut unknown = false;
        if !inst.nested {
            if !empty {
                if inst.handled > 1 {
                    c.swallow = true;
                }
            } else if b2b && c.swallow {
                swallowed = true;
            } else {
                unknown = true;
            }
        }
        // Lost edges of the previous instance: its sources minus the NMIs delivered for them.
        let prev = c.prev.take();
        let swallow_now = c.swallow;
        self.instances += 1;
        if b2b {
            self.b2b += 1;
        }
        if let Some(p) = prev {
            let follower_counts = b2b && empty && !inst.nested;
            lost_check(&p, follower_counts.then_some(&*inst), out);
        }
        if swallowed {
            let mut f = Finding::new(
                Kind::SwallowedNmi,
                Severity::Info,
                Confidence::Observed,
                Details::Latch(Box::new(LatchDetails {
                    nmi: Some(inst.facts()),
                    b2b: Some(true),
                    gap_ns: Some(gap),
                    b2b_threshold_ns: Some(thr),
                    b2b_from: Some(B2B_FROM),
                    ..Default::default()
                })),
            );
            about(&mut f, inst);
            f.message = format!(
                "empty NMI on CPU {cpu} came back-to-back ({} ns after the previous one) with swallow_nmi set (a previous NMI handled more than one source): default_do_nmi swallowed it instead of reporting an unknown NMI — expected, but a real unknown NMI arriving now would be swallowed too (back-to-back judged by timing: the kernel compares the interrupted RIP with the previous NMI's, which the trace does not record)",
                gap.unwrap_or(0)
            );
            out.push(f);
        }
        if unknown {
            let why = if !b2b {
                "it was not back-to-back with a previous NMI (judged by timing: the kernel compares the interrupted RIP with the previous NMI's, which the trace does not record)"
            } else {
                "it was back-to-back (judged by timing) but swallow_nmi was clear (the previous NMI handled at most one source)"
            };
            let mut f = Finding::new(
                Kind::UnknownNmi,
                Severity::Warning,
                Confidence::Observed,
                Details::Latch(Box::new(LatchDetails {
                    nmi: Some(inst.facts()),
                    b2b: Some(b2b),
                    gap_ns: Some(gap),
                    swallow_nmi: Some(swallow_now),
                    b2b_threshold_ns: Some(thr),
                    b2b_from: Some(B2B_FROM),
                    ..Default::default()
                })),
            );
            about(&mut f, inst);
            f.message = format!(
                "NMI on CPU {cpu} that no handler claimed (every handler returned 0) and {why}: the kernel reports \"Uhhuh. NMI received for unknown reason\" (or panics with unknown_nmi_panic); look for an external source (SERR/IOCHK, BMC, watchdog) or a handler that did not recognise its event"
            );
            out.push(f);
        }
        self.cpu(cpu).prev = Some(inst.clone());
    }

    fn on_lost(&mut self, cpu: u32, _cx: &Cx<'_>, out: &mut Findings) {
        self.end_cpu(cpu, out);
    }
}

/// The base of every finding about one NMI: when, where, whom it interrupted, its lines.
pub fn about(f: &mut Finding, inst: &Instance) {
    f.ts_ns = Some(inst.start);
    f.cpu = Some(inst.cpu);
    f.pid = Some(inst.pid);
    f.comm = Some(inst.comm.clone()).filter(|c| !c.is_empty());
    f.evidence = inst.lines.clone();
}

/// The empty-NMI findings (unknown or swallowed) the latch wrote, for the
/// console's "Uhhuh" lines to confirm: the latest on `cpu` that started at
/// most 10 s before `ts_ns`.
pub fn empty_nmi_before(out: &Findings, cpu: u32, ts_ns: u64) -> Option<FindingId> {
    out.iter()
        .filter(|(_, f)| {
            matches!(f.kind, Kind::UnknownNmi | Kind::SwallowedNmi) && f.cpu == Some(cpu)
        })
        .filter_map(|(id, f)| Some((id, f.details.nmi()?.nmi_start_ns)))
        .filter(|(_, start)| *start <= ts_ns && ts_ns - *start < 10_000_000_000)
        .max_by_key(|(_, start)| *start)
        .map(|(id, _)| id)
}

/// Observed lost NMIs: an instance serviced more sources than NMIs were
/// delivered for them (itself, plus its empty b2b follower if any).
fn lost_check(i: &Instance, follower: Option<&Instance>, out: &mut Findings) {
    if i.nested {
        return;
    }
    // NMI edges are counted per source: a handler that claimed work had at
    // least one edge raised for it. `handled` is not edges: one Intel PMI
    // services every overflowed counter at once (x86_pmu_handle_irq returns
    // their number), and AMD's perf handler also claims NMIs that arrive in
    // its window after a PMI (amd_pmu_adjust_nmi_window).
    let claimed: Vec<&str> = i
        .handlers
        .iter()
        .filter(|(_, _, h)| *h > 0)
        .map(|(n, _, _)| n.as_str())
        .collect();
    let sources = claimed.len() as i64;
    let delivered = 1 + follower.is_some() as i64;
    let lost = sources - delivered;
    if lost <= 0 {
        return;
    }
    let amd = i
        .handlers
        .iter()
        .any(|(n, _, _)| n.contains("ibs") || n.starts_with("amd_"));
    let mut f = Finding::new(
        Kind::LostNmi,
        Severity::Info,
        Confidence::Observed,
        Details::Lost(Box::new(LostDetails::Edges {
            nmi: i.facts(),
            lost,
            sources,
            delivered,
            counted: "sources: handlers with handled > 0, one NMI edge each",
            vendor: if amd { "amd" } else { "intel or unknown" },
            b2b_follower_ns: follower.map(|fo| fo.start),
        })),
    );
    about(&mut f, i);
    f.message = format!(
        "NMI on CPU {} serviced {} sources ({}) but only {} NMI{} delivered for them: {} NMI edge{} collapsed in the latch (at most one NMI can be pending while one is in service). Handlers poll, so the work was done, but a source that is not polled when a local handler claims the NMI (external NMIs behind nmi_reason_lock) would be missed. Counted: handlers that claimed work, one edge each ({})",
        i.cpu,
        sources,
        claimed.join(", "),
        delivered,
        if delivered == 1 { " was" } else { "s were" },
        lost,
        if lost == 1 { "" } else { "s" },
        if amd {
            "AMD: perf's handled count can include NMIs claimed in its post-PMI window, so it is not an edge count"
        } else {
            "Intel: one PMI services every overflowed counter, so perf's handled count is not an edge count"
        }
    );
    if let Some(fo) = follower {
        f.evidence.extend(fo.lines.iter().cloned());
    }
    out.push(f);
}

fn nested_finding(inner: &Instance, o: &crate::nmi::instance::Overlap, cx: &Cx<'_>) -> Finding {
    let fatal = cx.replay.model.nested_nmi_corrupts_stack;
    let mut f = Finding::new(
        Kind::NestedNmi,
        if fatal {
            Severity::Error
        } else {
            Severity::Warning
        },
        Confidence::Observed,
        Details::Nested(Box::new(NestedDetails {
            nmi: inner.facts(),
            outer_handler: o.outer_handler.clone(),
            outer_start_ns: o.outer_start,
            outer_end_ns: o.outer_end,
            after_fault_in_nmi: !o.faults_before.is_empty(),
            era: cx.replay.model.era().into(),
        })),
    );
    about(&mut f, inner);
    let after_fault = !o.faults_before.is_empty();
    f.evidence = o
        .faults_before
        .iter()
        .cloned()
        .chain(inner.lines.iter().cloned())
        .collect();
    f.message = if fatal {
        format!(
            "NMI nested inside another NMI on CPU {} ({} started at {} and was still running): on x86_64 before 3.3 the {}IRET re-enabled NMIs and the nested NMI reused the NMI stack — stack corruption, usually a triple fault or silent memory damage",
            inner.cpu,
            o.outer_handler,
            fmt_ts(o.outer_start),
            if after_fault { "fault's " } else { "" }
        )
    } else {
        format!(
            "overlapping NMIs on CPU {} ({} started at {} before the previous NMI ended): since 3.3 nested NMIs are deferred and repeated, so this should not appear — check the trace clock, or the kernel's NMI entry code",
            inner.cpu,
            o.outer_handler,
            fmt_ts(o.outer_start)
        )
    };
    f.evidence.push(o.line.clone());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests_support::cx_for;

    fn nmi(start: u64, handlers: &[(&str, i64)]) -> Instance {
        Instance {
            cpu: 0,
            start,
            end: start + 1_000,
            handled: handlers.iter().map(|h| h.1).sum(),
            handlers: handlers
                .iter()
                .map(|(n, h)| (n.to_string(), 1_000, *h))
                .collect(),
            pid: 7,
            comm: "t".into(),
            lines: vec![format!("nmi at {start}")],
            ..Default::default()
        }
    }

    fn kinds(out: &Findings) -> Vec<Kind> {
        out.iter().map(|(_, f)| f.kind).collect()
    }

    #[test]
    fn default_do_nmi_replayed() {
        let replay = nmitrace_replay::Replay::new(nmitrace_replay::KernelModel::choose(
            None,
            None,
            Some("6.1"),
            Some("x86_64"),
        ));
        let cfg = crate::Config::default();
        let cx = cx_for(&replay, &cfg);
        let mut l = Latch::default();
        let mut out = Findings::default();
        // Two sources claimed in one NMI: swallow_nmi set, one edge collapsed
        // unless an empty b2b follower comes.
        l.on_instance(
            &mut nmi(
                1_000_000,
                &[
                    ("perf_event_nmi_handler", 1),
                    ("nmi_cpu_backtrace_handler", 1),
                ],
            ),
            &cx,
            &mut out,
        );
        assert!(kinds(&out).is_empty());
        // Its empty follower 500 ns after it ended: b2b with swallow_nmi → swallowed; the follower counts, so no loss.
        l.on_instance(
            &mut nmi(1_001_500, &[("perf_event_nmi_handler", 0)]),
            &cx,
            &mut out,
        );
        assert_eq!(kinds(&out), vec![Kind::SwallowedNmi]);
        // An empty NMI long after: unknown.
        l.on_instance(
            &mut nmi(50_000_000, &[("perf_event_nmi_handler", 0)]),
            &cx,
            &mut out,
        );
        assert_eq!(kinds(&out), vec![Kind::SwallowedNmi, Kind::UnknownNmi]);
        let Details::Latch(d) = &out.iter().nth(1).unwrap().1.details else {
            panic!()
        };
        assert_eq!((d.b2b, d.swallow_nmi), (Some(false), Some(false)));
        // Two sources and no follower: one edge lost, settled at the end.
        l.on_instance(&mut nmi(90_000_000, &[("a", 1), ("b", 2)]), &cx, &mut out);
        l.end_cpu(0, &mut out);
        assert_eq!(kinds(&out).last(), Some(&Kind::LostNmi));
        assert_eq!((l.instances, l.b2b), (4, 1));
        assert_eq!(
            empty_nmi_before(&out, 0, 60_000_000)
                .and_then(|id| out.iter().find(|(i, _)| *i == id))
                .map(|(_, f)| f.kind),
            Some(Kind::UnknownNmi)
        );
    }
}
