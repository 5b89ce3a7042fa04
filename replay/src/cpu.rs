//! Per-CPU state (SPEC §3.2): current task, loaded mm (cr3), the switch
//! window, the interrupt context stack where the format has no flags, and
//! idle time (for "was the CPU busy" questions).

use crate::mm::MmId;
use crate::switch_window::SwitchWindow;

#[derive(Clone, Debug, Default)]
pub struct Cpu {
    /// The pid the tracer last stamped on this CPU (`current`).
    pub current: i32,
    /// The mm whose page directory cr3 holds (None = not known yet).
    pub loaded_mm: Option<MmId>,
    /// `current->active_mm`: the current task's mm, or the mm a kernel thread
    /// borrowed (lazy TLB). `leave_mm` changes cr3 but not this.
    pub active_mm: Option<MmId>,
    /// The switch in progress (or the last one, when Idle).
    pub window: SwitchWindow,
    /// The previous switch window that was open, after it closed.
    pub last_window: SwitchWindow,
    /// How the last switch ended: its `seq`, the end, and when.
    pub last_end: Option<(u64, crate::switch_window::WindowEnd, u64)>,
    /// Hard/soft interrupt nesting rebuilt from irq entry/exit events.
    pub hardirq_depth: u8,
    pub softirq_depth: u8,
    /// Idle accounting: when the idle task (pid 0) was switched in.
    pub idle_since: Option<u64>,
    pub idle_ns: u64,
}

impl Cpu {
    /// Total idle time up to `now`.
    pub fn idle_until(&self, now: u64) -> u64 {
        self.idle_ns + self.idle_since.map_or(0, |s| now.saturating_sub(s))
    }

    /// The context stack as rebuilt from events (for formats without flags).
    pub fn rebuilt_context(&self) -> &'static str {
        if self.hardirq_depth > 0 {
            "hardirq"
        } else if self.softirq_depth > 0 {
            "softirq"
        } else {
            "task"
        }
    }
}
