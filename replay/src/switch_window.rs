//! The context-switch window (SPEC §3.5): cr3 already holds next's page
//! directory while `current` is still prev.
//!
//! `__schedule` traces `sched_switch` (pid = prev), `switch_mm_irqs_off`
//! writes cr3 and traces `tlb_flush` reason 0 (pid = prev), `switch_to` sets
//! `current = next`, and the first event under next's pid follows. Without
//! `tlb_flush` events the window starts at `sched_switch` (lower confidence).

use crate::evidence::CapturedLine;
use crate::mm::MmId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No switch in progress.
    Idle,
    /// `sched_switch` seen, cr3 not (yet) written.
    Switched,
    /// cr3 holds next's directory, `current` is still prev.
    Open,
}

/// How a switch on a CPU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowEnd {
    /// Next's first event: `current` became next. `flushed`: the reason-0
    /// flush (the cr3 write) came before it.
    Closed { flushed: bool },
    /// prev went on emitting events no code inside the switch can emit
    /// (irqs are off from `sched_switch` to `switch_to`): the trace lost the
    /// rest of this switch, or the switch did not happen as traced.
    Contradicted,
    /// Lost events on the CPU: the end is unknown.
    Forgotten,
}

/// One switch on one CPU, from `sched_switch` to next's first event.
/// String buffers are reused from switch to switch (no allocation per switch).
#[derive(Clone, Debug)]
pub struct SwitchWindow {
    pub phase: Phase,
    /// The window opened at `sched_switch` because the trace has no `tlb_flush` events.
    pub fallback: bool,
    pub prev_pid: i32,
    pub next_pid: i32,
    pub prev_comm: String,
    pub next_comm: String,
    pub switch_ts: u64,
    /// When cr3 was written (the reason-0 flush, or the switch in fallback mode).
    pub start_ts: u64,
    /// The first event under next's pid (closed windows only).
    pub end_ts: Option<u64>,
    /// The mm cr3 held before (prev's active_mm) and after.
    pub prev_mm: Option<MmId>,
    pub next_mm: Option<MmId>,
    pub switch_line: CapturedLine,
    pub flush_line: CapturedLine,
    /// Next's first event, which closed the window.
    pub end_line: CapturedLine,
    /// NMI instances that landed in it.
    pub nmis: u32,
    /// Counts the switches on this CPU: identifies this one.
    pub seq: u64,
}

impl Default for SwitchWindow {
    fn default() -> Self {
        SwitchWindow {
            phase: Phase::Idle,
            fallback: false,
            prev_pid: -1,
            next_pid: -1,
            prev_comm: String::new(),
            next_comm: String::new(),
            switch_ts: 0,
            start_ts: 0,
            end_ts: None,
            prev_mm: None,
            next_mm: None,
            switch_line: CapturedLine::default(),
            flush_line: CapturedLine::default(),
            end_line: CapturedLine::default(),
            nmis: 0,
            seq: 0,
        }
    }
}

impl SwitchWindow {
    /// cr3 ≠ current right now.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Did the closed or open window cover any part of `[start, end]`?
    pub fn overlaps(&self, start: u64, end: u64, tolerance: u64) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        let w_end = self.end_ts.unwrap_or(u64::MAX);
        start <= w_end.saturating_add(tolerance)
            && end.saturating_add(tolerance) >= self.start_ts
            && start < w_end
    }

    /// Can this event, stamped with prev's pid, happen while the switch is
    /// pending? From `sched_switch` to `switch_to` irqs are off and `current`
    /// is prev: only NMI (and MCE/#DB) context and the switch's own reason-0
    /// `tlb_flush` can emit events there. `nmi_flag_traced`: the kernel's
    /// ftrace has the NMI flag (4.6+); before, NMI events print `h`.
    pub fn may_run_inside(ev: &nmitrace_parser::Event<'_>, nmi_flag_traced: bool) -> bool {
        let name = ev.name;
        if name == "tlb_flush" {
            return true;
        }
        if ev.ctx.known {
            return ev.ctx.nmi || (!nmi_flag_traced && ev.ctx.hardirq);
        }
        // No flags: the events an NMI handler can emit.
        matches!(
            name,
            "nmi_handler"
                | "console"
                | "page_fault_kernel"
                | "bprint"
                | "bputs"
                | "print"
                | "mce_record"
        )
    }

    pub fn evidence(&self) -> Vec<String> {
        [&self.switch_line, &self.flush_line]
            .iter()
            .filter_map(|l| l.render())
            .collect()
    }
}
