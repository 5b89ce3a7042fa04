//! NMI instances (SPEC §3.6): a run of `nmi_handler` events on one CPU, each
//! starting (`ts - delta_ns`) right after the previous one ended; a handler
//! seen again starts a new instance (`nmi_handle()` runs each handler once
//! per NMI). The builder groups the handler events, attributes the faults
//! and the register dump the NMI printed, and marks overlapping instances
//! (nested NMIs). It writes no findings: the detectors judge what it builds.

use super::dump::{DumpCollector, NmiDump};
use crate::finding::{HandlerRun, Interrupted, NmiFacts};
use crate::histogram::LogHistogram;
use nmitrace_parser::model::NmiHandler;
use nmitrace_parser::Event;
use nmitrace_replay::{event_line, FaultInfo, Replay};

/// Evidence lines kept per instance.
const MAX_LINES: usize = 8;
/// Kernel-mode faults kept per CPU while waiting to learn whether they were in an NMI.
const PENDING: usize = 8;

/// A kernel-mode fault attributed to an NMI.
#[derive(Clone, Debug)]
pub struct NmiFault {
    pub ts_ns: u64,
    pub pid: i32,
    pub comm: String,
    pub info: FaultInfo,
    pub line: String,
    /// The event's flags said NMI (otherwise its place in a handler's interval).
    pub by_flag: bool,
    pub cr3_mm: Option<String>,
    pub synced_into: Option<String>,
}

/// What an instance overlapped: the outer NMI whose interval held it.
#[derive(Clone, Debug)]
pub struct Overlap {
    pub outer_handler: String,
    pub outer_start: u64,
    pub outer_end: u64,
    /// The outer handler's event line.
    pub line: String,
    /// Faults the outer NMI took before this one started (the IRET that let it in).
    pub faults_before: Vec<String>,
}

/// One NMI.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    pub cpu: u32,
    pub start: u64,
    pub end: u64,
    pub handled: i64,
    pub handlers: Vec<(String, u64, i64)>,
    /// The pid stamped on its events (`current`: the interrupted task).
    pub pid: i32,
    pub comm: String,
    pub lines: Vec<String>,
    pub faults: Vec<NmiFault>,
    /// Another NMI ran inside this one (or this one inside another).
    pub nested: bool,
    /// The outer NMI this one ran inside, found when the outer one's handler ended.
    pub overlap: Option<Overlap>,
    /// The register dump the NMI printed (`nmi_cpu_backtrace`), when traced.
    pub dump: Option<NmiDump>,
    /// Flagged faults with no `nmi_handler` event: an NMI whose handlers were not traced.
    pub handlerless: bool,
    /// The switch-window detector's verdict (set before the others see it).
    pub in_switch_window: bool,
}

impl Instance {
    fn has_handler(&self, h: &str) -> bool {
        self.handlers.iter().any(|(n, _, _)| n == h)
    }

    /// The facts every finding about this NMI carries.
    pub fn facts(&self) -> NmiFacts {
        NmiFacts {
            nmi_start_ns: self.start,
            nmi_end_ns: self.end,
            handled: self.handled,
            handlers: self
                .handlers
                .iter()
                .map(|(n, d, h)| HandlerRun {
                    handler: n.clone(),
                    delta_ns: *d,
                    handled: *h,
                })
                .collect(),
            interrupted: self.dump.as_ref().map(interrupted),
        }
    }
}

/// What a dump says about the interrupted context, for a finding.
pub fn interrupted(d: &NmiDump) -> Interrupted {
    Interrupted {
        rip: d.rip.clone(),
        pid: d.pid,
        cr3: d.cr3.map(|c| format!("{c:#x}")),
        user_mode: d.user_mode,
    }
}

/// One handler's duration statistics.
#[derive(Default)]
pub struct HandlerAcc {
    pub count: u64,
    pub handled: u64,
    pub hist: LogHistogram,
}

/// A kernel-mode fault that may have happened inside an NMI.
#[derive(Clone, Debug)]
struct Candidate {
    fault: NmiFault,
}

#[derive(Default)]
struct CpuState {
    open: Option<Instance>,
    pending: Vec<Candidate>,
}

/// What a handler event did to its CPU's instances.
pub struct Step {
    /// An instance that ended because this handler started a new one.
    pub finished: Option<Instance>,
}

/// Groups `nmi_handler` events into instances, per CPU.
pub struct InstanceBuilder {
    /// Timestamp resolution (1000 when every NMI timestamp is whole µs).
    res_ns: u64,
    b2b_threshold_ns: u64,
    cpus: Vec<CpuState>,
    /// Per handler name, in order of first sight.
    pub handlers: Vec<(String, HandlerAcc)>,
    /// Faults whose flags say NMI, waiting on some CPU.
    pub flagged_pending: usize,
    pub dumps: DumpCollector,
}

/// The handler's name: its symbol, or its address when the format gives a
/// number (trace.dat without symbol resolution), or `?`.
pub fn handler_name<'a>(h: &NmiHandler<'a>) -> std::borrow::Cow<'a, str> {
    if !h.handler.is_empty() {
        std::borrow::Cow::Borrowed(h.handler.strip_suffix("()").unwrap_or(h.handler))
    } else if let Some(a) = h.handler_addr {
        std::borrow::Cow::Owned(format!("{a:#x}"))
    } else {
        std::borrow::Cow::Borrowed("?")
    }
}

impl InstanceBuilder {
    pub fn new(b2b_threshold_ns: u64) -> InstanceBuilder {
        InstanceBuilder {
            res_ns: 1000,
            b2b_threshold_ns,
            cpus: Vec::new(),
            handlers: Vec::new(),
            flagged_pending: 0,
            dumps: DumpCollector::default(),
        }
    }

    /// The timing tolerance: the timestamps' resolution.
    pub fn tol(&self) -> u64 {
        self.res_ns
    }

    /// The back-to-back threshold in effect (never finer than the timestamps).
    pub fn b2b_threshold(&self) -> u64 {
        self.b2b_threshold_ns.max(self.res_ns)
    }

    fn cpu(&mut self, cpu: u32) -> &mut CpuState {
        let c = cpu as usize;
        if c >= self.cpus.len() {
            self.cpus.resize_with(c + 1, CpuState::default);
        }
        &mut self.cpus[c]
    }

    /// The open instance on `cpu`.
    pub fn open(&self, cpu: u32) -> Option<&Instance> {
        self.cpus.get(cpu as usize)?.open.as_ref()
    }

    /// A kernel-mode fault that might be in NMI context (flags say NMI, or
    /// the format has no flags, or the kernel predates the NMI flag).
    pub fn candidate(&mut self, ev: &Event<'_>, info: FaultInfo, replay: &Replay) {
        if ev.cpu as usize >= nmitrace_replay::MAX_CPUS {
            return;
        }
        let nmi_flag = ev.ctx.known && ev.ctx.nmi;
        let describe = |m: Option<u32>| m.map(|m| replay.mms.get(m).describe());
        let fault = NmiFault {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            comm: ev.comm.unwrap_or("").to_string(),
            info,
            line: event_line(ev),
            by_flag: nmi_flag,
            cr3_mm: if info.entry.is_some() {
                describe(info.cr3_mm)
            } else {
                None
            },
            synced_into: if info.entry.is_some() {
                describe(info.synced_into)
            } else {
                None
            },
        };
        if nmi_flag {
            self.flagged_pending += 1;
        }
        let c = self.cpu(ev.cpu);
        let dropped = if c.pending.len() >= PENDING {
            Some(c.pending.remove(0))
        } else {
            None
        };
        c.pending.push(Candidate { fault });
        if dropped.is_some_and(|d| d.fault.by_flag) {
            self.flagged_pending = self.flagged_pending.saturating_sub(1);
        }
    }

    /// A non-NMI event (flags known) on `cpu`: flagged faults not claimed by
    /// an `nmi_handler` event were in an NMI whose handlers were not traced.
    pub fn leave_nmi(&mut self, cpu: u32) -> Option<Instance> {
        let c = self.cpus.get_mut(cpu as usize)?;
        if c.pending.iter().all(|p| !p.fault.by_flag) {
            return None;
        }
        let flagged: Vec<Candidate> = c.pending.drain(..).filter(|p| p.fault.by_flag).collect();
        self.flagged_pending = self.flagged_pending.saturating_sub(flagged.len());
        let mut inst = Instance {
            cpu,
            handlerless: true,
            ..Default::default()
        };
        for cand in flagged {
            inst.start = if inst.lines.is_empty() {
                cand.fault.ts_ns
            } else {
                inst.start
            };
            inst.end = cand.fault.ts_ns;
            inst.pid = cand.fault.pid;
            inst.comm = cand.fault.comm.clone();
            inst.faults.push(cand.fault);
        }
        Some(inst)
    }

    /// Account a handler's run (count, handled, duration); its name.
    fn account(&mut self, name: &str, h: &NmiHandler<'_>) {
        let i = match self.handlers.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.handlers
                    .push((name.to_string(), HandlerAcc::default()));
                self.handlers.len() - 1
            }
        };
        let acc = &mut self.handlers[i].1;
        acc.count += 1;
        acc.handled += h.handled.max(0) as u64;
        acc.hist.add(h.delta_ns);
    }

    /// An `nmi_handler` event (named `name`): it joins the open instance on
    /// its CPU or starts a new one. The dump it printed, if any, is returned
    /// for the detectors that judge the handler itself.
    pub fn handler(
        &mut self,
        ev: &Event<'_>,
        h: &NmiHandler<'_>,
        name: &str,
    ) -> (Step, Option<NmiDump>) {
        let mut step = Step { finished: None };
        if ev.cpu as usize >= nmitrace_replay::MAX_CPUS {
            return (step, None);
        }
        if ev.ts_ns % 1000 != 0 {
            self.res_ns = 1;
        }
        self.account(name, h);
        let line = event_line(ev);
        let end = ev.ts_ns;
        let start = end.saturating_sub(h.delta_ns);
        let tol = self.tol();
        let thr = self.b2b_threshold();
        // The dump this handler printed (nmi_cpu_backtrace_handler), inside its interval.
        let dump = self.dumps.take(ev.cpu, start, end, tol);
        let c = self.cpu(ev.cpu);
        let mut nested = false;
        let new_instance = match &c.open {
            None => true,
            Some(open) => {
                if start + tol < open.end {
                    nested = true;
                    true
                } else {
                    open.has_handler(name) || start > open.end + thr
                }
            }
        };
        if new_instance {
            if nested {
                let inner_start = c.open.as_ref().map_or(0, |o| o.start);
                // Faults the outer NMI took before the inner one started (the IRET that let it in).
                let faults_before: Vec<String> = c
                    .pending
                    .iter()
                    .filter(|p| p.fault.ts_ns + tol >= start && p.fault.ts_ns <= inner_start + tol)
                    .map(|p| p.fault.line.clone())
                    .collect();
                if let Some(o) = c.open.as_mut() {
                    o.nested = true;
                    o.overlap = Some(Overlap {
                        outer_handler: name.to_string(),
                        outer_start: start,
                        outer_end: ev.ts_ns,
                        line: line.clone(),
                        faults_before,
                    });
                }
            }
            step.finished = c.open.take();
            c.open = Some(Instance {
                cpu: ev.cpu,
                start,
                end,
                pid: ev.pid,
                comm: ev.comm.unwrap_or("").to_string(),
                nested,
                ..Default::default()
            });
        }
        let inst = c.open.as_mut().unwrap();
        inst.end = inst.end.max(end);
        inst.handled += h.handled.max(0);
        inst.handlers
            .push((name.to_string(), h.delta_ns, h.handled));
        if dump.is_some() {
            inst.dump = dump.clone();
        }
        if inst.lines.len() < MAX_LINES {
            inst.lines.push(line);
        }
        // Faults inside this handler's interval (or flagged NMI) belong to this NMI.
        let lo = start.saturating_sub(tol);
        let mut claimed = 0usize;
        let mut i = 0;
        while i < c.pending.len() {
            let p = &c.pending[i].fault;
            // Flagged faults outside this interval wait for the handler whose
            // interval holds them (an outer NMI), or are reported on their own.
            if p.ts_ns <= end + tol && p.ts_ns >= lo {
                let p = c.pending.remove(i).fault;
                if p.by_flag {
                    claimed += 1;
                }
                if inst.lines.len() < MAX_LINES {
                    inst.lines.insert(inst.lines.len() - 1, p.line.clone());
                }
                inst.faults.push(p);
            } else {
                // Earlier faults stay (bounded): an outer NMI still running may claim them.
                i += 1;
            }
        }
        self.flagged_pending = self.flagged_pending.saturating_sub(claimed);
        (step, dump)
    }

    /// Close the open instance on `cpu`.
    pub fn close(&mut self, cpu: u32) -> Option<Instance> {
        self.cpus.get_mut(cpu as usize)?.open.take()
    }

    /// The trace lost events on `cpu`: close what is open, forget the faults
    /// and the dump being printed.
    pub fn forget_cpu(&mut self, cpu: u32) -> Option<Instance> {
        if cpu as usize >= self.cpus.len() {
            return None;
        }
        let inst = self.close(cpu);
        self.dumps.forget_cpu(cpu);
        if let Some(c) = self.cpus.get_mut(cpu as usize) {
            let flagged = c.pending.iter().filter(|p| p.fault.by_flag).count();
            c.pending.clear();
            self.flagged_pending = self.flagged_pending.saturating_sub(flagged);
        }
        inst
    }

    /// CPUs seen.
    pub fn cpus(&self) -> u32 {
        self.cpus.len() as u32
    }

    /// Flagged faults still waiting on `cpu`.
    pub fn has_flagged(&self, cpu: u32) -> bool {
        self.cpus
            .get(cpu as usize)
            .is_some_and(|c| c.pending.iter().any(|p| p.fault.by_flag))
    }
}
