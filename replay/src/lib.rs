//! nmitrace-replay: events → per-CPU and per-mm kernel state over time.
//!
//! A streaming state machine: it holds state (tasks, mms, CPUs), never events.
//! [`Replay::touch`] runs for every event (a per-CPU check: does this event
//! close a switch window?); [`Replay::apply`] runs for the modelled events
//! and says what happened that the analyses care about ([`Outcome`]).

pub mod cpu;
pub mod evidence;
pub mod kernel_model;
pub mod mm;
pub mod pgd_model;
pub mod probes;
pub mod switch_window;
pub mod task;
pub mod vmalloc_space;

pub use cpu::Cpu;
pub use evidence::{event_line, fmt_ts, name_eq, CapturedLine};
pub use kernel_model::{Arch, KernelModel, ModelSource};
pub use mm::{MmBirth, MmId, MmTable, INIT_MM};
pub use pgd_model::{EntrySet, PgdKind, PgdModel};
pub use probes::VmallocProbe;
pub use switch_window::{Phase, SwitchWindow, WindowEnd};
pub use task::TaskTable;
pub use vmalloc_space::{OpenedEntry, VmallocSpace};

use nmitrace_parser::model::{IrqKind, Modelled, PageFault};
use nmitrace_parser::Event;

/// CPUs beyond this index are ignored by the replay (a corrupt cpu number
/// must not size an allocation).
pub const MAX_CPUS: usize = 8192;

/// A kernel-mode page fault, as the replay sees it.
#[derive(Clone, Copy, Debug)]
pub struct FaultInfo {
    pub address: Option<u64>,
    pub error_code: u64,
    /// The top-level entry, when the address is in the vmalloc range.
    pub entry: Option<u16>,
    /// The mm cr3 held.
    pub cr3_mm: Option<MmId>,
    /// By the model, cr3's directory lacked the entry (a lazy sync).
    pub lacked: bool,
    /// The mm the sync went into (cr3's, or `current->active_mm` on old x86_64).
    pub synced_into: Option<MmId>,
    /// The sync went into a different directory than cr3's: the fault repeats.
    pub wrong_pgd: bool,
    /// A switch window was open on the CPU (cr3 ≠ current).
    pub in_window: bool,
    /// The address is in the vmalloc range (whether or not the fault can be a sync).
    pub in_vmalloc: bool,
}

impl FaultInfo {
    pub fn vmalloc(&self) -> bool {
        self.entry.is_some()
    }
}

/// What an applied event changed that the analyses care about.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Nothing,
    /// A kernel-mode page fault.
    KernelFault(FaultInfo),
    /// A new vmalloc top-level entry appeared (index into `vmalloc.opened`).
    EntryOpened(usize),
    /// cr3 was loaded with an mm that lacks entries opened during the trace.
    ExposedLoad {
        mm: MmId,
        lacking: EntrySet,
    },
    /// A switch window opened (reason-0 flush after sched_switch, or the fallback).
    WindowOpened,
    /// A reason-0 flush that is not a switch (exec's activate_mm, use_mm).
    NonSwitchFlush,
}

/// Counters describing what the replay did (printed with the model).
#[derive(Clone, Debug, Default)]
pub struct ReplayStats {
    pub switches: u64,
    pub windows: u64,
    pub fallback_windows: u64,
    pub exec_flushes: u64,
    pub lazy_syncs: u64,
    /// Eager syncs of every pgd (`vmalloc_sync_mappings/unmappings` probes).
    pub eager_syncs: u64,
    pub forks: u64,
    pub execs: u64,
    /// Switches whose prev went on emitting events no switch can emit: the
    /// trace lost the rest of the switch.
    pub windows_contradicted: u64,
}

pub struct Replay {
    pub model: KernelModel,
    pub mms: MmTable,
    pub tasks: TaskTable,
    pub vmalloc: VmallocSpace,
    cpus: Vec<Cpu>,
    /// The trace has `tlb_flush` events (so cr3 writes are visible).
    pub tlb_flush_seen: bool,
    pub stats: ReplayStats,
    /// `task_newtask` clone flags waiting for their `sched_process_fork`.
    pending_clone: Vec<(i32, u64)>,
}

impl Replay {
    pub fn new(model: KernelModel) -> Replay {
        Replay {
            model,
            mms: MmTable::new(),
            tasks: TaskTable::default(),
            vmalloc: VmallocSpace::default(),
            cpus: Vec::new(),
            tlb_flush_seen: false,
            stats: ReplayStats::default(),
            pending_clone: Vec::new(),
        }
    }

    pub fn cpu(&self, cpu: u32) -> Option<&Cpu> {
        self.cpus.get(cpu as usize)
    }

    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    #[inline]
    fn cpu_slot(&mut self, cpu: u32) -> Option<&mut Cpu> {
        let c = cpu as usize;
        if c >= MAX_CPUS {
            return None;
        }
        if c >= self.cpus.len() {
            self.cpus.resize_with(c + 1, Cpu::default);
        }
        Some(&mut self.cpus[c])
    }

    /// Per-event bookkeeping, for every event: `current`, and closing the
    /// switch window at next's first event. A few ns; no hashing.
    #[inline]
    pub fn touch(&mut self, ev: &Event<'_>) {
        let nmi_flag = self.model.ftrace_nmi_flag;
        let Some(mut c) = self.cpu_slot(ev.cpu) else {
            return;
        };
        if c.window.phase != Phase::Idle {
            if ev.pid == c.window.next_pid {
                let flushed = c.window.phase == Phase::Open;
                close_window(c, ev, WindowEnd::Closed { flushed });
            } else if ev.pid == c.window.prev_pid && !SwitchWindow::may_run_inside(ev, nmi_flag) {
                close_window(c, ev, WindowEnd::Contradicted);
                self.stats.windows_contradicted += 1;
                c = &mut self.cpus[ev.cpu as usize];
            }
        }
        c.current = ev.pid;
    }

    /// The trace lost events on `cpu`: an open switch window cannot be
    /// trusted across the gap (next's first event may be among the lost).
    pub fn forget_cpu(&mut self, cpu: u32) {
        if let Some(c) = self.cpus.get_mut(cpu as usize) {
            if c.window.phase != Phase::Idle {
                c.last_end = Some((c.window.seq, WindowEnd::Forgotten, c.window.switch_ts));
            }
            c.window.phase = Phase::Idle;
            c.last_window.phase = Phase::Idle;
        }
    }

    /// A `tlb_flush` is worth decoding: a switch is pending on its CPU (a
    /// reason-0 flush opens the window) or the idle task runs (leave_mm).
    /// Otherwise only the fact that the trace has tlb_flush events is kept.
    #[inline]
    pub fn flush_matters(&mut self, ev: &Event<'_>) -> bool {
        self.tlb_flush_seen = true;
        ev.pid == 0
            || self
                .cpus
                .get(ev.cpu as usize)
                .is_some_and(|c| c.window.phase != Phase::Idle)
    }

    /// Apply a modelled event (call [`Replay::touch`] first).
    pub fn apply(&mut self, ev: &Event<'_>, m: &Modelled<'_>) -> Outcome {
        match *m {
            Modelled::PageFault(ref pf) => self.fault(ev, pf),
            Modelled::SchedSwitch(ref s) => self.switch(ev, s),
            Modelled::TlbFlush { reason: 0, .. } => self.flush(ev),
            Modelled::TlbFlush { .. } => {
                self.tlb_flush_seen = true;
                Outcome::Nothing
            }
            Modelled::NewTask {
                pid, clone_flags, ..
            } => {
                if self.pending_clone.len() >= 64 {
                    self.pending_clone.remove(0);
                }
                self.pending_clone.push((pid, clone_flags));
                Outcome::Nothing
            }
            Modelled::Fork {
                parent_pid,
                child_pid,
                child_comm,
                ..
            } => {
                self.stats.forks += 1;
                let flags = self
                    .pending_clone
                    .iter()
                    .position(|(p, _)| *p == child_pid)
                    .map(|i| self.pending_clone.swap_remove(i).1);
                // Without task_newtask the flags are unknown: a new mm (fork) is assumed.
                let clone_vm = flags.is_some_and(|f| f & 0x100 != 0);
                self.tasks.spawn(
                    ev.ts_ns,
                    parent_pid,
                    child_pid,
                    child_comm,
                    clone_vm,
                    &mut self.mms,
                );
                Outcome::Nothing
            }
            Modelled::Exec { pid, .. } => {
                self.stats.execs += 1;
                let (new, _old) = self.tasks.exec(ev.ts_ns, pid, &mut self.mms);
                // exec_mmap → activate_mm already wrote cr3 (the reason-0 flush
                // just before); the CPU now runs the new mm.
                self.load(ev.cpu, Some(new));
                if let Some(c) = self.cpu_slot(ev.cpu) {
                    c.active_mm = Some(new);
                }
                self.exposure(new)
            }
            Modelled::Free { pid, .. } => {
                self.tasks.free(pid, &mut self.mms);
                Outcome::Nothing
            }
            Modelled::AllocVmapArea {
                addr,
                size,
                vstart,
                vend,
                failed: false,
                ..
            } => {
                match self
                    .vmalloc
                    .alloc(&mut self.model.pgd, addr, size, vstart, vend, false)
                {
                    Some((set, percpu)) => {
                        self.open_entries(ev, set, "alloc_vmap_area", Some(addr), percpu)
                    }
                    None => Outcome::Nothing,
                }
            }
            Modelled::PercpuCreateChunk { base_addr } => {
                match self.vmalloc.percpu_chunk(&self.model.pgd, base_addr) {
                    Some((e, assumed)) => {
                        self.open_entry(ev, e, "percpu_create_chunk", base_addr, true, assumed)
                    }
                    None => Outcome::Nothing,
                }
            }
            Modelled::IrqEntry { kind } => {
                if let Some(c) = self.cpu_slot(ev.cpu) {
                    match kind {
                        IrqKind::Hard => c.hardirq_depth = c.hardirq_depth.saturating_add(1),
                        IrqKind::Soft => c.softirq_depth = c.softirq_depth.saturating_add(1),
                    }
                }
                Outcome::Nothing
            }
            Modelled::IrqExit { kind } => {
                if let Some(c) = self.cpu_slot(ev.cpu) {
                    match kind {
                        IrqKind::Hard => c.hardirq_depth = c.hardirq_depth.saturating_sub(1),
                        IrqKind::Soft => c.softirq_depth = c.softirq_depth.saturating_sub(1),
                    }
                }
                Outcome::Nothing
            }
            Modelled::Other => match VmallocProbe::from_event(ev) {
                Some(p) => self.apply_probe(ev, &p),
                None => Outcome::Nothing,
            },
            _ => Outcome::Nothing,
        }
    }

    /// A vmalloc kprobe event ([`VmallocProbe`]; [`Replay::apply`] calls
    /// this for them).
    pub fn apply_probe(&mut self, ev: &Event<'_>, p: &VmallocProbe) -> Outcome {
        match *p {
            VmallocProbe::Area { start, end } => {
                match self.vmalloc.area(&self.model.pgd, start, end, false) {
                    Some((set, _)) => {
                        self.open_entries(ev, set, "alloc_vmap_area", Some(start), false)
                    }
                    None => Outcome::Nothing,
                }
            }
            VmallocProbe::PercpuArea { start, end } => {
                match self.vmalloc.area(&self.model.pgd, start, end, true) {
                    Some((set, _)) => {
                        self.open_entries(ev, set, "pcpu_get_vm_areas", Some(start), true)
                    }
                    None => Outcome::Nothing,
                }
            }
            VmallocProbe::SyncMappings | VmallocProbe::SyncUnmappings => {
                // vmalloc_sync() copies every vmalloc PMD/PGD entry init_mm
                // has into every pgd on pgd_list (x86_32 without a shared
                // kernel PMD: 5.4.59 arch/x86/mm/fault.c:192-227, called for
                // both; __purge_vmap_area_lazy calls vmalloc_sync_unmappings,
                // mm/vmalloc.c:1263). x86_64 5.4: vmalloc_sync_mappings is
                // sync_global_pgds() over the vmalloc range (fault.c:331),
                // vmalloc_sync_unmappings does nothing (fault.c:340).
                let syncs = match self.model.arch {
                    Arch::X86_32 => true,
                    Arch::X86_64 | Arch::X86_64La57 => matches!(p, VmallocProbe::SyncMappings),
                    Arch::X86_32Pae => false,
                };
                if syncs && self.model.lazy_vmalloc_faults {
                    self.mms.sync_all();
                    self.stats.eager_syncs += 1;
                }
                Outcome::Nothing
            }
        }
    }

    /// CPUs whose cr3 holds an mm lacking entry `e` now: right after an
    /// [`Outcome::EntryOpened`], the mms exposed without any cr3 load (a
    /// kernel thread on a borrowed mm touching the memory it just mapped:
    /// 32 of the 114 lazy faults of the 5.4 i386 trace in
    /// `tests/real_kernel.rs`).
    pub fn loaded_lacking(&self, e: u16) -> impl Iterator<Item = (u32, MmId)> + '_ {
        self.cpus.iter().enumerate().filter_map(move |(cpu, c)| {
            let m = c.loaded_mm.filter(|&m| m != INIT_MM)?;
            (!self.mms.get(m).has.contains(e)).then_some((cpu as u32, m))
        })
    }

    /// Open every entry of `set` (see [`Replay::open_entry`]); the outcome
    /// names the first one opened.
    fn open_entries(
        &mut self,
        ev: &Event<'_>,
        set: EntrySet,
        how: &'static str,
        addr: Option<u64>,
        percpu: bool,
    ) -> Outcome {
        let mut first = Outcome::Nothing;
        for e in set.iter() {
            let o = self.open_entry(ev, e, how, addr, percpu, false);
            if matches!(first, Outcome::Nothing) {
                first = o;
            }
        }
        first
    }

    fn open_entry(
        &mut self,
        ev: &Event<'_>,
        e: u16,
        how: &'static str,
        addr: Option<u64>,
        percpu: bool,
        assumed: bool,
    ) -> Outcome {
        if self.vmalloc.opened_set.contains(e) {
            return Outcome::Nothing;
        }
        self.vmalloc.opened_set.insert(e);
        self.mms.open_entry(e);
        self.vmalloc.opened.push(OpenedEntry {
            entry: e,
            base: self.model.pgd.entry_base(e),
            ts_ns: ev.ts_ns,
            cpu: ev.cpu,
            pid: ev.pid,
            how,
            addr,
            percpu,
            assumed,
            line: event_line(ev),
        });
        Outcome::EntryOpened(self.vmalloc.opened.len() - 1)
    }

    /// cr3 now holds `mm` on `cpu` (reference counted for slot reuse).
    fn load(&mut self, cpu: u32, mm: Option<MmId>) {
        let Some(c) = self.cpu_slot(cpu) else { return };
        let old = std::mem::replace(&mut c.loaded_mm, mm);
        if old == mm {
            return;
        }
        if let Some(m) = mm {
            self.mms.grab(m);
        }
        if let Some(o) = old {
            self.mms.drop_ref(o);
        }
    }

    /// Does loading `mm` expose entries opened during the trace (lazy models only)?
    fn exposure(&self, mm: MmId) -> Outcome {
        if !self.model.lazy_vmalloc_faults || self.vmalloc.opened.is_empty() {
            return Outcome::Nothing;
        }
        let lacking = self.vmalloc.opened_set.minus(&self.mms.get(mm).has);
        if lacking.is_empty() {
            Outcome::Nothing
        } else {
            Outcome::ExposedLoad { mm, lacking }
        }
    }

    /// The mm cr3 holds on `cpu`; when not yet known, the current task's.
    fn cr3_of(&mut self, cpu: u32, pid: i32, comm: Option<&str>) -> Option<MmId> {
        if let Some(m) = self.cpu(cpu).and_then(|c| c.loaded_mm) {
            return Some(m);
        }
        let mm = self.tasks.get_or_insert(pid, comm, &mut self.mms).mm;
        if mm.is_some() {
            self.load(cpu, mm);
        }
        mm
    }

    fn switch(&mut self, ev: &Event<'_>, s: &nmitrace_parser::model::SchedSwitch<'_>) -> Outcome {
        self.stats.switches += 1;
        let ts = ev.ts_ns;
        // Make sure cr3 is known before the switch (prev's mm, or lazily borrowed).
        let loaded = self.cr3_of(ev.cpu, s.prev_pid, Some(s.prev_comm));
        // What switch_mm compares against: prev->active_mm (a kernel thread's
        // borrowed mm, even after leave_mm moved cr3 to init_mm).
        let before = self.cpu(ev.cpu).and_then(|c| c.active_mm).or(loaded);
        let next = self
            .tasks
            .get_or_insert(s.next_pid, Some(s.next_comm), &mut self.mms)
            .clone();
        let fallback_open = !self.tlb_flush_seen && next.mm.is_some() && next.mm != before;
        let Some(c) = self.cpu_slot(ev.cpu) else {
            return Outcome::Nothing;
        };
        // context_switch: a kernel thread next borrows prev->active_mm.
        c.active_mm = next.mm.or(before);
        // Idle accounting.
        if s.prev_pid == 0 {
            if let Some(since) = c.idle_since.take() {
                c.idle_ns += ts.saturating_sub(since);
            }
        }
        if s.next_pid == 0 && c.idle_since.is_none() {
            c.idle_since = Some(ts);
        }
        if c.window.phase != Phase::Idle {
            // The previous switch never saw next run (touch() saw prev switch
            // again, or another task: lost events).
            close_window(c, ev, WindowEnd::Contradicted);
        }
        let w = &mut c.window;
        w.seq += 1;
        w.phase = Phase::Switched;
        w.fallback = false;
        w.prev_pid = s.prev_pid;
        w.next_pid = s.next_pid;
        w.prev_comm.clear();
        w.prev_comm.push_str(s.prev_comm);
        w.next_comm.clear();
        w.next_comm.push_str(s.next_comm);
        w.switch_ts = ts;
        w.start_ts = ts;
        w.end_ts = None;
        w.prev_mm = before;
        w.next_mm = next.mm.or(before);
        w.switch_line.capture(ev);
        w.flush_line.clear();
        w.end_line.clear();
        w.nmis = 0;
        if fallback_open {
            w.phase = Phase::Open;
            w.fallback = true;
            self.stats.fallback_windows += 1;
            self.load(ev.cpu, next.mm);
            return match self.exposure(next.mm.unwrap()) {
                Outcome::Nothing => Outcome::WindowOpened,
                o => o,
            };
        }
        if next.mm.is_none() && !self.tlb_flush_seen {
            // Kernel thread: lazy TLB, cr3 keeps prev's directory.
        }
        Outcome::Nothing
    }

    fn flush(&mut self, ev: &Event<'_>) -> Outcome {
        self.tlb_flush_seen = true;
        let cpu = ev.cpu;
        let Some(c) = self.cpu_slot(cpu) else {
            return Outcome::Nothing;
        };
        let switching = matches!(c.window.phase, Phase::Switched)
            || (c.window.phase == Phase::Open && c.window.fallback);
        if switching && ev.pid == c.window.prev_pid {
            // switch_mm_irqs_off wrote cr3: the window opens here.
            let next_pid = c.window.next_pid;
            let mm = self.tasks.make_user(next_pid, &mut self.mms);
            let c = self.cpu_slot(cpu).unwrap();
            c.active_mm = Some(mm);
            let w = &mut c.window;
            w.phase = Phase::Open;
            w.fallback = false;
            w.start_ts = ev.ts_ns;
            w.next_mm = Some(mm);
            w.flush_line.capture(ev);
            self.stats.windows += 1;
            self.load(cpu, Some(mm));
            return match self.exposure(mm) {
                Outcome::Nothing => Outcome::WindowOpened,
                o => o,
            };
        }
        // exec_mmap → activate_mm (or kthread_use_mm): cr3 written for the
        // same task; `current` is right, so this is no window. The exec event
        // that follows gives the new mm.
        self.stats.exec_flushes += 1;
        // A kernel thread or idle task (leave_mm, kthread_unuse_mm) switching to init_mm.
        if self.tasks.get(ev.pid).is_some_and(|t| t.mm.is_none()) {
            self.load(cpu, Some(INIT_MM));
        }
        Outcome::NonSwitchFlush
    }

    fn fault(&mut self, ev: &Event<'_>, pf: &PageFault<'_>) -> Outcome {
        if pf.user_tracepoint || !pf.kernel_mode() {
            return Outcome::Nothing;
        }
        let vmalloc_entry = pf.address.and_then(|a| self.model.pgd.entry(a));
        // vmalloc_fault() is tried only for not-present kernel faults:
        // `!(error_code & (X86_PF_RSVD | X86_PF_USER | X86_PF_PROT))`
        // (arch/x86/mm/fault.c, do_kern_addr_fault / __do_page_fault).
        let syncable = pf.error_code & (PageFault::PROTECTION | PageFault::RESERVED) == 0;
        let entry = vmalloc_entry.filter(|_| syncable);
        let in_window = self.cpu(ev.cpu).is_some_and(|c| c.window.is_open());
        let mut info = FaultInfo {
            address: pf.address,
            error_code: pf.error_code,
            entry,
            cr3_mm: None,
            lacked: false,
            synced_into: None,
            wrong_pgd: false,
            in_window,
            in_vmalloc: vmalloc_entry.is_some(),
        };
        let Some(e) = entry else {
            return Outcome::KernelFault(info);
        };
        let cr3 = self.cr3_of(ev.cpu, ev.pid, ev.comm);
        info.cr3_mm = cr3;
        if let Some(m) = cr3 {
            // By the model, or (mm of unknown age) by this very fault: it lacked the entry.
            info.lacked = !self.mms.get(m).has.contains(e);
            if self.model.lazy_vmalloc_faults {
                // Old x86_64 resolves through current->active_mm: inside a
                // switch window that is prev's directory, not cr3's.
                let target = if self.model.vmalloc_fault_uses_active_mm && in_window {
                    self.cpu(ev.cpu).and_then(|c| c.window.prev_mm).or(Some(m))
                } else {
                    Some(m)
                };
                if let Some(t) = target {
                    self.mms.sync(t, e);
                    self.stats.lazy_syncs += 1;
                }
                info.synced_into = target;
                info.wrong_pgd = target != Some(m);
            }
        }
        self.vmalloc.seen.insert(e);
        Outcome::KernelFault(info)
    }
}

#[inline]
fn close_window(c: &mut Cpu, ev: &Event<'_>, how: WindowEnd) {
    c.last_end = Some((c.window.seq, how, ev.ts_ns));
    let seq = c.window.seq;
    if c.window.phase == Phase::Open && how != WindowEnd::Contradicted {
        c.window.end_ts = Some(ev.ts_ns);
        c.window.end_line.capture(ev);
        std::mem::swap(&mut c.window, &mut c.last_window);
        // The buffers swapped: the counter stays with the CPU.
        c.window.seq = seq;
    }
    c.window.phase = Phase::Idle;
}

/// Hand-built events, for tests here and in the crates above (feature
/// `testkit`: not part of the public API).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(test)]
mod tests;
