//! Faults inside NMIs: `nmi_vmalloc_fault` (a kernel-mode fault on a vmalloc
//! address) and `nmi_page_fault` (any other fault), judged by the kernel era.

use crate::findings::Findings;
use crate::nmi_latch::{Candidate, Instance};
use crate::report::Finding;
use nmitrace_replay::{FaultInfo, Replay};

/// A fault attributed to an NMI.
#[derive(Clone, Debug)]
pub struct NmiFault {
    pub ts_ns: u64,
    pub pid: i32,
    pub comm: String,
    pub info: FaultInfo,
    pub line: String,
    pub by_flag: bool,
    pub cr3_mm: Option<String>,
    pub synced_into: Option<String>,
}

impl NmiFault {
    pub fn from_candidate(c: Candidate) -> NmiFault {
        NmiFault {
            ts_ns: c.ts_ns,
            pid: c.pid,
            comm: c.comm,
            info: c.info,
            line: c.line,
            by_flag: c.nmi_flag,
            cr3_mm: c.cr3_mm,
            synced_into: c.synced_into,
        }
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
pub fn report(inst: &Instance, replay: &Replay, out: &mut Findings, in_window: bool) {
    let m = &replay.model;
    for fl in &inst.faults {
        let fi = &fl.info;
        let addr = fi.address.map(|a| format!("{a:#x}")).unwrap_or_else(|| "?".into());
        let handlers: Vec<&str> = inst.handlers.iter().map(|(n, _, _)| n.as_str()).collect();
        let in_handler = if handlers.is_empty() { String::new() } else { format!(" (handler {})", handlers.join(", ")) };
        let mut f;
        if let Some(e) = fi.entry {
            let (severity, why) = if !m.lazy_vmalloc_faults && m.vmalloc_fault_handled {
                ("warning", "this kernel syncs vmalloc mappings eagerly, but x86_32 kept vmalloc_fault (5.9, 5.8.y) for the race between a new mapping and its sync: rare, legal, and costly inside an NMI".to_string())
            } else if !m.lazy_vmalloc_faults {
                ("error", "this kernel syncs vmalloc mappings eagerly (5.8 removed vmalloc faulting), so a vmalloc fault means the address was not mapped at all: a use-after-vfree or a bad pointer reached from NMI context".to_string())
            } else if m.nested_nmi_corrupts_stack {
                ("error", "before 3.3 the fault's IRET re-enables NMIs while the NMI is still running: a nested NMI corrupts the NMI stack (seed 000: perf's vmalloc'd per-cpu buffers). Map the memory before NMIs can touch it (vmalloc_sync_all) or avoid vmalloc memory in NMI handlers".to_string())
            } else if fi.wrong_pgd {
                ("error", "vmalloc_fault resolved it through current->active_mm inside a switch window: the entry went into prev's directory while cr3 holds next's, so the fault repeats".to_string())
            } else {
                ("warning", "a lazy vmalloc sync in NMI context: legal on this kernel (nested NMIs are deferred since 3.3) but it costs an exception and an IRET inside the NMI; prefault or vmalloc_sync the memory NMI handlers use".to_string())
            };
            f = Finding::new("nmi_vmalloc_fault", severity, "observed");
            let lacked = if fi.lacked {
                "the model says the loaded page directory lacked this entry".to_string()
            } else {
                "the model believed the entry present (state before the trace is unknown): the fault proves it was missing".to_string()
            };
            f.message = format!(
                "kernel-mode page fault on vmalloc address {addr} (top-level entry {}) inside an NMI on CPU {}{in_handler}; {lacked}: {why}",
                m.pgd.table_index(e),
                inst.cpu
            );
            f.details.insert("entry".into(), e.into());
            f.details.insert("table_index".into(), m.pgd.table_index(e).into());
            f.details.insert("entry_base".into(), format!("{:#x}", m.pgd.entry_base(e)).into());
            f.details.insert("lacked_by_model".into(), fi.lacked.into());
            f.details.insert("cr3_mm".into(), fl.cr3_mm.clone().into());
            f.details.insert("synced_into".into(), fl.synced_into.clone().into());
            f.details.insert("wrong_pgd".into(), fi.wrong_pgd.into());
        } else {
            let user = fi.address.is_some_and(|a| is_user_address(replay, a));
            // A protection or reserved-bit fault on a vmalloc address is no
            // lazy sync (vmalloc_fault is tried only without PF_PROT|PF_USER|PF_RSVD).
            let bad_vmalloc = fi.in_vmalloc && !user;
            // Before 3.3 any fault in NMI is fatal-prone (IRET re-enables NMIs).
            // Later, user-address faults from perf callchains are routine.
            let severity = match (user, m.nested_nmi_corrupts_stack) {
                (_, true) => "error",
                _ if bad_vmalloc => "error",
                (true, false) => "info",
                (false, false) => "warning",
            };
            f = Finding::new("nmi_page_fault", severity, "observed");
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
            f.message = format!("page fault on {what} {addr} inside an NMI on CPU {}{in_handler}: {era}", inst.cpu);
            f.details.insert("user_address".into(), user.into());
        }
        f.ts_ns = Some(fl.ts_ns);
        f.cpu = Some(inst.cpu);
        f.pid = Some(fl.pid);
        f.comm = Some(fl.comm.clone()).filter(|c| !c.is_empty());
        f.details.insert("address".into(), addr.into());
        f.details.insert("error_code".into(), format!("{:#x}", fi.error_code).into());
        f.details.insert("nmi_context_from".into(), if fl.by_flag { "event flags" } else { "nmi_handler interval" }.into());
        f.details.insert("in_switch_window".into(), (in_window || fi.in_window).into());
        f.details.insert("era".into(), m.era().into());
        if !inst.handlers.is_empty() {
            f.details.insert("nmi_start_ns".into(), inst.start.into());
            f.details.insert("handlers".into(), handlers.into());
        }
        if let Some(d) = &inst.dump {
            crate::nmi_latch::dump_details(&mut f, d);
        }
        f.evidence.push(fl.line.clone());
        for l in &inst.lines {
            if *l != fl.line && f.evidence.len() < 8 {
                f.evidence.push(l.clone());
            }
        }
        out.push(f);
    }
}
