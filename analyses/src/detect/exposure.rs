//! `vmalloc_exposure` (inferred): an mm that lacks a vmalloc top-level entry
//! opened during the trace is loaded into cr3. The first touch of that memory
//! from it is a lazy vmalloc fault; if an NMI handler touches it first (perf
//! per-cpu buffers, seed 000), the fault happens in NMI context.

use super::{Cx, Detector};
use crate::finding::{
    Confidence, Details, ExposureDetails, Finding, FindingId, Findings, Kind, Severity,
};
use nmitrace_parser::Event;
use nmitrace_replay::{fmt_ts, EntrySet, MmId, Outcome, Replay};

struct EntryExposure {
    entry: u16,
    finding: Option<FindingId>,
    loads: u64,
    mms: Vec<u64>,
    mms_overflow: bool,
}

#[derive(Default)]
pub struct Exposure {
    entries: Vec<EntryExposure>,
    /// Inferences withdrawn because the trace records page faults.
    pub suppressed: u64,
}

const MAX_MMS: usize = 4096;

impl Exposure {
    /// cr3 was loaded (on `ev`'s CPU) with `mm`, which lacks `lacking`.
    fn on_load(
        &mut self,
        ev: &Event<'_>,
        mm: MmId,
        lacking: EntrySet,
        replay: &Replay,
        out: &mut Findings,
    ) {
        let (pid, comm) = match ev.kind {
            nmitrace_parser::EventKind::SchedSwitch | nmitrace_parser::EventKind::TlbFlush => {
                let w = &replay.cpu(ev.cpu).unwrap().window;
                (w.next_pid, w.next_comm.clone())
            }
            _ => (ev.pid, ev.comm.unwrap_or("").to_string()),
        };
        self.exposed(ev.ts_ns, ev.cpu, (pid, comm), mm, lacking, replay, out);
    }

    /// `mm`, in cr3 on `cpu` with `who` running, lacks `lacking`.
    #[allow(clippy::too_many_arguments)]
    fn exposed(
        &mut self,
        ts_ns: u64,
        cpu: u32,
        who: (i32, String),
        mm: MmId,
        lacking: EntrySet,
        replay: &Replay,
        out: &mut Findings,
    ) {
        let (pid, comm) = who;
        let m = replay.mms.get(mm);
        for e in lacking.iter() {
            let Some(opened) = replay.vmalloc.opened.iter().find(|o| o.entry == e) else {
                continue;
            };
            let pos = match self.entries.iter().position(|x| x.entry == e) {
                Some(p) => p,
                None => {
                    self.entries.push(EntryExposure {
                        entry: e,
                        finding: None,
                        loads: 0,
                        mms: Vec::new(),
                        mms_overflow: false,
                    });
                    self.entries.len() - 1
                }
            };
            let x = &mut self.entries[pos];
            x.loads += 1;
            if !x.mms.contains(&m.serial) {
                if x.mms.len() < MAX_MMS {
                    x.mms.push(m.serial);
                } else {
                    x.mms_overflow = true;
                }
            }
            if x.finding.is_some() {
                continue;
            }
            let sev = if opened.percpu {
                Severity::Warning
            } else {
                Severity::Info
            };
            let mut f = Finding::new(
                Kind::VmallocExposure,
                sev,
                Confidence::Inferred,
                Details::Exposure(Box::new(ExposureDetails {
                    entry: e,
                    table_index: replay.model.pgd.table_index(e),
                    entry_base: format!("{:#x}", opened.base),
                    opened_by: opened.how,
                    opened_at_ns: opened.ts_ns,
                    percpu: opened.percpu,
                    mm: m.describe(),
                    assumption: "entries opened during the trace are missing from every mm created before; mms that predate the trace are assumed to hold all older entries",
                    exposed_loads: None,
                    exposed_mms: None,
                    exposed_mms_at_least: None,
                })),
            );
            f.ts_ns = Some(ts_ns);
            f.cpu = Some(cpu);
            f.pid = Some(pid);
            f.comm = Some(comm.clone());
            let what = if opened.percpu {
                format!(
                    "a per-cpu chunk{} (NMI handlers such as perf touch per-cpu data)",
                    if opened.assumed {
                        " (address hashed in the trace: assumed at the top of the vmalloc range)"
                    } else {
                        ""
                    }
                )
            } else {
                "a vmalloc area".to_string()
            };
            f.message = format!(
                "{comm}[{pid}] runs on CPU {} with {}, which lacks vmalloc top-level entry {} ({:#x}) opened at {} by {} for {what}: its first touch from this mm is a lazy vmalloc fault, and if an NMI handler touches it first the fault happens in NMI context{}",
                cpu,
                m.describe(),
                replay.model.pgd.table_index(e),
                opened.base,
                fmt_ts(opened.ts_ns),
                opened.how,
                if replay.model.nested_nmi_corrupts_stack { " (before 3.3: NMI stack corruption)" } else { "" }
            );
            f.evidence.push(opened.line.clone());
            if let Some(w) = replay.cpu(cpu).map(|c| &c.window) {
                f.evidence.extend(w.evidence());
            }
            x.finding = out.push(f);
        }
    }
}

impl Detector for Exposure {
    fn on_outcome(&mut self, ev: &Event<'_>, outcome: &Outcome, cx: &Cx<'_>, out: &mut Findings) {
        match outcome {
            Outcome::ExposedLoad { mm, lacking } => self.on_load(ev, *mm, *lacking, cx.replay, out),
            Outcome::EntryOpened(i) => {
                // An mm already in cr3 when the entry opened lacks it with no
                // cr3 load to come: a kernel thread on a borrowed mm, or a
                // task that maps and touches the memory on the same CPU (32
                // of the 114 lazy faults of replay/tests/real_kernel.rs).
                // (An area spanning several entries opens them all at once.)
                let r = cx.replay;
                let opened: Vec<u16> = r
                    .vmalloc
                    .opened
                    .get(*i..)
                    .unwrap_or_default()
                    .iter()
                    .map(|o| o.entry)
                    .collect();
                let exposed: Vec<(u16, u32, MmId)> = opened
                    .iter()
                    .flat_map(|&e| r.loaded_lacking(e).map(move |(c, m)| (e, c, m)))
                    .collect();
                for (e, cpu, mm) in exposed {
                    let Some(c) = r.cpu(cpu) else { continue };
                    // The task's name, as its CPU's last switch printed it.
                    let comm = [&c.window, &c.last_window]
                        .iter()
                        .find_map(|w| match c.current {
                            p if p == w.next_pid => Some(w.next_comm.clone()),
                            p if p == w.prev_pid => Some(w.prev_comm.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    let mut one = EntrySet::default();
                    one.insert(e);
                    self.exposed(ev.ts_ns, cpu, (c.current, comm), mm, one, r, out);
                }
            }
            _ => {}
        }
    }

    /// Exposure is an inference for traces that cannot show the faults: with
    /// page-fault tracepoints recorded, faults are observed instead. Otherwise
    /// fill in how many loads and mms were exposed in all.
    fn finish(&mut self, cx: &Cx<'_>, out: &mut Findings) {
        if cx.faults_traced {
            self.suppressed = out.remove_kind(Kind::VmallocExposure);
            return;
        }
        for x in &self.entries {
            let Some(f) = x.finding.and_then(|id| out.get_mut(id)) else {
                continue;
            };
            if let Details::Exposure(d) = &mut f.details {
                d.exposed_loads = Some(x.loads);
                d.exposed_mms = Some(x.mms.len() as u64);
                if x.mms_overflow {
                    d.exposed_mms_at_least = Some(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests_support::cx_for;
    use nmitrace_parser::model::Modelled;
    use nmitrace_replay::testkit::ev;

    #[test]
    fn an_mm_loaded_without_an_entry_opened_during_the_trace_is_exposed() {
        let mut replay = Replay::new(nmitrace_replay::KernelModel::choose(
            None,
            None,
            Some("4.19"),
            Some("x86_64"),
        ));
        let cfg = crate::Config::default();
        let mut d = Exposure::default();
        let mut out = Findings::default();
        let a = ("bash", 100);
        let b = ("cc1", 200);
        // Both tasks predate the trace; a vmalloc area opens a new top-level
        // entry (1 GiB into the range); then b's mm is loaded into cr3.
        let evs = [
            ev::other(1_000, 0, a),
            ev::other(1_500, 1, b),
            ev::vmap(2_000, 0, a, 0xffff_c900_0000_0000, 4096),
            ev::vmap(3_000, 0, a, 0xffff_ca00_0000_0000, 4096),
            ev::switch(10_000, 0, a, b),
            ev::flush0(11_000, 0, a),
            ev::other(12_000, 0, b),
        ];
        for e in &evs {
            e.with(|e| {
                replay.touch(e);
                let o = replay.apply(e, &Modelled::from_event(e));
                d.on_outcome(e, &o, &cx_for(&replay, &cfg), &mut out);
            });
        }
        let mut cx = cx_for(&replay, &cfg);
        d.finish(&cx, &mut out);
        let v: Vec<&Finding> = out.iter().map(|(_, f)| f).collect();
        assert!(!v.is_empty(), "no exposure");
        assert!(v
            .iter()
            .all(|f| f.kind == Kind::VmallocExposure && f.confidence == Confidence::Inferred));
        let Details::Exposure(x) = &v[0].details else {
            panic!()
        };
        assert!(x.exposed_mms.is_some_and(|n| n >= 1), "{x:?}");
        let n = v.len() as u64;
        // With page faults traced the inference gives way.
        cx.faults_traced = true;
        d.finish(&cx, &mut out);
        assert_eq!(out.iter().count(), 0);
        assert_eq!(d.suppressed, n);
    }
}
