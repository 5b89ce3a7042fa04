//! Faults inside NMIs: `nmi_vmalloc_fault` (a kernel-mode fault on a vmalloc
//! address) and `nmi_page_fault` (any other fault), judged by the kernel era.

use super::{Cx, Detector};
use crate::finding::{
    Confidence, Details, FaultDetails, Finding, Findings, Kind, Severity, VmallocEntry,
};
use crate::nmi::instance::{interrupted, Instance};
use nmitrace_replay::Replay;

/// Faults inside NMIs, one finding each, once the NMI is complete (the
/// switch-window verdict is on it by then).
#[derive(Default)]
pub struct FaultsInNmi;

impl Detector for FaultsInNmi {
    fn on_instance(&mut self, inst: &mut Instance, cx: &Cx<'_>, out: &mut Findings) {
        report(inst, cx.replay, out, inst.in_switch_window);
    }
}

fn is_user_address(replay: &Replay, a: u64) -> bool {
    if replay.model.arch.is_64() {
        a < 0x0000_8000_0000_0000
    } else {
        a < 0xc000_0000
    }
}

/// One finding per fault in the NMI.
fn report(inst: &Instance, replay: &Replay, out: &mut Findings, in_window: bool) {
    let m = &replay.model;
    for fl in &inst.faults {
        let fi = &fl.info;
        let addr = fi
            .address
            .map(|a| format!("{a:#x}"))
            .unwrap_or_else(|| "?".into());
        let handlers: Vec<&str> = inst.handlers.iter().map(|(n, _, _)| n.as_str()).collect();
        let in_handler = if handlers.is_empty() {
            String::new()
        } else {
            format!(" (handler {})", handlers.join(", "))
        };
        let mut d = FaultDetails::default();
        let (kind, severity, message);
        if let Some(e) = fi.entry {
            let (sev, why) = if !m.lazy_vmalloc_faults && m.vmalloc_fault_handled {
                (Severity::Warning, "this kernel syncs vmalloc mappings eagerly, but x86_32 kept vmalloc_fault (5.9, 5.8.y) for the race between a new mapping and its sync: rare, legal, and costly inside an NMI".to_string())
            } else if !m.lazy_vmalloc_faults {
                (Severity::Error, "this kernel syncs vmalloc mappings eagerly (5.8 removed vmalloc faulting), so a vmalloc fault means the address was not mapped at all: a use-after-vfree or a bad pointer reached from NMI context".to_string())
            } else if m.nested_nmi_corrupts_stack {
                (Severity::Error, "before 3.3 the fault's IRET re-enables NMIs while the NMI is still running: a nested NMI corrupts the NMI stack (seed 000: perf's vmalloc'd per-cpu buffers). Map the memory before NMIs can touch it (vmalloc_sync_all) or avoid vmalloc memory in NMI handlers".to_string())
            } else if fi.wrong_pgd {
                (Severity::Error, "vmalloc_fault resolved it through current->active_mm inside a switch window: the entry went into prev's directory while cr3 holds next's, so the fault repeats".to_string())
            } else {
                (Severity::Warning, "a lazy vmalloc sync in NMI context: legal on this kernel (nested NMIs are deferred since 3.3) but it costs an exception and an IRET inside the NMI; prefault or vmalloc_sync the memory NMI handlers use".to_string())
            };
            kind = Kind::NmiVmallocFault;
            severity = sev;
            let lacked = if fi.lacked {
                "the model says the loaded page directory lacked this entry".to_string()
            } else {
                "the model believed the entry present (state before the trace is unknown): the fault proves it was missing".to_string()
            };
            message = format!(
                "kernel-mode page fault on vmalloc address {addr} (top-level entry {}) inside an NMI on CPU {}{in_handler}; {lacked}: {why}",
                m.pgd.table_index(e),
                inst.cpu
            );
            d.vmalloc = Some(VmallocEntry {
                entry: e,
                table_index: m.pgd.table_index(e),
                entry_base: format!("{:#x}", m.pgd.entry_base(e)),
                lacked_by_model: fi.lacked,
                cr3_mm: fl.cr3_mm.clone(),
                synced_into: fl.synced_into.clone(),
                wrong_pgd: fi.wrong_pgd,
            });
        } else {
            let user = fi.address.is_some_and(|a| is_user_address(replay, a));
            // A protection or reserved-bit fault on a vmalloc address is no
            // lazy sync (vmalloc_fault is tried only without PF_PROT|PF_USER|PF_RSVD).
            let bad_vmalloc = fi.in_vmalloc && !user;
            // Before 3.3 any fault in NMI is fatal-prone (IRET re-enables NMIs).
            // Later, user-address faults from perf callchains are routine.
            severity = match (user, m.nested_nmi_corrupts_stack) {
                (_, true) => Severity::Error,
                _ if bad_vmalloc => Severity::Error,
                (true, false) => Severity::Info,
                (false, false) => Severity::Warning,
            };
            kind = Kind::NmiPageFault;
            let what = if user {
                "a user address (perf user callchain / copy_from_user_nmi)"
            } else if bad_vmalloc {
                "a vmalloc address with a protection or reserved-bit error (not a lazy sync: vmalloc_fault handles only not-present kernel faults; a write to read-only vmalloc memory or a corrupt page table)"
            } else {
                "a kernel address outside vmalloc"
            };
            let era = if m.nested_nmi_corrupts_stack {
                "before 3.3 the fault's IRET re-enables NMIs while the NMI is running: a nested NMI corrupts the NMI stack"
            } else {
                "legal since 3.3 (the fault is fixed up or fails; nested NMIs are deferred), but costly in NMI context"
            };
            message = format!(
                "page fault on {what} {addr} inside an NMI on CPU {}{in_handler}: {era}",
                inst.cpu
            );
            d.user_address = Some(user);
        }
        d.address = Some(addr);
        d.error_code = Some(format!("{:#x}", fi.error_code));
        d.nmi_context_from = Some(
            if fl.by_flag {
                "event flags"
            } else {
                "nmi_handler interval"
            }
            .into(),
        );
        d.in_switch_window = Some(in_window || fi.in_window);
        d.era = Some(m.era().into());
        if !inst.handlers.is_empty() {
            d.nmi_start_ns = Some(inst.start);
            d.handlers = Some(handlers.iter().map(|h| h.to_string()).collect());
        }
        d.interrupted = inst.dump.as_ref().map(interrupted);
        let mut f = Finding::new(
            kind,
            severity,
            Confidence::Observed,
            Details::Fault(Box::new(d)),
        );
        f.message = message;
        f.ts_ns = Some(fl.ts_ns);
        f.cpu = Some(inst.cpu);
        f.pid = Some(fl.pid);
        f.comm = Some(fl.comm.clone()).filter(|c| !c.is_empty());
        f.evidence.push(fl.line.clone());
        for l in &inst.lines {
            if *l != fl.line && f.evidence.len() < 8 {
                f.evidence.push(l.clone());
            }
        }
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests_support::cx_for;
    use crate::nmi::instance::NmiFault;
    use nmitrace_replay::FaultInfo;

    fn fault(address: u64, entry: Option<u16>) -> NmiFault {
        let info = FaultInfo {
            address: Some(address),
            error_code: 0,
            entry,
            cr3_mm: None,
            lacked: true,
            synced_into: None,
            wrong_pgd: false,
            in_window: false,
            in_vmalloc: entry.is_some(),
        };
        NmiFault {
            ts_ns: 5_000,
            pid: 1,
            comm: "perf".into(),
            info,
            line: "fault line".into(),
            by_flag: true,
            cr3_mm: None,
            synced_into: None,
        }
    }

    fn judge(kernel: &str, f: NmiFault, in_window: bool) -> Finding {
        let replay = Replay::new(nmitrace_replay::KernelModel::choose(
            None,
            None,
            Some(kernel),
            Some("x86_64"),
        ));
        let cfg = crate::Config::default();
        let cx = cx_for(&replay, &cfg);
        let mut inst = Instance {
            cpu: 2,
            start: 4_000,
            end: 6_000,
            handlers: vec![("perf_event_nmi_handler".into(), 2_000, 1)],
            faults: vec![f],
            in_switch_window: in_window,
            ..Default::default()
        };
        let mut out = Findings::default();
        FaultsInNmi.on_instance(&mut inst, &cx, &mut out);
        let v: Vec<Finding> = out.into_vec();
        assert_eq!(v.len(), 1);
        v.into_iter().next().unwrap()
    }

    #[test]
    fn the_era_decides_how_bad_a_fault_in_nmi_is() {
        // perf's user callchain reading a user page: routine since 3.3.
        let f = judge("6.1", fault(0x7f00_0000_1000, None), false);
        assert_eq!((f.kind, f.severity), (Kind::NmiPageFault, Severity::Info));
        // before 3.3, any fault in an NMI re-enables NMIs by its IRET.
        assert_eq!(
            judge("3.2", fault(0x7f00_0000_1000, None), false).severity,
            Severity::Error
        );
        // a lazy vmalloc sync on 4.19: legal, costly.
        let f = judge("4.19", fault(0xffff_c900_0000_1000, Some(0)), true);
        assert_eq!(
            (f.kind, f.severity),
            (Kind::NmiVmallocFault, Severity::Warning)
        );
        let Details::Fault(d) = &f.details else {
            panic!()
        };
        assert_eq!(
            (
                d.in_switch_window,
                d.nmi_start_ns,
                d.nmi_context_from.as_deref()
            ),
            (Some(true), Some(4_000), Some("event flags"))
        );
        // from 5.8 (x86_64) no vmalloc fault is a sync: the address was not mapped.
        assert_eq!(
            judge("6.1", fault(0xffff_c900_0000_1000, Some(0)), false).severity,
            Severity::Error
        );
    }
}
