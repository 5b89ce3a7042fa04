//! `cr3_current_mismatch`: NMIs that ran inside a context-switch window,
//! where cr3 already holds next's page directory but `current` is still prev.
//!
//! An NMI is placed by its own stamp, never by its interval (RULES.md, "The
//! switch window"): every event is stamped with `current`'s pid, and `current`
//! changes only in `__switch_to`, never inside an NMI. So an NMI stamped with
//! next's pid ran wholly after the switch; stamped with prev's pid after the
//! reason-0 `tlb_flush` (traced right after the cr3 write) it ran inside the
//! window; stamped with prev's pid between `sched_switch` and that flush it may
//! be before or after the cr3 write. When the NMI printed its own register dump
//! ([`crate::nmi::dump`]) the kernel's word decides.

use super::latch::about;
use super::{Cx, Detector, HandlerEvent};
use crate::finding::{
    Confidence, Details, Finding, FindingId, Findings, Kind, Severity, WindowBounds, WindowDetails,
};
use crate::nmi::dump::{cr3_write, Cr3Write, NmiDump};
use crate::nmi::instance::Instance;
use nmitrace_replay::{Cpu, Phase, Replay, SwitchWindow, WindowEnd};
use std::collections::BTreeMap;

/// How an NMI met a switch window.
#[derive(Clone, Debug)]
pub struct WindowHit {
    /// Stamped with prev's pid after the reason-0 flush (proof).
    pub observed: bool,
    /// The window was opened at sched_switch (no tlb_flush events in the trace).
    pub fallback: bool,
    /// Stamped with prev's pid between `sched_switch` and the reason-0 flush:
    /// the cr3 write may not have happened yet.
    pub before_flush: bool,
    pub prev_pid: i32,
    pub prev_comm: String,
    pub next_pid: i32,
    pub next_comm: String,
    pub start_ts: u64,
    pub end_ts: Option<u64>,
    pub prev_mm: Option<u32>,
    pub next_mm: Option<u32>,
    /// prev is a kernel thread (lazy TLB: `current->mm` is NULL).
    pub prev_kthread: bool,
    pub lines: Vec<String>,
    /// Next's first event, which closed the window (when it has closed).
    pub end_line: Option<String>,
    /// The switch (the CPU's switch counter).
    pub seq: u64,
    /// How the switch ended is known (see [`SwitchWindows::settle`]).
    pub settled: bool,
}

fn hit(w: &SwitchWindow, observed: bool, before_flush: bool, prev_kthread: bool) -> WindowHit {
    WindowHit {
        observed: observed && !w.fallback,
        fallback: w.fallback,
        before_flush,
        prev_pid: w.prev_pid,
        prev_comm: w.prev_comm.clone(),
        next_pid: w.next_pid,
        next_comm: w.next_comm.clone(),
        start_ts: w.start_ts,
        end_ts: w.end_ts,
        prev_mm: w.prev_mm,
        next_mm: w.next_mm,
        prev_kthread,
        lines: w.evidence(),
        end_line: None,
        seq: w.seq,
        settled: false,
    }
}

/// Did an NMI stamped `pid` on this CPU land in its switch window?
///
/// Only the stamp places it: `pid` = prev while the window is open (after
/// the reason-0 flush) is observed; `pid` = prev after `sched_switch` but
/// before that flush is possible (inferred) when next has a page directory of
/// its own to load. Any other stamp is no window.
pub fn check(cpu: &Cpu, pid: i32, replay: &Replay) -> Option<WindowHit> {
    let w = &cpu.window;
    if w.phase == Phase::Idle || pid != w.prev_pid || w.next_pid == w.prev_pid {
        return None;
    }
    let prev_kthread = replay.tasks.get(w.prev_pid).is_some_and(|t| t.mm.is_none());
    // prev a kernel thread: `current->mm` is NULL, so nothing in the NMI
    // reads a user mm through `current`; only vmalloc_fault's
    // `current->active_mm` (x86_64 before 4.8) sees the borrowed mm.
    if prev_kthread && !replay.model.vmalloc_fault_uses_active_mm {
        return None;
    }
    match w.phase {
        Phase::Open => {
            // A switch between threads of one mm writes cr3 with the same directory.
            if w.next_mm.is_some() && w.next_mm == w.prev_mm {
                return None;
            }
            Some(hit(w, true, false, prev_kthread))
        }
        Phase::Switched => {
            // cr3 is written only when next has an mm of its own (a kernel
            // thread borrows prev's: enter_lazy_tlb, no write).
            let next = replay.tasks.get(w.next_pid)?;
            let next_mm = next.mm?;
            if Some(next_mm) == w.prev_mm || !replay.tlb_flush_seen {
                return None;
            }
            let mut h = hit(w, false, true, prev_kthread);
            h.next_mm = Some(next_mm);
            Some(h)
        }
        Phase::Idle => None,
    }
}

/// Where the NMI's register dump places the CPU, relative to the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpPlace {
    /// Interrupted user mode: no switch was in progress.
    UserMode,
    /// Interrupted code outside the scheduler's switch path.
    OutsideSwitch,
    /// In the switch, before `switch_mm_irqs_off` wrote cr3.
    BeforeCr3Write,
    /// Between the cr3 write and `__switch_to`'s update of `current`.
    AfterCr3Write,
    /// Under the scheduler, but the dump does not say which side of the write.
    Undecided,
}

/// Code that runs between switch_mm's cr3 write and `current = next`:
/// `__switch_to_asm` and `__switch_to` (arch/x86/kernel/process_64.c, which
/// writes `current_task` last) and what `__switch_to` calls (FS/GS base
/// loads through `x86_fsgsbase_load`, FPU state, TLS). `lru_gen_use_mm` and
/// `switch_mm_cid` run in `context_switch` after `switch_mm_irqs_off`.
const AFTER_WRITE: &[&str] = &[
    "__switch_to_asm",
    "__switch_to",
    "__wrgsbase_inactive",
    "__rdgsbase_inactive",
    "x86_fsgsbase_load",
    "save_fsgs",
    "load_TLS",
    "native_load_tls",
    "switch_fpu_prepare",
    "switch_fpu",
    "save_fpregs_to_fpstate",
    "lru_gen_use_mm",
    "switch_mm_cid",
];

/// The tlb_flush tracepoint: `switch_mm_irqs_off` fires it right after the cr3
/// write (arch/x86/mm/tlb.c, `load_new_mm_cr3()` then `trace_tlb_flush(TLB_FLUSH_ON_TASK_SWITCH, …)`).
const TLB_FLUSH_TP: &[&str] = &[
    "trace_event_raw_event_tlb_flush",
    "perf_trace_tlb_flush",
    "__traceiter_tlb_flush",
    "trace_tlb_flush",
];

/// The sched_switch tracepoint, traced in `__schedule` before `context_switch()`.
const SCHED_SWITCH_TP: &[&str] = &[
    "trace_event_raw_event_sched_switch",
    "perf_trace_sched_switch",
    "__traceiter_sched_switch",
    "trace_sched_switch",
];

/// Code of the switch that runs before the cr3 write: `prepare_task_switch()`
/// and what it calls, `membarrier_switch_mm()`, and the first part of
/// `switch_mm_irqs_off()` (`cond_mitigation()`, `choose_new_asid()` are called
/// before `load_new_mm_cr3()`).
const BEFORE_WRITE: &[&str] = &[
    "prepare_task_switch",
    "perf_event_task_sched_out",
    "__perf_event_task_sched_out",
    "fire_sched_out_preempt_notifiers",
    "kmap_local_sched_out",
    "rseq_preempt",
    "membarrier_switch_mm",
    "cond_mitigation",
    "cond_ibpb",
    "choose_new_asid",
    "psi_task_switch",
    "psi_sched_switch",
];

/// `switch_mm_irqs_off` (4.8+), `switch_mm` (before), and the cr3 writer.
const SWITCH_MM: &[&str] = &[
    "switch_mm_irqs_off",
    "switch_mm",
    "load_new_mm_cr3",
    "__switch_mm",
];

/// The scheduler around the switch: where a dump says "in a switch" but not which side.
const SCHEDULER: &[&str] = &[
    "__schedule",
    "context_switch",
    "schedule",
    "schedule_idle",
    "preempt_schedule",
    "preempt_schedule_common",
    "preempt_schedule_irq",
    "do_task_dead",
];

/// Code reached from everywhere (locks, MSR and tracing helpers): says
/// nothing about where the CPU was; the caller decides.
fn is_helper(f: &str) -> bool {
    const PREFIXES: &[&str] = &[
        // locks, MSRs, paravirt
        "native_",
        "__raw_callee_save",
        "_raw_spin",
        "raw_spin",
        "queued_spin",
        "__pv_queued",
        "pv_",
        "lock_",
        "__lock",
        // return thunks and speculation mitigations
        "srso",
        "__x86_",
        "its_",
        "retbleed",
        "entry_untrain",
        "__pfx_",
        "__cfi_",
        "zen_untrain",
        // tracing and perf, reached from any tracepoint
        "trace_",
        "__trace",
        "tracing_",
        "rb_",
        "__rb_",
        "ring_buffer_",
        "perf_",
        "__perf",
        "bpf_",
        "__bpf",
        // clocks read by the tracer
        "local_clock",
        "sched_clock",
        "pvclock",
        "kvm_clock",
        "kvm_sched_clock",
        "ktime_",
        "read_tsc",
        // copies, printk
        "memcpy",
        "memset",
        "__memcpy",
        "__memset",
        "rep_",
        "__fentry__",
        "printk",
        "vprintk",
        "_printk",
    ];
    PREFIXES.iter().any(|p| f.starts_with(p))
}

/// Place the CPU from the dump alone (RIP, the reliable call-trace frames, the code bytes).
pub fn place(d: &NmiDump) -> DumpPlace {
    if d.user_mode {
        return DumpPlace::UserMode;
    }
    if d.rip_func.is_none() {
        return DumpPlace::Undecided;
    }
    let in_scheduler = d.in_any(SCHEDULER) || d.in_any(SWITCH_MM) || d.in_any(AFTER_WRITE);
    for (i, f) in d.stack().enumerate() {
        if AFTER_WRITE.contains(&f) {
            return DumpPlace::AfterCr3Write;
        }
        if TLB_FLUSH_TP.contains(&f) {
            // After the write when called from the switch; elsewhere
            // (flush_tlb_func, a shootdown) it is no switch at all.
            if d.in_any(SWITCH_MM) {
                return DumpPlace::AfterCr3Write;
            }
            return if d.frames.is_empty() {
                DumpPlace::Undecided
            } else {
                DumpPlace::OutsideSwitch
            };
        }
        if SCHED_SWITCH_TP.contains(&f) || BEFORE_WRITE.contains(&f) {
            return DumpPlace::BeforeCr3Write;
        }
        if SWITCH_MM.contains(&f) {
            // The RIP is in switch_mm itself: the instruction bytes tell
            // whether its `mov %reg,%cr3` has executed.
            if i == 0 {
                return match d.code.as_ref().map(cr3_write) {
                    Some(Cr3Write::Behind) => DumpPlace::AfterCr3Write,
                    Some(Cr3Write::Ahead) => DumpPlace::BeforeCr3Write,
                    _ => DumpPlace::Undecided,
                };
            }
            return DumpPlace::Undecided;
        }
        if SCHEDULER.contains(&f) {
            return DumpPlace::Undecided;
        }
        if is_helper(f) {
            continue;
        }
        if f == "finish_task_switch" || f == "schedule_tail" || f == "ret_from_fork" {
            // After switch_to: current is already next.
            return DumpPlace::OutsideSwitch;
        }
        // Any other function: outside the switch path when the call trace
        // shows no scheduler around it; under the scheduler an outer frame
        // (a tracepoint, switch_mm, __switch_to) says where it was called.
        // Without a call trace a function name alone cannot say (it may be
        // a helper the switch calls).
        if !in_scheduler {
            return if d.frames.is_empty() {
                DumpPlace::Undecided
            } else {
                DumpPlace::OutsideSwitch
            };
        }
    }
    // Only helpers: their caller is unknown.
    if in_scheduler || d.frames.is_empty() {
        DumpPlace::Undecided
    } else {
        DumpPlace::OutsideSwitch
    }
}

/// Code that gives a task a new mm outside the scheduler and sets
/// `tsk->active_mm = mm` before `switch_mm` writes cr3: `exec_mmap()` (fs/exec.c,
/// 4.4 and 6.12: `tsk->active_mm = mm; … activate_mm(active_mm, mm)`) and
/// `kthread_use_mm()` (5.8+; `use_mm()` before, mm/mmu_context.c).
const ADOPT_MM: &[&str] = &[
    "exec_mmap",
    "begin_new_exec",
    "flush_old_exec",
    "kthread_use_mm",
    "use_mm",
];

/// The dump shows an NMI in the reverse window of exec (or kthread_use_mm):
/// `current->active_mm` is already the new mm while cr3 still holds the old one.
/// The trace order cannot show it (nothing is traced between the assignment
/// and the cr3 write), so only the dump can.
pub fn adopt_mm_reverse_window(d: &NmiDump) -> Option<&'static str> {
    if d.user_mode || !d.in_any(SWITCH_MM) && !d.in_any(&["paravirt_enter_mmap"]) {
        return None;
    }
    let f = d.stack().find(|f| ADOPT_MM.contains(f))?;
    let before = d.in_any(&["paravirt_enter_mmap"]) || place(d) == DumpPlace::BeforeCr3Write;
    before.then(|| {
        ADOPT_MM
            .iter()
            .find(|a| **a == f)
            .copied()
            .unwrap_or("exec_mmap")
    })
}

fn reverse_finding(inst: &Instance, d: &NmiDump, via: &str, replay: &Replay) -> Finding {
    let severity = if inst.faults.iter().any(|f| f.info.entry.is_some())
        && replay.model.vmalloc_fault_uses_active_mm
    {
        Severity::Error
    } else {
        Severity::Warning
    };
    let why = format!(
        "NMI backtrace: {}: interrupted in switch_mm under {via}, before the cr3 write, after {via} set current->active_mm to the new mm",
        d.describe()
    );
    let mut f = Finding::new(
        Kind::Cr3CurrentMismatch,
        severity,
        Confidence::Observed,
        Details::Window(Box::new(WindowDetails {
            nmi: inst.facts(),
            prev_pid: inst.pid,
            prev_comm: None,
            next_pid: inst.pid,
            next_comm: None,
            bounds: None,
            window_from: format!("{via}: active_mm set before the cr3 write"),
            fault_in_nmi: None,
            reverse: Some(true),
            confirmed_by: Some(why.clone()),
        })),
    );
    about(&mut f, inst);
    f.message = format!(
        "NMI on CPU {} ran in the reverse window of {via}: current->active_mm was already the new mm while cr3 still held the old page directory ({why}); code in the NMI that resolves through current->active_mm (x86_64 vmalloc_fault up to 4.7) uses the wrong directory",
        inst.cpu
    );
    f.evidence = d
        .lines
        .iter()
        .cloned()
        .chain(inst.lines.iter().cloned())
        .collect();
    f
}

/// Each task's page directory, learned from dumps that interrupted it outside
/// any switch (then CR3 is current's own directory).
#[derive(Default)]
pub struct PgdBook {
    by_pid: BTreeMap<i32, u64>,
}

const BOOK_MAX: usize = 65_536;

impl PgdBook {
    /// Learn from a dump of a user task (a kernel thread's CR3 is a borrowed mm).
    pub fn learn(&mut self, d: &NmiDump, kthread: bool) {
        let (Some(pid), Some(pgd)) = (d.pid, d.pgd()) else {
            return;
        };
        if kthread || pid == 0 || place(d) != DumpPlace::OutsideSwitch {
            return;
        }
        if self.by_pid.len() < BOOK_MAX || self.by_pid.contains_key(&pid) {
            self.by_pid.insert(pid, pgd);
        }
    }

    pub fn get(&self, pid: i32) -> Option<u64> {
        self.by_pid.get(&pid).copied()
    }
}

/// The dump's verdict on a window the trace order suggests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The kernel's dump shows the NMI inside the window.
    Confirms(String),
    /// The kernel's dump shows it outside: not reported.
    Refutes(String),
    /// The dump cannot say; the finding stands on the trace order.
    Undecided(String),
}

/// Judge a window hit by the NMI's own dump.
pub fn judge(d: &NmiDump, h: &WindowHit, book: &PgdBook) -> Verdict {
    let at = d.describe();
    if let Some(pid) = d.pid {
        if pid != h.prev_pid {
            return Verdict::Refutes(format!(
                "the NMI's dump names PID {pid} as current, not prev {} ({at})",
                h.prev_pid
            ));
        }
    }
    if let Some(pgd) = d.pgd() {
        if book.get(h.next_pid) == Some(pgd) {
            return Verdict::Confirms(format!("NMI backtrace: {at}: CR3 is next {}[{}]'s page directory (learned from its other dumps) while current is prev", h.next_comm, h.next_pid));
        }
        if book.get(h.prev_pid) == Some(pgd) {
            return Verdict::Refutes(format!("NMI backtrace: {at}: CR3 is prev's own page directory (learned from its other dumps): cr3 was not yet written"));
        }
    }
    match place(d) {
        DumpPlace::UserMode => Verdict::Refutes(format!("NMI backtrace: {at}: the NMI interrupted user mode, so no switch was in progress")),
        DumpPlace::OutsideSwitch => Verdict::Refutes(format!("NMI backtrace: {at}: the interrupted code is outside the context-switch path")),
        DumpPlace::BeforeCr3Write => Verdict::Refutes(format!("NMI backtrace: {at}: interrupted in the switch before switch_mm wrote cr3")),
        DumpPlace::AfterCr3Write => Verdict::Confirms(format!("NMI backtrace: {at}: interrupted after switch_mm's cr3 write and before __switch_to set current = next")),
        DumpPlace::Undecided => Verdict::Undecided(format!("NMI backtrace: {at}: inside the scheduler, but the dump does not show which side of the cr3 write")),
    }
}

fn finding(inst: &Instance, w: &WindowHit, replay: &Replay, verdict: Option<&Verdict>) -> Finding {
    let faulted = !inst.faults.is_empty();
    let vmalloc_fault = inst.faults.iter().any(|f| f.info.entry.is_some());
    let wrong = inst.faults.iter().any(|f| f.info.wrong_pgd);
    // Worse when a fault in the NMI is resolved through current->active_mm
    // (x86_64 vmalloc_fault up to 4.7): it fills prev's directory, not cr3's.
    let severity = if wrong || (vmalloc_fault && replay.model.vmalloc_fault_uses_active_mm) {
        Severity::Error
    } else {
        Severity::Warning
    };
    let confirmed = matches!(verdict, Some(Verdict::Confirms(_)));
    let confidence = if w.observed || confirmed {
        Confidence::Observed
    } else {
        Confidence::Inferred
    };
    let how = if w.observed {
        format!(
            "the NMI is stamped with prev's pid {} after the reason-0 tlb_flush (cr3 write)",
            w.prev_pid
        )
    } else if w.fallback {
        "the trace has no tlb_flush events, so the window is taken from sched_switch (cr3 may not have been written yet)".to_string()
    } else {
        format!(
            "the NMI is stamped with prev's pid {} after sched_switch but before the reason-0 tlb_flush: switch_mm may or may not have written cr3 yet",
            w.prev_pid
        )
    };
    let how = match verdict {
        Some(Verdict::Confirms(_)) => format!("{how}; the NMI's own register dump confirms it"),
        Some(Verdict::Undecided(why)) => format!("{how}; {why}"),
        _ => how,
    };
    let mm = |m: Option<u32>| {
        m.map(|m| replay.mms.get(m).describe())
            .unwrap_or_else(|| "unknown mm".into())
    };
    let consequence = if wrong {
        "a vmalloc fault in it was resolved through current->active_mm (prev's directory) while cr3 held next's: the entry went into the wrong page directory and the fault repeats"
    } else if w.prev_kthread {
        "prev is a kernel thread, so current->mm is NULL, but vmalloc_fault on this kernel resolves through current->active_mm (the borrowed mm) while cr3 holds next's"
    } else if vmalloc_fault {
        "a vmalloc fault in it makes it worse: anything resolved through current sees the wrong page directory"
    } else if faulted {
        "a fault in it was resolved against prev's mm while cr3 held next's"
    } else {
        "code in the NMI that uses current->mm or active_mm (perf user callchains, old vmalloc_fault) sees prev's mm while cr3 holds next's"
    };
    let window_from = if w.fallback {
        "sched_switch"
    } else if w.before_flush {
        "sched_switch, before the reason-0 tlb_flush"
    } else {
        "tlb_flush reason 0"
    };
    let mut f = Finding::new(
        Kind::Cr3CurrentMismatch,
        severity,
        confidence,
        Details::Window(Box::new(WindowDetails {
            nmi: inst.facts(),
            prev_pid: w.prev_pid,
            prev_comm: Some(w.prev_comm.clone()),
            next_pid: w.next_pid,
            next_comm: Some(w.next_comm.clone()),
            bounds: Some(WindowBounds {
                current_mm: mm(w.prev_mm),
                cr3_mm: mm(w.next_mm),
                window_start_ns: w.start_ts,
                window_end_ns: w.end_ts,
            }),
            window_from: window_from.into(),
            fault_in_nmi: Some(faulted),
            reverse: None,
            confirmed_by: match verdict {
                Some(Verdict::Confirms(why)) => Some(why.clone()),
                _ => None,
            },
        })),
    );
    about(&mut f, inst);
    f.message = format!(
        "NMI on CPU {} ran in a context-switch window: cr3 {} {}[{}]'s page directory while current was still {}[{}] ({how}); {consequence}",
        inst.cpu,
        if w.observed || confirmed { "already held" } else { "may already have held" },
        w.next_comm,
        w.next_pid,
        w.prev_comm,
        w.prev_pid
    );
    // In trace order: the switch, its flush (after the NMI when the NMI came
    // before it), the NMI's dump and handler lines, next's first event.
    let split = if w.before_flush {
        w.lines.len().min(1)
    } else {
        w.lines.len()
    };
    let mut ev = w.lines[..split].to_vec();
    if let Some(d) = &inst.dump {
        ev.extend(d.lines.iter().cloned());
    }
    ev.extend(inst.lines.iter().cloned());
    ev.extend(w.lines[split..].iter().cloned());
    ev.extend(w.end_line.iter().cloned());
    f.evidence = ev;
    f
}

/// The switch-window detector: which NMIs met a switch (by their stamp),
/// how that switch ended, and what the NMI's own dump says.
#[derive(Default)]
pub struct SwitchWindows {
    /// Per CPU: the switch the open NMI met.
    hits: Vec<Option<WindowHit>>,
    /// CPUs whose open NMI met a switch whose end is not known yet.
    pending: usize,
    /// Page directories learned from dumps.
    pub book: PgdBook,
    /// Window candidates the NMI's own dump placed outside the window.
    pub refuted_by_dump: u64,
    /// Window candidates the trace itself refuted: the switch completed with
    /// no cr3 write, or prev went on running outside any switch.
    pub refuted_by_trace: u64,
    /// Findings the dump left undecided: (finding, dump pgd, prev pid, next
    /// pid), judged again at the end by what later dumps taught.
    undecided: Vec<(FindingId, u64, i32, i32)>,
}

impl SwitchWindows {
    /// Some open NMI waits to learn how its switch ended.
    #[inline]
    pub fn pending(&self) -> bool {
        self.pending > 0
    }

    fn hit_mut(&mut self, cpu: u32) -> &mut Option<WindowHit> {
        let c = cpu as usize;
        if c >= self.hits.len() {
            self.hits.resize_with(c + 1, || None);
        }
        &mut self.hits[c]
    }

    /// An event went by on `cpu`: if the open NMI met a switch, has that
    /// switch ended, and how? The kernel decides through the trace: next's
    /// first event closes it; a switch that completes without the reason-0
    /// flush wrote no cr3; prev emitting what no switch can emit means the
    /// switch did not go on as traced.
    pub fn settle(&mut self, cpu: u32, replay: &Replay) {
        let Some(rc) = replay.cpu(cpu) else { return };
        let Some(slot) = self.hits.get_mut(cpu as usize) else {
            return;
        };
        let Some(w) = slot.as_mut() else { return };
        if w.settled || (rc.window.phase != Phase::Idle && rc.window.seq == w.seq) {
            return;
        }
        w.settled = true;
        self.pending = self.pending.saturating_sub(1);
        let keep = match rc.last_end {
            Some((seq, end, ts)) if seq == w.seq => match end {
                WindowEnd::Closed { flushed } => {
                    if w.before_flush && !flushed && replay.tlb_flush_seen {
                        false
                    } else {
                        w.end_ts = Some(ts);
                        if rc.last_window.seq == w.seq {
                            w.end_line = rc.last_window.end_line.render();
                            // The reason-0 flush may have come after the NMI.
                            w.lines = rc.last_window.evidence();
                        }
                        true
                    }
                }
                WindowEnd::Contradicted => false,
                WindowEnd::Forgotten => true,
            },
            _ => true,
        };
        if !keep {
            *slot = None;
            self.refuted_by_trace += 1;
        }
    }
}

impl Detector for SwitchWindows {
    /// The switch window, placed by the NMI's own stamp.
    fn on_handler(
        &mut self,
        he: &HandlerEvent<'_, '_>,
        _inst: &Instance,
        cx: &Cx<'_>,
        _out: &mut Findings,
    ) {
        let Some(rc) = cx.replay.cpu(he.ev.cpu) else {
            return;
        };
        let Some(hit) = check(rc, he.ev.pid, cx.replay) else {
            return;
        };
        let slot = self.hit_mut(he.ev.cpu);
        let better = match slot {
            None => true,
            Some(w) => hit.observed && !w.observed,
        };
        if better {
            let was_pending = slot.as_ref().is_some_and(|w| !w.settled);
            *slot = Some(hit);
            if !was_pending {
                self.pending += 1;
            }
        }
    }

    fn on_instance(&mut self, inst: &mut Instance, cx: &Cx<'_>, out: &mut Findings) {
        if inst.handlerless {
            return;
        }
        let replay = cx.replay;
        self.settle(inst.cpu, replay);
        let mut window = self.hit_mut(inst.cpu).take();
        if window.as_ref().is_some_and(|w| !w.settled) {
            self.pending = self.pending.saturating_sub(1);
        }
        if let Some(d) = &inst.dump {
            let kthread = d
                .pid
                .and_then(|p| replay.tasks.get(p))
                .is_some_and(|t| t.mm.is_none());
            self.book.learn(d, kthread);
        }
        let verdict = match (&window, &inst.dump) {
            (Some(w), Some(d)) => Some(judge(d, w, &self.book)),
            _ => None,
        };
        if let Some(Verdict::Refutes(_)) = verdict {
            // The kernel's own dump places the NMI outside the window.
            self.refuted_by_dump += 1;
            window = None;
        }
        if window.is_none() {
            if let Some(d) = &inst.dump {
                if let Some(via) = adopt_mm_reverse_window(d) {
                    out.push(reverse_finding(inst, d, via, replay));
                }
            }
        }
        if let Some(w) = &window {
            let id = out.push(finding(inst, w, replay, verdict.as_ref()));
            if let (Some(id), Some(Verdict::Undecided(_)), Some(pgd)) =
                (id, &verdict, inst.dump.as_ref().and_then(|d| d.pgd()))
            {
                if self.undecided.len() < 10_000 {
                    self.undecided.push((id, pgd, w.prev_pid, w.next_pid));
                }
            }
        }
        inst.in_switch_window = window.is_some();
    }

    /// Windows the dump left undecided, judged by every page directory learned since.
    fn finish(&mut self, _cx: &Cx<'_>, out: &mut Findings) {
        for (id, pgd, prev, next) in std::mem::take(&mut self.undecided) {
            if self.book.get(next) == Some(pgd) {
                let Some(f) = out.get_mut(id) else { continue };
                let why = format!("NMI backtrace: CR3 {pgd:#x} is next [{next}]'s page directory (learned from its later dumps) while current is prev");
                f.confidence = Confidence::Observed;
                if let Details::Window(w) = &mut f.details {
                    w.confirmed_by = Some(why);
                }
            } else if self.book.get(prev) == Some(pgd) && out.remove(id).is_some() {
                self.refuted_by_dump += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(rip: &str, frames: &[&str], code: Option<&str>) -> NmiDump {
        let mut lines = vec![format!("RIP: {rip}")];
        if let Some(c) = code {
            lines.push(format!("Code: {c}"));
        }
        lines.push("Call Trace:".into());
        lines.push(" <TASK>".into());
        lines.extend(frames.iter().map(|f| format!(" {f}+0x10/0x20")));
        NmiDump::from_lines(&lines)
    }

    #[test]
    fn places_real_6_18_dumps() {
        // RIPs and call traces from the real captures of ../shared/traces/real-nmi.
        assert_eq!(
            place(&dump("0033:0x7fc56b2cb350", &[], None)),
            DumpPlace::UserMode
        );
        assert_eq!(
            place(&dump(
                "0010:anon_pipe_write+0x27e/0x6e0",
                &["vfs_write", "ksys_write"],
                None
            )),
            DumpPlace::OutsideSwitch
        );
        assert_eq!(
            place(&dump("0010:__wrgsbase_inactive+0x8/0x20", &[], None)),
            DumpPlace::AfterCr3Write
        );
        assert_eq!(
            place(&dump(
                "0010:__rb_reserve_next.constprop.0+0x13d/0x470",
                &[
                    "ring_buffer_lock_reserve",
                    "trace_event_buffer_reserve",
                    "trace_event_raw_event_tlb_flush",
                    "switch_mm_irqs_off",
                    "__schedule"
                ],
                None
            )),
            DumpPlace::AfterCr3Write
        );
        let code = "48 09 c7 48 0f ba ef 3f 0f 22 df <0f> 1f 00 eb 05";
        assert_eq!(
            place(&dump(
                "0010:switch_mm_irqs_off+0x23c/0x3d0",
                &["__schedule"],
                Some(code)
            )),
            DumpPlace::AfterCr3Write
        );
        assert_eq!(
            place(&dump(
                "0010:choose_new_asid+0xbb/0x130",
                &["switch_mm_irqs_off", "__schedule"],
                None
            )),
            DumpPlace::BeforeCr3Write
        );
        assert_eq!(
            place(&dump(
                "0010:ring_buffer_unlock_commit+0x28/0x150",
                &["trace_event_raw_event_sched_switch", "__schedule"],
                None
            )),
            DumpPlace::BeforeCr3Write
        );
        assert_eq!(
            place(&dump("0010:__schedule+0x397/0xf60", &["schedule"], None)),
            DumpPlace::Undecided
        );
        // A helper without frames says nothing, nor does a function without a call trace.
        assert_eq!(
            place(&dump("0010:native_write_msr+0xd/0x30", &[], None)),
            DumpPlace::Undecided
        );
        assert_eq!(
            place(&dump("0010:its_return_thunk+0x0/0x10", &[], None)),
            DumpPlace::Undecided
        );
        assert_eq!(
            place(&dump("0010:anon_pipe_write+0x27e/0x6e0", &[], None)),
            DumpPlace::Undecided
        );
        // perf's tracepoint handler under the sched_switch tracepoint: before the write.
        assert_eq!(
            place(&dump(
                "0010:perf_output_sample+0x43b/0x8d0",
                &[
                    "perf_tp_event",
                    "perf_trace_run_bpf_submit",
                    "perf_trace_sched_switch",
                    "__schedule"
                ],
                None
            )),
            DumpPlace::BeforeCr3Write
        );
        assert_eq!(
            place(&dump(
                "0010:pv_native_safe_halt+0xb/0x10",
                &["default_idle", "do_idle"],
                None
            )),
            DumpPlace::OutsideSwitch
        );
    }
}

#[cfg(test)]
mod detector_tests {
    use super::*;
    use crate::detect::tests_support::cx_for;
    use nmitrace_parser::model::Modelled;
    use nmitrace_replay::testkit::{ev, OwnedEvent};

    /// Replay `evs`, then give the detector the NMI `nmi` (its handler
    /// event, then the finished instance with `dump`).
    fn run(
        evs: &[OwnedEvent],
        nmi: OwnedEvent,
        dump: Option<NmiDump>,
    ) -> (Findings, SwitchWindows) {
        let mut replay = Replay::new(nmitrace_replay::KernelModel::choose(
            None,
            None,
            Some("6.1"),
            Some("x86_64"),
        ));
        for e in evs {
            e.with(|e| {
                replay.touch(e);
                let m = Modelled::from_event(e);
                replay.apply(e, &m);
            });
        }
        let cfg = crate::Config::default();
        let mut d = SwitchWindows::default();
        let mut out = Findings::default();
        nmi.with(|e| {
            let Modelled::NmiHandler(h) = Modelled::from_event(e) else {
                panic!()
            };
            let cx = cx_for(&replay, &cfg);
            let mut inst = Instance {
                cpu: e.cpu,
                start: e.ts_ns - h.delta_ns,
                end: e.ts_ns,
                pid: e.pid,
                handlers: vec![("h".into(), h.delta_ns, 1)],
                dump,
                ..Default::default()
            };
            d.on_handler(
                &HandlerEvent {
                    ev: e,
                    h: &h,
                    name: "h",
                    dump: None,
                },
                &inst,
                &cx,
                &mut out,
            );
            d.on_instance(&mut inst, &cx, &mut out);
            d.finish(&cx, &mut out);
            assert_eq!(inst.in_switch_window, out.iter().count() == 1);
        });
        (out, d)
    }

    const A: (&str, i32) = ("bash", 100);
    const B: (&str, i32) = ("cc1", 200);

    fn switch_then_flush() -> Vec<OwnedEvent> {
        vec![
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::other(1_500, 0, B),
            ev::switch(10_000, 0, A, B),
            ev::flush0(11_000, 0, A),
        ]
    }

    #[test]
    fn stamped_prev_after_the_flush_is_an_observed_window() {
        let (out, d) = run(
            &switch_then_flush(),
            ev::nmi(15_000, 0, A, "h", 2_000, 1),
            None,
        );
        let v: Vec<&Finding> = out.iter().map(|(_, f)| f).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].kind, v[0].confidence),
            (Kind::Cr3CurrentMismatch, Confidence::Observed)
        );
        assert_eq!(d.refuted_by_dump, 0);
    }

    #[test]
    fn stamped_next_is_no_window() {
        let (out, _) = run(
            &switch_then_flush(),
            ev::nmi(15_000, 0, B, "h", 2_000, 1),
            None,
        );
        assert_eq!(out.iter().count(), 0);
    }

    #[test]
    fn a_dump_in_user_mode_refutes_the_window() {
        let dump = NmiDump::from_lines(&["RIP: 0033:0x7fc56b2cb350".to_string()]);
        let (out, d) = run(
            &switch_then_flush(),
            ev::nmi(15_000, 0, A, "h", 2_000, 1),
            Some(dump),
        );
        assert_eq!(out.iter().count(), 0);
        assert_eq!(d.refuted_by_dump, 1);
    }
}
