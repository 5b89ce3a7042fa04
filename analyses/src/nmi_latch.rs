//! NMI instances and the x86 NMI latch (SPEC §3.6).
//!
//! An instance is a run of `nmi_handler` events on one CPU, each starting
//! (`ts - delta_ns`) right after the previous one ended; a handler seen again
//! starts a new instance (every handler runs once per NMI). Each finished
//! instance is replayed through `default_do_nmi`: b2b detection (timing
//! threshold), `handled`, `swallow_nmi`, unknown and swallowed NMIs, and
//! lost NMI edges (more sources serviced than NMIs delivered). Overlapping
//! instances are nested NMIs.

use crate::cr3_window::{self, PgdBook, Verdict, WindowHit};
use crate::nmi_dump::{DumpCollector, NmiDump};
use crate::findings::Findings;
use crate::periodic::PeriodicBeats;
use crate::quantile::Histogram;
use crate::report::{Finding, HandlerStats, NmisBlock};
use crate::vmalloc_fault::{self, NmiFault};
use nmitrace_parser::model::NmiHandler;
use nmitrace_parser::Event;
use nmitrace_replay::{event_line, fmt_ts, FaultInfo, Replay};
use serde_json::json;
use std::collections::BTreeMap;

/// The kernel's `nmi_longest_ns` default: a handler slower than this is reported.
pub const SLOW_HANDLER_NS: u64 = 1_000_000;
/// What the back-to-back verdicts rest on.
pub const B2B_FROM: &str = "timing proxy: the NMI started within b2b_threshold_ns of the previous one's end; the kernel tests regs->ip == last_nmi_rip, which the trace does not carry";
/// Evidence lines kept per instance.
const MAX_LINES: usize = 8;
/// Kernel-mode faults kept per CPU while waiting to learn whether they were in an NMI.
const PENDING: usize = 8;

#[derive(Default)]
struct HandlerAcc {
    count: u64,
    handled: u64,
    hist: Histogram,
    /// The kernel's per-handler `max_duration` (nmi_check_duration).
    max_duration: u64,
}

/// A kernel-mode fault that may have happened inside an NMI.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub ts_ns: u64,
    pub pid: i32,
    pub comm: String,
    pub info: FaultInfo,
    pub line: String,
    /// The event's flags said NMI (otherwise the format has no flags).
    pub nmi_flag: bool,
    pub cr3_mm: Option<String>,
    pub synced_into: Option<String>,
}

/// One NMI being assembled or just finished.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    pub cpu: u32,
    pub start: u64,
    pub end: u64,
    pub handled: i64,
    pub handlers: Vec<(String, u64, i64)>,
    pub pid: i32,
    pub comm: String,
    pub lines: Vec<String>,
    pub faults: Vec<NmiFault>,
    pub window: Option<WindowHit>,
    /// Another NMI ran inside this one (or this one inside another).
    pub nested: bool,
    /// The register dump the NMI printed (`nmi_cpu_backtrace`), when traced.
    pub dump: Option<NmiDump>,
}

impl Instance {
    fn has_handler(&self, h: &str) -> bool {
        self.handlers.iter().any(|(n, _, _)| n == h)
    }

    fn handlers_json(&self) -> serde_json::Value {
        self.handlers.iter().map(|(n, d, h)| json!({"handler": n, "delta_ns": d, "handled": h})).collect()
    }

    pub fn base_finding(&self, kind: &str, severity: &str, confidence: &str) -> Finding {
        let mut f = Finding::new(kind, severity, confidence);
        f.ts_ns = Some(self.start);
        f.cpu = Some(self.cpu);
        f.pid = Some(self.pid);
        f.comm = Some(self.comm.clone()).filter(|c| !c.is_empty());
        f.details.insert("nmi_start_ns".into(), self.start.into());
        f.details.insert("nmi_end_ns".into(), self.end.into());
        f.details.insert("handled".into(), self.handled.into());
        f.details.insert("handlers".into(), self.handlers_json());
        if let Some(d) = &self.dump {
            dump_details(&mut f, d);
        }
        f.evidence = self.lines.clone();
        f
    }
}

/// The last finished instance on a CPU, waiting for its follower to settle
/// how many NMIs were delivered for its sources.
#[derive(Clone, Debug)]
struct Finished {
    inst: Instance,
    nested: bool,
}

#[derive(Default)]
struct NmiCpu {
    open: Option<Instance>,
    prev: Option<Finished>,
    swallow: bool,
    pending: Vec<Candidate>,
}

pub struct NmiLatch {
    pub b2b_threshold_ns: u64,
    /// Timestamp resolution (1000 when every NMI timestamp is whole µs).
    res_ns: u64,
    cpus: Vec<NmiCpu>,
    handlers: Vec<(String, HandlerAcc)>,
    pub instances: u64,
    pub b2b: u64,
    pub periodic: PeriodicBeats,
    /// Candidates whose flags say NMI, waiting on some CPU.
    pub flagged_pending: usize,
    pub empty_instances: Vec<(u32, u64, usize)>,
    /// Finished instances for charts and tables (bounded).
    pub marks: crate::timeline::Decimated<crate::timeline::NmiMark>,
    /// NMI register dumps being printed, per CPU.
    pub dumps: DumpCollector,
    /// Page directories learned from dumps.
    pub book: PgdBook,
    /// Switch-window candidates the NMI's own dump placed outside the window.
    pub refuted_windows: u64,
    /// Switch-window findings the dump left undecided: (finding index, dump
    /// pgd, prev pid, next pid), judged again at the end by what later dumps taught.
    undecided: Vec<(usize, u64, i32, i32)>,
    /// Findings to drop at the end (refuted once every dump was read).
    pub drop_findings: Vec<usize>,
    /// CPUs whose open NMI met a switch whose end is not known yet.
    pub windows_pending: usize,
    /// Window candidates the trace itself refuted: the switch completed with
    /// no cr3 write, or prev went on running outside any switch.
    pub refuted_by_trace: u64,
}

impl NmiLatch {
    pub fn new(b2b_threshold_ns: u64) -> NmiLatch {
        NmiLatch {
            b2b_threshold_ns,
            res_ns: 1000,
            cpus: Vec::new(),
            handlers: Vec::new(),
            instances: 0,
            b2b: 0,
            periodic: PeriodicBeats::default(),
            flagged_pending: 0,
            empty_instances: Vec::new(),
            marks: Default::default(),
            dumps: DumpCollector::default(),
            book: PgdBook::default(),
            refuted_windows: 0,
            undecided: Vec::new(),
            drop_findings: Vec::new(),
            windows_pending: 0,
            refuted_by_trace: 0,
        }
    }

    fn tol(&self) -> u64 {
        self.res_ns
    }

    fn cpu(&mut self, cpu: u32) -> &mut NmiCpu {
        let c = cpu as usize;
        if c >= self.cpus.len() {
            self.cpus.resize_with(c + 1, NmiCpu::default);
        }
        &mut self.cpus[c]
    }

    /// A kernel-mode fault that might be in NMI context (flags say NMI, or the format has no flags).
    pub fn candidate(&mut self, ev: &Event<'_>, info: FaultInfo, replay: &Replay) {
        if ev.cpu as usize >= nmitrace_replay::MAX_CPUS {
            return;
        }
        let nmi_flag = ev.ctx.known && ev.ctx.nmi;
        let describe = |m: Option<u32>| m.map(|m| replay.mms.get(m).describe());
        let cand = Candidate {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            comm: ev.comm.unwrap_or("").to_string(),
            info,
            line: event_line(ev),
            nmi_flag,
            cr3_mm: if info.entry.is_some() { describe(info.cr3_mm) } else { None },
            synced_into: if info.entry.is_some() { describe(info.synced_into) } else { None },
        };
        if nmi_flag {
            self.flagged_pending += 1;
        }
        let mut dropped = None;
        let c = self.cpu(ev.cpu);
        if c.pending.len() >= PENDING {
            dropped = Some(c.pending.remove(0));
        }
        c.pending.push(cand);
        if let Some(d) = dropped {
            if d.nmi_flag {
                self.flagged_pending = self.flagged_pending.saturating_sub(1);
            }
        }
    }

    /// A non-NMI event (flags known) on `cpu`: flagged faults not claimed by
    /// an `nmi_handler` event were in an NMI whose handlers were not traced.
    pub fn leave_nmi(&mut self, cpu: u32, replay: &Replay, out: &mut Findings) {
        let Some(c) = self.cpus.get_mut(cpu as usize) else { return };
        if c.pending.iter().all(|p| !p.nmi_flag) {
            return;
        }
        let flagged: Vec<Candidate> = c.pending.drain(..).filter(|p| p.nmi_flag).collect();
        self.flagged_pending = self.flagged_pending.saturating_sub(flagged.len());
        let mut inst = Instance { cpu, ..Default::default() };
        for cand in flagged {
            inst.start = if inst.lines.is_empty() { cand.ts_ns } else { inst.start };
            inst.end = cand.ts_ns;
            inst.pid = cand.pid;
            inst.comm = cand.comm.clone();
            inst.faults.push(NmiFault::from_candidate(cand));
        }
        vmalloc_fault::report(&inst, replay, out, false);
    }

    fn handler_acc(&mut self, name: &str) -> &mut HandlerAcc {
        let i = match self.handlers.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.handlers.push((name.to_string(), HandlerAcc::default()));
                self.handlers.len() - 1
            }
        };
        &mut self.handlers[i].1
    }

    /// An `nmi_handler` event.
    pub fn handler(&mut self, ev: &Event<'_>, h: &NmiHandler<'_>, replay: &Replay, out: &mut Findings) {
        if ev.cpu as usize >= nmitrace_replay::MAX_CPUS {
            return;
        }
        if ev.ts_ns % 1000 != 0 {
            self.res_ns = 1;
        }
        let name_buf = handler_name(h);
        let name: &str = &name_buf;
        // The kernel prints "took too long" only for a new per-handler
        // maximum at or over nmi_longest_ns (3.15+: `if (duration <
        // nmi_longest_ns || duration < action->max_duration) return;`).
        let prints_too_long = {
            let acc = self.handler_acc(name);
            acc.count += 1;
            acc.handled += h.handled.max(0) as u64;
            acc.hist.add(h.delta_ns);
            let new_max = h.delta_ns >= SLOW_HANDLER_NS && h.delta_ns >= acc.max_duration;
            if new_max {
                acc.max_duration = h.delta_ns;
            }
            new_max
        };
        let line = event_line(ev);
        let end = ev.ts_ns;
        let start = end.saturating_sub(h.delta_ns);
        let tol = self.tol();
        // The dump this handler printed (nmi_cpu_backtrace_handler), inside its interval.
        let dump = self.dumps.take(ev.cpu, start, end, tol);
        if h.delta_ns >= SLOW_HANDLER_NS {
            let mut f = slow_handler(ev, name, h, &line);
            f.details.insert("kernel_prints_too_long".into(), prints_too_long.into());
            if let Some(d) = &dump {
                dump_details(&mut f, d);
            }
            out.push(f);
        }
        let thr = self.b2b_threshold_ns.max(tol);
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
                if let Some(o) = self.cpu(ev.cpu).open.as_mut() {
                    o.nested = true;
                }
                let tol = self.tol();
                let c = self.cpu(ev.cpu);
                let inner = c.open.clone().unwrap();
                // Faults the outer NMI took before the inner one started (the IRET that let it in).
                let faults: Vec<String> = c
                    .pending
                    .iter()
                    .filter(|p| p.ts_ns + tol >= start && p.ts_ns <= inner.start + tol)
                    .map(|p| p.line.clone())
                    .collect();
                out.push(nested_finding(&inner, ev, name, start, &line, &faults, replay));
            }
            self.finalize(ev.cpu, replay, out);
            let c = self.cpu(ev.cpu);
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
        let c = self.cpu(ev.cpu);
        let inst = c.open.as_mut().unwrap();
        inst.end = inst.end.max(end);
        inst.handled += h.handled.max(0);
        if dump.is_some() {
            inst.dump = dump;
        }
        inst.handlers.push((name.to_string(), h.delta_ns, h.handled));
        if inst.lines.len() < MAX_LINES {
            inst.lines.push(line.clone());
        }
        // Faults inside this handler's interval (or flagged NMI) belong to this NMI.
        let lo = start.saturating_sub(tol);
        let mut claimed = 0usize;
        let mut i = 0;
        while i < c.pending.len() {
            let p = &c.pending[i];
            // Flagged faults outside this interval wait for the handler whose
            // interval holds them (an outer NMI), or are reported on their own.
            if p.ts_ns <= end + tol && p.ts_ns >= lo {
                let p = c.pending.remove(i);
                if p.nmi_flag {
                    claimed += 1;
                }
                if inst.lines.len() < MAX_LINES {
                    inst.lines.insert(inst.lines.len() - 1, p.line.clone());
                }
                inst.faults.push(NmiFault::from_candidate(p));
            } else {
                // Earlier faults stay (bounded): an outer NMI still running may claim them.
                i += 1;
            }
        }
        self.flagged_pending = self.flagged_pending.saturating_sub(claimed);
        // The switch window, placed by the NMI's own stamp.
        if let Some(rc) = replay.cpu(ev.cpu) {
            let hit = cr3_window::check(rc, ev.pid, replay);
            let inst = self.cpu(ev.cpu).open.as_mut().unwrap();
            if let Some(hit) = hit {
                let better = match &inst.window {
                    None => true,
                    Some(w) => hit.observed && !w.observed,
                };
                if better {
                    let was_pending = inst.window.as_ref().is_some_and(|w| !w.settled);
                    inst.window = Some(hit);
                    if !was_pending {
                        self.windows_pending += 1;
                    }
                }
            }
        }
    }

    /// An event went by on `cpu`: if the open NMI met a switch, has that
    /// switch ended, and how? The kernel decides through the trace: next's
    /// first event closes it; a switch that completes without the reason-0
    /// flush wrote no cr3; prev emitting what no switch can emit means the
    /// switch did not go on as traced.
    pub fn settle(&mut self, cpu: u32, replay: &Replay) {
        let Some(rc) = replay.cpu(cpu) else { return };
        let Some(c) = self.cpus.get_mut(cpu as usize) else { return };
        let Some(inst) = c.open.as_mut() else { return };
        let Some(w) = inst.window.as_mut() else { return };
        if w.settled || (rc.window.phase != nmitrace_replay::Phase::Idle && rc.window.seq == w.seq) {
            return;
        }
        w.settled = true;
        self.windows_pending = self.windows_pending.saturating_sub(1);
        let keep = match rc.last_end {
            Some((seq, end, ts)) if seq == w.seq => match end {
                nmitrace_replay::WindowEnd::Closed { flushed } => {
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
                nmitrace_replay::WindowEnd::Contradicted => false,
                nmitrace_replay::WindowEnd::Forgotten => true,
            },
            _ => true,
        };
        if !keep {
            inst.window = None;
            self.refuted_by_trace += 1;
        }
    }

    /// Close the open instance on `cpu`: replay `default_do_nmi` for it.
    fn finalize(&mut self, cpu: u32, replay: &Replay, out: &mut Findings) {
        self.settle(cpu, replay);
        if let Some(w) = self.cpus.get_mut(cpu as usize).and_then(|c| c.open.as_mut()).and_then(|i| i.window.as_mut()) {
            if !w.settled {
                w.settled = true;
                self.windows_pending = self.windows_pending.saturating_sub(1);
            }
        }
        let thr = self.b2b_threshold_ns.max(self.tol());
        let tol = self.tol();
        let c = self.cpu(cpu);
        let Some(inst) = c.open.take() else { return };
        let b2b = c.prev.as_ref().is_some_and(|p| inst.start + tol >= p.inst.end && inst.start <= p.inst.end + thr);
        let gap = c.prev.as_ref().map(|p| inst.start as i64 - p.inst.end as i64);
        if !b2b {
            c.swallow = false;
        }
        let empty = inst.handled == 0;
        let mut swallowed = false;
        let mut unknown = false;
        if !inst.nested {
            if !empty {
                if inst.handled > 1 {
                    c.swallow = true;
                }
            } else if b2b && c.swallow {
                swallowed = true;
            } else {
                unknown = true;
            }
        }
        // Lost edges of the previous instance: its sources minus the NMIs delivered for them.
        let prev = c.prev.take();
        let swallow_now = c.swallow;
        self.instances += 1;
        if b2b {
            self.b2b += 1;
        }
        if let Some(p) = prev {
            let follower_counts = b2b && empty && !inst.nested;
            lost_check(&p, follower_counts.then_some(&inst), out);
        }
        if swallowed {
            let mut f = inst.base_finding("swallowed_nmi", "info", "observed");
            f.message = format!(
                "empty NMI on CPU {cpu} came back-to-back ({} ns after the previous one) with swallow_nmi set (a previous NMI handled more than one source): default_do_nmi swallowed it instead of reporting an unknown NMI — expected, but a real unknown NMI arriving now would be swallowed too (back-to-back judged by timing: the kernel compares the interrupted RIP with the previous NMI's, which the trace does not record)",
                gap.unwrap_or(0)
            );
            f.details.insert("b2b".into(), true.into());
            f.details.insert("gap_ns".into(), gap.into());
            f.details.insert("b2b_threshold_ns".into(), thr.into());
            f.details.insert("b2b_from".into(), B2B_FROM.into());
            if let Some(i) = out.push(f) {
                self.empty_instances.push((cpu, inst.start, i));
            }
        }
        if unknown {
            let why = if !b2b {
                "it was not back-to-back with a previous NMI (judged by timing: the kernel compares the interrupted RIP with the previous NMI's, which the trace does not record)".to_string()
            } else {
                "it was back-to-back (judged by timing) but swallow_nmi was clear (the previous NMI handled at most one source)".to_string()
            };
            let mut f = inst.base_finding("unknown_nmi", "warning", "observed");
            f.message = format!(
                "NMI on CPU {cpu} that no handler claimed (every handler returned 0) and {why}: the kernel reports \"Uhhuh. NMI received for unknown reason\" (or panics with unknown_nmi_panic); look for an external source (SERR/IOCHK, BMC, watchdog) or a handler that did not recognise its event"
            );
            f.details.insert("b2b".into(), b2b.into());
            f.details.insert("gap_ns".into(), gap.into());
            f.details.insert("swallow_nmi".into(), swallow_now.into());
            f.details.insert("b2b_threshold_ns".into(), thr.into());
            f.details.insert("b2b_from".into(), B2B_FROM.into());
            if let Some(i) = out.push(f) {
                self.empty_instances.push((cpu, inst.start, i));
            }
            if self.empty_instances.len() > 10_000 {
                self.empty_instances.remove(0);
            }
        }
        let mut inst = inst;
        if let Some(d) = &inst.dump {
            let kthread = d.pid.and_then(|p| replay.tasks.get(p)).is_some_and(|t| t.mm.is_none());
            self.book.learn(d, kthread);
        }
        let verdict = match (&inst.window, &inst.dump) {
            (Some(w), Some(d)) => Some(cr3_window::judge(d, w, &self.book)),
            _ => None,
        };
        if let Some(Verdict::Refutes(_)) = verdict {
            // The kernel's own dump places the NMI outside the window.
            self.refuted_windows += 1;
            inst.window = None;
        }
        if inst.window.is_none() {
            if let Some(d) = &inst.dump {
                if let Some(via) = cr3_window::adopt_mm_reverse_window(d) {
                    out.push(cr3_window::reverse_finding(&inst, d, via, replay));
                }
            }
        }
        if let Some(w) = &inst.window {
            let w = w.clone();
            let idx = out.push(cr3_window::finding(&inst, &w, replay, verdict.as_ref()));
            if let (Some(i), Some(Verdict::Undecided(_)), Some(pgd)) = (idx, &verdict, inst.dump.as_ref().and_then(|d| d.pgd())) {
                if self.undecided.len() < 10_000 {
                    self.undecided.push((i, pgd, w.prev_pid, w.next_pid));
                }
            }
        }
        if !inst.faults.is_empty() {
            vmalloc_fault::report(&inst, replay, out, inst.window.is_some());
        }
        if let Some(rc) = replay.cpu(cpu) {
            for (name, _, handled) in &inst.handlers {
                if *handled > 0 {
                    let line = inst.handlers.iter().position(|(n, _, _)| n == name).and_then(|i| inst.lines.get(i)).or(inst.lines.first());
                    if let Some(f) = self.periodic.beat(cpu, name, inst.start, line.map_or("", |l| l.as_str()), rc) {
                        out.push(f);
                    }
                }
            }
        }
        crate::timeline::mark_nmi(&mut self.marks, &inst);
        let c = self.cpu(cpu);
        c.prev = Some(Finished { nested: inst.nested, inst });
    }

    /// The trace lost events on `cpu`: close what is open and do not judge
    /// the next NMI as back-to-back with the last one.
    pub fn forget_cpu(&mut self, cpu: u32, replay: &Replay, out: &mut Findings) {
        if (cpu as usize) >= self.cpus.len() {
            return;
        }
        self.finalize(cpu, replay, out);
        self.dumps.forget_cpu(cpu);
        let c = &mut self.cpus[cpu as usize];
        if let Some(p) = c.prev.take() {
            lost_check(&p, None, out);
        }
        c.swallow = false;
        let flagged = c.pending.iter().filter(|p| p.nmi_flag).count();
        c.pending.clear();
        self.flagged_pending = self.flagged_pending.saturating_sub(flagged);
    }

    /// End of trace: close every open instance and settle the last ones.
    pub fn finish(&mut self, replay: &Replay, out: &mut Findings) {
        self.finish_cpus(replay, out);
        // Windows the dump left undecided, judged by every page directory learned since.
        for (i, pgd, prev, next) in std::mem::take(&mut self.undecided) {
            let Some(f) = out.list.get_mut(i) else { continue };
            if self.book.get(next) == Some(pgd) {
                let why = format!("NMI backtrace: CR3 {pgd:#x} is next [{next}]'s page directory (learned from its later dumps) while current is prev");
                f.confidence = "observed".into();
                f.details.insert("confirmed_by".into(), why.into());
            } else if self.book.get(prev) == Some(pgd) {
                self.refuted_windows += 1;
                self.drop_findings.push(i);
            }
        }
    }

    fn finish_cpus(&mut self, replay: &Replay, out: &mut Findings) {
        for cpu in 0..self.cpus.len() as u32 {
            self.finalize(cpu, replay, out);
            let c = &mut self.cpus[cpu as usize];
            if let Some(p) = c.prev.take() {
                lost_check(&p, None, out);
            }
            let flagged = c.pending.iter().any(|p| p.nmi_flag);
            if flagged {
                self.leave_nmi(cpu, replay, out);
            }
        }
    }

    pub fn block(&self) -> NmisBlock {
        let mut by_handler = BTreeMap::new();
        for (n, a) in &self.handlers {
            by_handler.insert(
                n.clone(),
                HandlerStats {
                    count: a.count,
                    handled: a.handled,
                    p50_ns: a.hist.quantile(0.5),
                    p99_ns: a.hist.quantile(0.99),
                    max_ns: a.hist.max(),
                },
            );
        }
        NmisBlock { instances: self.instances, by_handler }
    }
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

/// Observed lost NMIs: an instance serviced more sources than NMIs were
/// delivered for them (itself, plus its empty b2b follower if any).
fn lost_check(p: &Finished, follower: Option<&Instance>, out: &mut Findings) {
    if p.nested {
        return;
    }
    // NMI edges are counted per source: a handler that claimed work had at
    // least one edge raised for it. `handled` is not edges: one Intel PMI
    // services every overflowed counter at once (x86_pmu_handle_irq returns
    // their number), and AMD's perf handler also claims NMIs that arrive in
    // its window after a PMI (amd_pmu_adjust_nmi_window).
    let i = &p.inst;
    let claimed: Vec<&str> = i.handlers.iter().filter(|(_, _, h)| *h > 0).map(|(n, _, _)| n.as_str()).collect();
    let sources = claimed.len() as i64;
    let delivered = 1 + follower.is_some() as i64;
    let lost = sources - delivered;
    if lost <= 0 {
        return;
    }
    let amd = i.handlers.iter().any(|(n, _, _)| n.contains("ibs") || n.starts_with("amd_"));
    let mut f = i.base_finding("lost_nmi", "info", "observed");
    f.message = format!(
        "NMI on CPU {} serviced {} sources ({}) but only {} NMI{} delivered for them: {} NMI edge{} collapsed in the latch (at most one NMI can be pending while one is in service). Handlers poll, so the work was done, but a source that is not polled when a local handler claims the NMI (external NMIs behind nmi_reason_lock) would be missed. Counted: handlers that claimed work, one edge each ({})",
        i.cpu,
        sources,
        claimed.join(", "),
        delivered,
        if delivered == 1 { " was" } else { "s were" },
        lost,
        if lost == 1 { "" } else { "s" },
        if amd {
            "AMD: perf's handled count can include NMIs claimed in its post-PMI window, so it is not an edge count"
        } else {
            "Intel: one PMI services every overflowed counter, so perf's handled count is not an edge count"
        }
    );
    f.details.insert("lost".into(), lost.into());
    f.details.insert("sources".into(), sources.into());
    f.details.insert("handled".into(), i.handled.into());
    f.details.insert("delivered".into(), delivered.into());
    f.details.insert("counted".into(), "sources: handlers with handled > 0, one NMI edge each".into());
    f.details.insert("vendor".into(), if amd { "amd" } else { "intel or unknown" }.into());
    if let Some(fo) = follower {
        f.details.insert("b2b_follower_ns".into(), fo.start.into());
        f.evidence.extend(fo.lines.iter().cloned());
    }
    out.push(f);
}

/// What the NMI's register dump says about the interrupted context.
pub(crate) fn dump_details(f: &mut Finding, d: &NmiDump) {
    if let Some(r) = &d.rip {
        f.details.insert("interrupted_rip".into(), r.clone().into());
    }
    if let Some(p) = d.pid {
        f.details.insert("interrupted_pid".into(), p.into());
    }
    if let Some(c) = d.cr3 {
        f.details.insert("interrupted_cr3".into(), format!("{c:#x}").into());
    }
    if d.user_mode {
        f.details.insert("interrupted_user_mode".into(), true.into());
    }
}

fn slow_handler(ev: &Event<'_>, name: &str, h: &NmiHandler<'_>, line: &str) -> Finding {
    let mut f = Finding::new("slow_nmi_handler", "warning", "observed");
    f.ts_ns = Some(ev.ts_ns.saturating_sub(h.delta_ns));
    f.cpu = Some(ev.cpu);
    f.pid = Some(ev.pid);
    f.comm = ev.comm.map(Into::into);
    let ms = h.delta_ns as f64 / 1e6;
    f.message = format!(
        "NMI handler {name} ran {ms:.3} ms on CPU {} (over the kernel's 1 ms nmi_longest_ns): NMIs are blocked meanwhile, latched NMIs collapse, and perf lowers its sample rate (\"perf: interrupt took too long\")",
        ev.cpu
    );
    f.details.insert("handler".into(), name.into());
    f.details.insert("delta_ns".into(), h.delta_ns.into());
    f.details.insert("threshold_ns".into(), SLOW_HANDLER_NS.into());
    f.evidence.push(line.to_string());
    f
}

fn nested_finding(
    inner: &Instance,
    ev: &Event<'_>,
    outer_handler: &str,
    outer_start: u64,
    line: &str,
    outer_faults: &[String],
    replay: &Replay,
) -> Finding {
    let fatal = replay.model.nested_nmi_corrupts_stack;
    let mut f = inner.base_finding("nested_nmi", if fatal { "error" } else { "warning" }, "observed");
    f.ts_ns = Some(inner.start);
    let after_fault = !outer_faults.is_empty();
    f.evidence = outer_faults.iter().cloned().chain(inner.lines.iter().cloned()).collect();
    f.message = if fatal {
        format!(
            "NMI nested inside another NMI on CPU {} ({} started at {} and was still running): on x86_64 before 3.3 the {}IRET re-enabled NMIs and the nested NMI reused the NMI stack — stack corruption, usually a triple fault or silent memory damage",
            ev.cpu,
            outer_handler,
            fmt_ts(outer_start),
            if after_fault { "fault's " } else { "" }
        )
    } else {
        format!(
            "overlapping NMIs on CPU {} ({} started at {} before the previous NMI ended): since 3.3 nested NMIs are deferred and repeated, so this should not appear — check the trace clock, or the kernel's NMI entry code",
            ev.cpu,
            outer_handler,
            fmt_ts(outer_start)
        )
    };
    f.details.insert("outer_handler".into(), outer_handler.into());
    f.details.insert("outer_start_ns".into(), outer_start.into());
    f.details.insert("outer_end_ns".into(), ev.ts_ns.into());
    f.details.insert("after_fault_in_nmi".into(), after_fault.into());
    f.details.insert("era".into(), replay.model.era().into());
    f.evidence.push(line.to_string());
    f
}
