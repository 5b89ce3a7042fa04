//! [`Analyzer`]: one trace's events through the replay, the NMI instance
//! builder and the detectors, in one pass, into a [`Report`].
//!
//! The order is fixed: for each event the replay applies it; the builder
//! groups `nmi_handler` events and attributes faults and dumps; each finished
//! NMI goes to the latch, then the switch-window detector (whose verdict is
//! on the instance for the rest), then the faults-in-NMI and periodic
//! detectors. The timeline observes the same stream; no detector reads it.

use crate::counts;
use crate::coverage;
use crate::detect::console::Console;
use crate::detect::exposure::Exposure;
use crate::detect::faults::FaultsInNmi;
use crate::detect::latch::Latch;
use crate::detect::periodic::PeriodicBeats;
use crate::detect::slow_handler::SlowHandlers;
use crate::detect::switch_window::SwitchWindows;
use crate::detect::{Cx, Detector, HandlerEvent};
use crate::finding::{Findings, Severity};
use crate::nmi::instance::{handler_name, Instance, InstanceBuilder};
use crate::report::{HandlerStats, ModelBlock, NmisBlock, Report};
use crate::timeline;
use crate::{Config, DEFAULT_B2B_THRESHOLD_NS};
use nmitrace_parser::model::{Modelled, NmiHandler};
use nmitrace_parser::{Event, EventKind, Notice, ParseStats, Sink, TraceInfo};
use nmitrace_replay::{event_line, KernelModel, Outcome, Replay};
use std::collections::BTreeMap;

/// Runs every analysis over one trace.
pub struct Analyzer {
    config: Config,
    counts: counts::EventCounts,
    notices: counts::NoticeLog,
    replay: Replay,
    builder: InstanceBuilder,
    latch: Latch,
    window: SwitchWindows,
    faults: FaultsInNmi,
    periodic: PeriodicBeats,
    slow: SlowHandlers,
    exposure: Exposure,
    console: Console,
    findings: Findings,
    started: bool,
    /// The trace's kernel/arch, when known before the events.
    trace_kernel: Option<String>,
    trace_arch: Option<String>,
    /// Bounded per-CPU history for charts and tables (not in the JSON).
    timeline: timeline::Timeline,
    /// Kernel symbols (trace.dat kallsyms): handler addresses → names.
    symbols: Option<std::sync::Arc<nmitrace_parser::tracedat::symbols::Symbols>>,
    /// The trace is not x86's: counts only.
    foreign: bool,
    /// Console lines about NMIs (evidence of NMIs without nmi_handler events).
    console_nmi_lines: u64,
}

/// What the detectors may look at, borrowed field by field from the analyzer.
macro_rules! cx {
    ($s:ident, $faults_traced:expr) => {
        Cx {
            replay: &$s.replay,
            config: &$s.config,
            tol: $s.builder.tol(),
            b2b_threshold_ns: $s.builder.b2b_threshold(),
            faults_traced: $faults_traced,
        }
    };
}

impl Analyzer {
    pub fn new(config: Config) -> Analyzer {
        let model =
            KernelModel::choose(None, None, config.kernel.as_deref(), config.arch.as_deref());
        Analyzer {
            builder: InstanceBuilder::new(config.b2b_threshold_ns),
            config,
            counts: counts::EventCounts::default(),
            notices: counts::NoticeLog::default(),
            replay: Replay::new(model),
            latch: Latch::default(),
            window: SwitchWindows::default(),
            faults: FaultsInNmi,
            periodic: PeriodicBeats::default(),
            slow: SlowHandlers::default(),
            exposure: Exposure::default(),
            console: Console::default(),
            findings: Findings::default(),
            started: false,
            trace_kernel: None,
            trace_arch: None,
            timeline: timeline::Timeline::default(),
            symbols: None,
            foreign: false,
            console_nmi_lines: 0,
        }
    }

    /// An analyzer for a trace whose header was probed (trace.dat UNAME):
    /// the kernel-era model follows the trace unless `--kernel`/`--arch` say otherwise.
    pub fn for_trace(config: Config, info: &TraceInfo) -> Analyzer {
        let mut a = Analyzer::new(config);
        a.set_trace_info(info);
        a
    }

    /// Tell the analyzer what the trace says about itself (before any event).
    pub fn set_trace_info(&mut self, info: &TraceInfo) {
        if self.started {
            return;
        }
        self.trace_kernel = info.kernel.clone();
        self.trace_arch = info.arch.clone();
        let model = KernelModel::choose(
            info.kernel.as_deref(),
            info.arch.as_deref(),
            self.config.kernel.as_deref(),
            self.config.arch.as_deref(),
        );
        self.foreign = model.foreign_arch.is_some();
        self.replay = Replay::new(model);
    }

    /// The replay engine (state after the events fed so far).
    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    fn model_block(&self, info: &TraceInfo) -> ModelBlock {
        use crate::report::{AssumedValue::*, Assumption, ReplayCounts};
        let m = &self.replay.model;
        let mut notes = m.notes.clone();
        if self.trace_kernel.is_none() {
            if let Some(k) = &info.kernel {
                if m.source != nmitrace_replay::ModelSource::CommandLine {
                    notes.push(format!("the trace says kernel {k} but it was not known before the replay; the model used {}", m.version_text));
                }
            }
        }
        let pgd = &m.pgd;
        let s = &self.replay.stats;
        let vr_source = if pgd.range_from_trace {
            "trace"
        } else {
            "default"
        };
        let b2b_source = if self.config.b2b_threshold_ns == DEFAULT_B2B_THRESHOLD_NS {
            "default"
        } else {
            "command line"
        };
        let assumptions = vec![
            Assumption {
                what: "kernel",
                value: Text(m.version_text.clone()),
                source: m.source.name().into(),
            },
            Assumption {
                what: "arch",
                value: Text(
                    m.foreign_arch
                        .clone()
                        .unwrap_or_else(|| m.arch.name().to_string()),
                ),
                source: match (m.arch_source, info.arch_from) {
                    (nmitrace_replay::ModelSource::Trace, Some(from)) => format!("trace: {from}"),
                    (s, _) => s.name().to_string(),
                },
            },
            Assumption {
                what: "vmalloc_range",
                value: Text(format!("{:#x}-{:#x}", pgd.vmalloc_start, pgd.vmalloc_end)),
                source: vr_source.into(),
            },
            Assumption {
                what: "b2b_threshold_ns",
                value: Number(self.config.b2b_threshold_ns),
                source: b2b_source.into(),
            },
        ];
        ModelBlock {
            kernel: m.version_text.clone(),
            arch: m.arch.name(),
            source: m.source_name(),
            arch_source: m.arch_source.name(),
            foreign_arch: m.foreign_arch.clone(),
            assumptions,
            what_if: m.what_if,
            trace_kernel: m.trace_kernel.clone().or_else(|| info.kernel.clone()),
            label: m.label(),
            era: m.era(),
            page_directory: pgd.kind.name(),
            vmalloc_range: [
                format!("{:#x}", pgd.vmalloc_start),
                format!("{:#x}", pgd.vmalloc_end),
            ],
            vmalloc_range_from: if pgd.range_from_trace {
                "alloc_vmap_area vstart/vend"
            } else {
                "default"
            },
            vmalloc_entries: pgd.entries(),
            lazy_vmalloc_faults: m.lazy_vmalloc_faults,
            nested_nmi_corrupts_stack: m.nested_nmi_corrupts_stack,
            vmalloc_fault_uses_active_mm: m.vmalloc_fault_uses_active_mm,
            b2b_threshold_ns: self.config.b2b_threshold_ns,
            switch_windows_from: if self.replay.tlb_flush_seen {
                "tlb_flush reason 0"
            } else {
                "sched_switch (no tlb_flush events: lower confidence)"
            },
            replay: ReplayCounts {
                context_switches: s.switches,
                switch_windows: s.windows,
                fallback_windows: s.fallback_windows,
                non_switch_cr3_writes: s.exec_flushes,
                forks: s.forks,
                execs: s.execs,
                lazy_vmalloc_syncs: s.lazy_syncs,
                eager_vmalloc_syncs: s.eager_syncs,
                vmalloc_entries_opened: self.replay.vmalloc.opened.len(),
                b2b_nmis: self.latch.b2b,
                switch_windows_refuted_by_nmi_dump: self.window.refuted_by_dump,
                switch_windows_refuted_by_trace: self.window.refuted_by_trace,
                switches_contradicted: s.windows_contradicted,
                vmalloc_exposures_not_reported: self.exposure.suppressed,
            },
            notes,
        }
    }

    /// A finished NMI, through the detectors in their fixed order.
    fn instance_done(&mut self, mut inst: Instance) {
        let cx = cx!(self, false);
        let out = &mut self.findings;
        self.latch.on_instance(&mut inst, &cx, out);
        self.window.on_instance(&mut inst, &cx, out);
        self.faults.on_instance(&mut inst, &cx, out);
        self.periodic.on_instance(&mut inst, &cx, out);
        if !inst.handlerless {
            self.timeline.nmi(&inst);
        }
    }

    /// An `nmi_handler` event named `name`.
    fn handler(&mut self, ev: &Event<'_>, h: &NmiHandler<'_>, name: &str) {
        if ev.cpu as usize >= nmitrace_replay::MAX_CPUS {
            return;
        }
        let (step, dump) = self.builder.handler(ev, h, name);
        let he = HandlerEvent {
            ev,
            h,
            name,
            dump: dump.as_ref(),
        };
        {
            let cx = cx!(self, false);
            let open = self
                .builder
                .open(ev.cpu)
                .expect("the handler joined an instance");
            self.slow.on_handler(&he, open, &cx, &mut self.findings);
        }
        if let Some(done) = step.finished {
            self.instance_done(done);
        }
        let cx = cx!(self, false);
        let open = self
            .builder
            .open(ev.cpu)
            .expect("the handler joined an instance");
        self.window.on_handler(&he, open, &cx, &mut self.findings);
    }

    /// Close the analyses and build the report.
    pub fn finish(self, path: &str, info: &TraceInfo, stats: &ParseStats) -> Report {
        self.finish_analysis(path, info, stats).report
    }

    /// Close the analyses: the report and the timeline.
    pub fn finish_analysis(
        mut self,
        path: &str,
        info: &TraceInfo,
        stats: &ParseStats,
    ) -> crate::Analysis {
        for cpu in 0..self.builder.cpus() {
            if let Some(inst) = self.builder.close(cpu) {
                self.instance_done(inst);
            }
            self.latch.end_cpu(cpu, &mut self.findings);
            if self.builder.has_flagged(cpu) {
                if let Some(inst) = self.builder.leave_nmi(cpu) {
                    self.instance_done(inst);
                }
            }
        }
        let faults_traced =
            self.counts.has_name("page_fault_kernel") || self.counts.has_name("page_fault_user");
        {
            let cx = cx!(self, faults_traced);
            let out = &mut self.findings;
            self.window.finish(&cx, out);
            self.console.finish(&cx, out);
            self.exposure.finish(&cx, out);
        }
        if self.exposure.suppressed > 0 {
            self.replay.model.notes.push(format!(
                "{} vmalloc_exposure inference(s) not reported: the trace records page faults, so faults in NMI are observed instead",
                self.exposure.suppressed
            ));
        }
        if self.replay.stats.windows_contradicted > 0 {
            self.replay.model.notes.push(format!(
                "{} context switch(es) never completed in the trace: after sched_switch, prev went on emitting events that cannot happen inside a switch (irqs are off from sched_switch to switch_to) and next never ran; the trace lost events there without a marker, and no switch window is reported for them",
                self.replay.stats.windows_contradicted
            ));
        }
        let mut report = Report::new(path, info);
        report.input.model = self.model_block(info);
        // `input.kernel`/`arch`: what the trace says, null when it does not;
        // the model block says what was assumed and from where.
        let seen_base = coverage::Seen {
            nmi_handlers: self.counts.has_name("nmi_handler"),
            nmi_evidence: self.counts.nmi_context_events > 0 || self.console_nmi_lines > 0,
            page_faults: faults_traced,
            flags_known: self.counts.flags_known,
            sched_switch: self.counts.has_name("sched_switch"),
            tlb_flush: self.replay.tlb_flush_seen || self.counts.has_name("tlb_flush"),
            vmalloc_events: self.counts.has_name("alloc_vmap_area")
                || self.counts.has_name("percpu_create_chunk"),
            lazy_kernel: self.replay.model.lazy_vmalloc_faults,
            lost_markers: 0,
            lost_events: 0,
            foreign_arch: None,
            errors: 0,
            warnings: 0,
        };
        report.nmis = self.nmis_block();
        report.events = self.counts.into_block(&self.notices);
        report.parse = self.notices.parse_block(stats);
        report.findings = self.findings.into_vec();
        report.findings.extend(self.notices.data_loss_findings());
        report
            .findings
            .extend(self.notices.overwritten_finding(info.overwritten));
        report.events.overwritten_events = info
            .overwritten
            .unwrap_or(0)
            .max(self.notices.overwritten_total);
        report.finalize();
        report.coverage = coverage::assess(&coverage::Seen {
            lost_markers: report.events.lost_event_markers,
            lost_events: report.events.lost_events,
            foreign_arch: self.replay.model.foreign_arch.as_deref(),
            errors: report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count(),
            warnings: report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
            ..seen_base
        });
        self.timeline.finish(report.events.last_ts_ns, &self.replay);
        crate::Analysis {
            report,
            timeline: self.timeline,
        }
    }

    fn nmis_block(&self) -> NmisBlock {
        let mut by_handler = BTreeMap::new();
        for (n, a) in &self.builder.handlers {
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
        NmisBlock {
            instances: self.latch.instances,
            by_handler,
        }
    }

    #[cold]
    fn modelled(&mut self, ev: &Event<'_>) {
        let m = Modelled::from_event(ev);
        let outcome = self.replay.apply(ev, &m);
        self.timeline.after_apply(ev, &outcome, &self.replay);
        match outcome {
            Outcome::KernelFault(fi) => {
                // Before the ftrace NMI flag (4.6) a fault in an NMI prints `h`:
                // it is placed by the handlers' intervals, like a format without flags.
                if !ev.ctx.known
                    || ev.ctx.nmi
                    || (ev.ctx.hardirq && !self.replay.model.ftrace_nmi_flag)
                {
                    self.builder.candidate(ev, fi, &self.replay);
                }
            }
            Outcome::ExposedLoad { .. } | Outcome::EntryOpened(_) => {
                let cx = cx!(self, false);
                self.exposure
                    .on_outcome(ev, &outcome, &cx, &mut self.findings);
            }
            _ => {}
        }
        match m {
            Modelled::NmiHandler(mut h) => {
                // trace.dat gives the handler's address: name it from kallsyms
                let symbols = if h.handler.is_empty() {
                    self.symbols.clone()
                } else {
                    None
                };
                if let Some(name) = h.handler_addr.and_then(|a| symbols.as_deref()?.name(a)) {
                    h.handler = name;
                }
                let name = handler_name(&h).into_owned();
                self.timeline.handler_duration(&name, h.delta_ns);
                self.handler(ev, &h, &name)
            }
            Modelled::Console { msg } => {
                if msg.contains("NMI") {
                    self.console_nmi_lines += 1;
                }
                // Before the ftrace NMI flag (4.6) an NMI's events print `h`
                // (nmi_enter adds HARDIRQ_OFFSET): inside a handler's interval
                // they are NMI context, which the dump's attachment checks.
                let nmi = !ev.ctx.known
                    || ev.ctx.nmi
                    || (ev.ctx.hardirq && !self.replay.model.ftrace_nmi_flag);
                self.builder.dumps.console(ev, msg, nmi, || event_line(ev));
                // An oops counts as in NMI only where the flags say so.
                let known_nmi = ev.ctx.known && nmi;
                self.console
                    .log
                    .add(ev.ts_ns, ev.cpu, known_nmi, msg, event_line(ev))
            }
            _ => {}
        }
    }
}

impl Sink for Analyzer {
    #[inline]
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.started = true;
        self.counts.add(ev);
        if self.foreign {
            // A non-x86 trace: the x86 NMI model does not apply; counts only.
            return nmitrace_parser::CONTINUE;
        }
        self.replay.touch(ev);
        if self.window.pending() {
            self.window.settle(ev.cpu, &self.replay);
        }
        if self.builder.flagged_pending > 0 && ev.ctx.known && !ev.ctx.nmi {
            if let Some(inst) = self.builder.leave_nmi(ev.cpu) {
                self.instance_done(inst);
            }
        }
        // Dispatched on the kind the reader resolved (trace.dat: from the
        // format id). The hot path: user-mode page faults are never in NMI
        // and never sync kernel entries; the per-CPU touch above is all they need.
        match ev.kind {
            EventKind::PageFaultUser | EventKind::Other => return nmitrace_parser::CONTINUE,
            // Interrupt entry/exit rebuild the context stack where flags are missing.
            EventKind::IrqEntry | EventKind::IrqExit if ev.ctx.known => {
                return nmitrace_parser::CONTINUE
            }
            EventKind::TlbFlush if !self.replay.flush_matters(ev) => {
                // No switch pending on this CPU and not the idle task: whatever
                // the reason, this flush changes nothing the analyses use (and
                // its fields need not be decoded).
                self.timeline
                    .after_apply(ev, &Outcome::Nothing, &self.replay);
                return nmitrace_parser::CONTINUE;
            }
            _ => {}
        }
        self.modelled(ev);
        nmitrace_parser::CONTINUE
    }

    fn symbols(&mut self, s: &std::sync::Arc<nmitrace_parser::tracedat::symbols::Symbols>) {
        self.symbols = Some(s.clone());
    }

    /// What `event` does with a user-mode page fault or an event no analysis
    /// models, in task or softirq context with the pid the CPU's previous
    /// such event had: it counts it and notes the pid as the CPU's current
    /// task, which it is already. Without a context (text without flags),
    /// the same holds for the same event of the same pid right after
    /// itself: the replay tells such events by name there
    /// (`SwitchWindow::may_run_inside`), so the second changes nothing the
    /// first did not. Such events can come as counts.
    fn countable(&self, kind: EventKind) -> bool {
        matches!(kind, EventKind::PageFaultUser | EventKind::Other)
    }

    fn counted(&mut self, c: &nmitrace_parser::Counted<'_>) -> nmitrace_parser::Flow {
        self.counts.add_counted(c);
        nmitrace_parser::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        if let Notice::LostEvents {
            cpu, count, origin, ..
        } = n
        {
            if self.counts.cpu_events(*cpu) == 0 {
                // Lost before the CPU's first event: the ring buffer (overwrite
                // mode, a flight recorder) overwrote the past; no gap in the trace.
                self.notices.add_overwritten(*cpu, *count, *origin);
                return;
            }
        }
        self.notices.add(n);
        if let Notice::LostEvents { cpu, .. } = n {
            // What happened on the CPU meanwhile is unknown: no switch window
            // or back-to-back judgement spans the gap.
            self.replay.forget_cpu(*cpu);
            if let Some(inst) = self.builder.forget_cpu(*cpu) {
                self.instance_done(inst);
            }
            let cx = cx!(self, false);
            self.latch.on_lost(*cpu, &cx, &mut self.findings);
        }
    }
}
