//! `vmalloc_exposure` (inferred): an mm that lacks a vmalloc top-level entry
//! opened during the trace is loaded into cr3. The first touch of that memory
//! from it is a lazy vmalloc fault; if an NMI handler touches it first (perf
//! per-cpu buffers, seed 000), the fault happens in NMI context.

use crate::findings::Findings;
use crate::report::Finding;
use nmitrace_parser::Event;
use nmitrace_replay::{fmt_ts, EntrySet, MmId, Replay};

struct EntryExposure {
    entry: u16,
    finding: Option<usize>,
    loads: u64,
    mms: Vec<u64>,
    mms_overflow: bool,
}

#[derive(Default)]
pub struct Exposure {
    entries: Vec<EntryExposure>,
}

const MAX_MMS: usize = 4096;

impl Exposure {
    pub fn on_load(&mut self, ev: &Event<'_>, mm: MmId, lacking: EntrySet, replay: &Replay, out: &mut Findings) {
        let m = replay.mms.get(mm);
        for e in lacking.iter() {
            let Some(opened) = replay.vmalloc.opened.iter().find(|o| o.entry == e) else { continue };
            let pos = match self.entries.iter().position(|x| x.entry == e) {
                Some(p) => p,
                None => {
                    self.entries.push(EntryExposure { entry: e, finding: None, loads: 0, mms: Vec::new(), mms_overflow: false });
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
            let sev = if opened.percpu { "warning" } else { "info" };
            let mut f = Finding::new("vmalloc_exposure", sev, "inferred");
            f.ts_ns = Some(ev.ts_ns);
            f.cpu = Some(ev.cpu);
            let (pid, comm) = match ev.name {
                "sched_switch" | "tlb_flush" => {
                    let w = &replay.cpu(ev.cpu).unwrap().window;
                    (w.next_pid, w.next_comm.clone())
                }
                _ => (ev.pid, ev.comm.unwrap_or("").to_string()),
            };
            f.pid = Some(pid);
            f.comm = Some(comm.clone());
            let what = if opened.percpu {
                format!(
                    "a per-cpu chunk{} (NMI handlers such as perf touch per-cpu data)",
                    if opened.assumed { " (address hashed in the trace: assumed at the top of the vmalloc range)" } else { "" }
                )
            } else {
                "a vmalloc area".to_string()
            };
            f.message = format!(
                "{comm}[{pid}] runs on CPU {} with {}, which lacks vmalloc top-level entry {} ({:#x}) opened at {} by {} for {what}: its first touch from this mm is a lazy vmalloc fault, and if an NMI handler touches it first the fault happens in NMI context{}",
                ev.cpu,
                m.describe(),
                replay.model.pgd.table_index(e),
                opened.base,
                fmt_ts(opened.ts_ns),
                opened.how,
                if replay.model.nested_nmi_corrupts_stack { " (before 3.3: NMI stack corruption)" } else { "" }
            );
            f.details.insert("entry".into(), e.into());
            f.details.insert("table_index".into(), replay.model.pgd.table_index(e).into());
            f.details.insert("entry_base".into(), format!("{:#x}", opened.base).into());
            f.details.insert("opened_by".into(), opened.how.into());
            f.details.insert("opened_at_ns".into(), opened.ts_ns.into());
            f.details.insert("percpu".into(), opened.percpu.into());
            f.details.insert("mm".into(), m.describe().into());
            f.details.insert("assumption".into(), "entries opened during the trace are missing from every mm created before; mms that predate the trace are assumed to hold all older entries".into());
            f.evidence.push(opened.line.clone());
            if let Some(w) = replay.cpu(ev.cpu).map(|c| &c.window) {
                f.evidence.extend(w.evidence());
            }
            x.finding = out.push(f);
        }
    }

    /// Fill in how many loads and mms were exposed in all.
    pub fn finish(&self, out: &mut Findings) {
        for x in &self.entries {
            if let Some(i) = x.finding {
                let f = &mut out.list[i];
                f.details.insert("exposed_loads".into(), x.loads.into());
                f.details.insert("exposed_mms".into(), (x.mms.len() as u64).into());
                if x.mms_overflow {
                    f.details.insert("exposed_mms_at_least".into(), true.into());
                }
            }
        }
    }
}
