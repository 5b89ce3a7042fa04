//! `cr3_current_mismatch`: NMIs that ran inside a context-switch window,
//! where cr3 already holds next's page directory but `current` is still prev.

use crate::nmi_latch::Instance;
use crate::report::Finding;
use nmitrace_replay::{Cpu, Replay, SwitchWindow};

/// How an NMI met a switch window.
#[derive(Clone, Debug)]
pub struct WindowHit {
    /// Stamped with prev's pid after the reason-0 flush (proof).
    pub observed: bool,
    /// The window was opened at sched_switch (no tlb_flush events in the trace).
    pub fallback: bool,
    pub prev_pid: i32,
    pub prev_comm: String,
    pub next_pid: i32,
    pub next_comm: String,
    pub start_ts: u64,
    pub end_ts: Option<u64>,
    pub prev_mm: Option<u32>,
    pub next_mm: Option<u32>,
    pub lines: Vec<String>,
    /// Next's first event, which closed the window (when it has closed).
    pub end_line: Option<String>,
}

fn hit(w: &SwitchWindow, observed: bool) -> WindowHit {
    WindowHit {
        observed: observed && !w.fallback,
        fallback: w.fallback,
        prev_pid: w.prev_pid,
        prev_comm: w.prev_comm.clone(),
        next_pid: w.next_pid,
        next_comm: w.next_comm.clone(),
        start_ts: w.start_ts,
        end_ts: w.end_ts,
        prev_mm: w.prev_mm,
        next_mm: w.next_mm,
        lines: w.evidence(),
        end_line: None,
    }
}

/// Did an NMI stamped `pid` over `[start, end]` land in a window on this CPU?
pub fn check(cpu: &Cpu, pid: i32, start: u64, end: u64, tol: u64) -> Option<WindowHit> {
    let w = &cpu.window;
    if w.is_open() && pid == w.prev_pid && end + tol >= w.start_ts {
        return Some(hit(w, true));
    }
    if w.is_open() && w.overlaps(start, end, tol) {
        return Some(hit(w, false));
    }
    let l = &cpu.last_window;
    if l.overlaps(start, end, tol) && l.end_ts.is_some_and(|e| start < e) {
        let mut h = hit(l, false);
        h.end_line = l.end_line.render();
        return Some(h);
    }
    None
}

pub fn finding(inst: &Instance, w: &WindowHit, replay: &Replay) -> Finding {
    let faulted = !inst.faults.is_empty();
    let vmalloc_fault = inst.faults.iter().any(|f| f.info.entry.is_some());
    let wrong = inst.faults.iter().any(|f| f.info.wrong_pgd);
    // Worse when a fault in the NMI is resolved through current->active_mm
    // (x86_64 vmalloc_fault before ~4.6): it fills prev's directory, not cr3's.
    let severity = if wrong || (vmalloc_fault && replay.model.vmalloc_fault_uses_active_mm) { "error" } else { "warning" };
    let confidence = if w.observed { "observed" } else { "inferred" };
    let mut f = inst.base_finding("cr3_current_mismatch", severity, confidence);
    let how = if w.observed {
        format!("the NMI is stamped with prev's pid {} after the reason-0 tlb_flush (cr3 write)", w.prev_pid)
    } else if w.fallback {
        "the trace has no tlb_flush events, so the window is taken from sched_switch (cr3 may not have been written yet)".to_string()
    } else {
        "the NMI's interval overlaps the window (its own stamp does not prove it)".to_string()
    };
    let mm = |m: Option<u32>| m.map(|m| replay.mms.get(m).describe()).unwrap_or_else(|| "unknown mm".into());
    let consequence = if wrong {
        "a vmalloc fault in it was resolved through current->active_mm (prev's directory) while cr3 held next's: the entry went into the wrong page directory and the fault repeats"
    } else if vmalloc_fault {
        "a vmalloc fault in it makes it worse: anything resolved through current sees the wrong page directory"
    } else if faulted {
        "a fault in it was resolved against prev's mm while cr3 held next's"
    } else {
        "code in the NMI that uses current->mm or active_mm (perf user callchains, old vmalloc_fault) sees prev's mm while cr3 holds next's"
    };
    f.message = format!(
        "NMI on CPU {} ran in a context-switch window: cr3 already held {}[{}]'s page directory while current was still {}[{}] ({how}); {consequence}",
        inst.cpu, w.next_comm, w.next_pid, w.prev_comm, w.prev_pid
    );
    f.details.insert("prev_pid".into(), w.prev_pid.into());
    f.details.insert("prev_comm".into(), w.prev_comm.clone().into());
    f.details.insert("next_pid".into(), w.next_pid.into());
    f.details.insert("next_comm".into(), w.next_comm.clone().into());
    f.details.insert("current_mm".into(), mm(w.prev_mm).into());
    f.details.insert("cr3_mm".into(), mm(w.next_mm).into());
    f.details.insert("window_start_ns".into(), w.start_ts.into());
    f.details.insert("window_end_ns".into(), w.end_ts.into());
    f.details.insert("window_from".into(), if w.fallback { "sched_switch" } else { "tlb_flush reason 0" }.into());
    f.details.insert("fault_in_nmi".into(), faulted.into());
    let mut ev = w.lines.clone();
    ev.extend(inst.lines.iter().cloned());
    ev.extend(w.end_line.iter().cloned());
    f.evidence = ev;
    f
}
