//! nmitrace-analyses: replayed events → findings and the report of SPEC §4.
//!
//! [`Analyzer`] is a [`Sink`]: feed it a trace's events, then
//! [`Analyzer::finish`] gives the [`Report`]. It drives the replay engine
//! (`nmitrace-replay`) and the analyses:
//! - [`nmi_latch`]: NMI instances, `default_do_nmi` replay (unknown,
//!   swallowed, lost, nested NMIs), slow handlers, handler statistics;
//! - [`vmalloc_fault`]: faults inside NMIs;
//! - [`cr3_window`]: NMIs inside context-switch windows;
//! - [`exposure`]: mms lacking vmalloc entries opened during the trace;
//! - [`periodic`]: periodic NMI sources missing beats;
//! - [`console`]: the kernel's own console lines as ground truth.

pub mod console;
pub mod counts;
pub mod coverage;
pub mod cr3_window;
pub mod exposure;
pub mod findings;
pub mod html_report;
pub mod nmi_dump;
pub mod nmi_latch;
pub mod periodic;
#[cfg(feature = "plots")]
pub mod plots;
pub mod quantile;
pub mod report;
#[cfg(feature = "tables")]
pub mod tables;
pub mod text_report;
pub mod timeline;
pub mod vmalloc_fault;

use console::{ConsoleLog, ConsoleNmi};
use nmitrace_parser::model::Modelled;
use nmitrace_parser::{Event, Notice, ParseStats, Sink, TraceInfo};
use nmitrace_replay::{event_line, KernelModel, Outcome, Replay};
pub use report::{Finding, Report};
use serde_json::json;

/// Options that change what the analyses conclude.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--kernel VERSION`: kernel release to model (overrides what the trace says).
    pub kernel: Option<String>,
    /// `--arch x86_64|x86_32|x86_32-pae`.
    pub arch: Option<String>,
    /// Back-to-back threshold: an NMI starting within this many ns of the
    /// previous one's end on the same CPU is b2b (SPEC §3.6).
    pub b2b_threshold_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config { kernel: None, arch: None, b2b_threshold_ns: DEFAULT_B2B_THRESHOLD_NS }
    }
}

/// Default back-to-back NMI threshold in ns.
pub const DEFAULT_B2B_THRESHOLD_NS: u64 = 2_000;

/// Runs every analysis over one trace.
pub struct Analyzer {
    config: Config,
    counts: counts::EventCounts,
    notices: counts::NoticeLog,
    replay: Replay,
    nmi: nmi_latch::NmiLatch,
    exposure: exposure::Exposure,
    console: ConsoleLog,
    findings: findings::Findings,
    started: bool,
    /// vmalloc_exposure findings dropped because the trace records page faults.
    exposure_suppressed: u64,
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

impl Analyzer {
    pub fn new(config: Config) -> Analyzer {
        let model = KernelModel::choose(None, None, config.kernel.as_deref(), config.arch.as_deref());
        Analyzer {
            nmi: nmi_latch::NmiLatch::new(config.b2b_threshold_ns),
            config,
            counts: counts::EventCounts::default(),
            notices: counts::NoticeLog::default(),
            replay: Replay::new(model),
            exposure: exposure::Exposure::default(),
            console: ConsoleLog::default(),
            findings: findings::Findings::default(),
            started: false,
            exposure_suppressed: 0,
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

    fn model_json(&self, info: &TraceInfo) -> serde_json::Value {
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
        let vr_source = if pgd.range_from_trace { "trace" } else { "default" };
        let b2b_source = if self.config.b2b_threshold_ns == DEFAULT_B2B_THRESHOLD_NS { "default" } else { "command line" };
        let assumptions = json!([
            {"what": "kernel", "value": m.version_text, "source": m.source.name()},
            {"what": "arch", "value": m.foreign_arch.clone().unwrap_or_else(|| m.arch.name().to_string()), "source": match (m.arch_source, info.arch_from) {
                (nmitrace_replay::ModelSource::Trace, Some(from)) => format!("trace: {from}"),
                (s, _) => s.name().to_string(),
            }},
            {"what": "vmalloc_range", "value": format!("{:#x}-{:#x}", pgd.vmalloc_start, pgd.vmalloc_end), "source": vr_source},
            {"what": "b2b_threshold_ns", "value": self.config.b2b_threshold_ns, "source": b2b_source},
        ]);
        json!({
            "kernel": m.version_text,
            "arch": m.arch.name(),
            "source": m.source_name(),
            "arch_source": m.arch_source.name(),
            "foreign_arch": m.foreign_arch,
            "assumptions": assumptions,
            "what_if": m.what_if,
            "trace_kernel": m.trace_kernel.clone().or_else(|| info.kernel.clone()),
            "label": m.label(),
            "era": m.era(),
            "page_directory": pgd.kind.name(),
            "vmalloc_range": [format!("{:#x}", pgd.vmalloc_start), format!("{:#x}", pgd.vmalloc_end)],
            "vmalloc_range_from": if pgd.range_from_trace { "alloc_vmap_area vstart/vend" } else { "default" },
            "vmalloc_entries": pgd.entries(),
            "lazy_vmalloc_faults": m.lazy_vmalloc_faults,
            "nested_nmi_corrupts_stack": m.nested_nmi_corrupts_stack,
            "vmalloc_fault_uses_active_mm": m.vmalloc_fault_uses_active_mm,
            "b2b_threshold_ns": self.config.b2b_threshold_ns,
            "switch_windows_from": if self.replay.tlb_flush_seen { "tlb_flush reason 0" } else { "sched_switch (no tlb_flush events: lower confidence)" },
            "replay": {
                "context_switches": s.switches,
                "switch_windows": s.windows,
                "fallback_windows": s.fallback_windows,
                "non_switch_cr3_writes": s.exec_flushes,
                "forks": s.forks,
                "execs": s.execs,
                "lazy_vmalloc_syncs": s.lazy_syncs,
                "vmalloc_entries_opened": self.replay.vmalloc.opened.len(),
                "b2b_nmis": self.nmi.b2b,
                "switch_windows_refuted_by_nmi_dump": self.nmi.refuted_windows,
                "switch_windows_refuted_by_trace": self.nmi.refuted_by_trace,
                "switches_contradicted": s.windows_contradicted,
                "vmalloc_exposures_not_reported": self.exposure_suppressed,
            },
            "notes": notes,
        })
    }

    /// Close the analyses and build the report.
    pub fn finish(mut self, path: &str, info: &TraceInfo, stats: &ParseStats) -> Report {
        self.nmi.finish(&self.replay, &mut self.findings);
        self.reconcile_console();
        // Findings the NMI dumps refuted once every dump was read.
        if !self.nmi.drop_findings.is_empty() {
            let drop: std::collections::BTreeSet<usize> = self.nmi.drop_findings.iter().copied().collect();
            let mut i = 0;
            self.findings.list.retain(|_| {
                i += 1;
                !drop.contains(&(i - 1))
            });
        }
        // Exposure is an inference for traces that cannot show the faults:
        // with page-fault tracepoints recorded, faults are observed instead.
        let faults_traced = self.counts.has_name("page_fault_kernel") || self.counts.has_name("page_fault_user");
        if faults_traced {
            let before = self.findings.list.len();
            self.findings.list.retain(|f| f.kind != "vmalloc_exposure");
            self.exposure_suppressed = (before - self.findings.list.len()) as u64;
        } else {
            self.exposure.finish(&mut self.findings);
        }
        if self.exposure_suppressed > 0 {
            self.replay.model.notes.push(format!(
                "{} vmalloc_exposure inference(s) not reported: the trace records page faults, so faults in NMI are observed instead",
                self.exposure_suppressed
            ));
        }
        if self.replay.stats.windows_contradicted > 0 {
            self.replay.model.notes.push(format!(
                "{} context switch(es) never completed in the trace: after sched_switch, prev went on emitting events that cannot happen inside a switch (irqs are off from sched_switch to switch_to) and next never ran; the trace lost events there without a marker, and no switch window is reported for them",
                self.replay.stats.windows_contradicted
            ));
        }
        let mut report = Report::new(path, info);
        report.input.model = self.model_json(info);
        // `input.kernel`/`arch`: what the trace says, null when it does not;
        // the model block says what was assumed and from where.
        let seen_base = coverage::Seen {
            nmi_handlers: self.counts.has_name("nmi_handler"),
            nmi_evidence: self.counts.nmi_context_events > 0 || self.console_nmi_lines > 0,
            page_faults: self.counts.has_name("page_fault_kernel") || self.counts.has_name("page_fault_user"),
            flags_known: self.counts.flags_known,
            sched_switch: self.counts.has_name("sched_switch"),
            tlb_flush: self.replay.tlb_flush_seen || self.counts.has_name("tlb_flush"),
            vmalloc_events: self.counts.has_name("alloc_vmap_area") || self.counts.has_name("percpu_create_chunk"),
            lazy_kernel: self.replay.model.lazy_vmalloc_faults,
            lost_markers: 0,
            lost_events: 0,
            foreign_arch: None,
            errors: 0,
            warnings: 0,
        };
        report.events = self.counts.into_block(&self.notices);
        report.parse = report::ParseBlock::new(stats, &self.notices);
        report.nmis = self.nmi.block();
        report.findings = self.findings.into_vec();
        report.findings.extend(self.notices.data_loss_findings());
        report.findings.extend(self.notices.overwritten_finding(info.overwritten));
        report.events.overwritten_events = info.overwritten.unwrap_or(0).max(self.notices.overwritten_total);
        report.finalize();
        report.coverage = coverage::assess(&coverage::Seen {
            lost_markers: report.events.lost_event_markers,
            lost_events: report.events.lost_events,
            foreign_arch: self.replay.model.foreign_arch.as_deref(),
            errors: report.findings.iter().filter(|f| f.severity == "error").count(),
            warnings: report.findings.iter().filter(|f| f.severity == "warning").count(),
            ..seen_base
        });
        self.timeline.nmis = std::mem::take(&mut self.nmi.marks);
        self.timeline.finish(report.events.last_ts_ns, &self.replay);
        report.timeline = self.timeline;
        report
    }

    /// Console lines are ground truth: they confirm or correct the replay.
    fn reconcile_console(&mut self) {
        let lines = std::mem::take(&mut self.console.lines);
        for c in lines {
            match c {
                ConsoleNmi::Unknown { ts_ns, cpu, reason, line } => {
                    // The empty NMI this line reports: the latest on that CPU before the line.
                    let hit = self
                        .nmi
                        .empty_instances
                        .iter()
                        .filter(|(c, start, _)| *c == cpu && *start <= ts_ns && ts_ns - *start < 10_000_000_000)
                        .max_by_key(|(_, start, _)| *start)
                        .map(|x| x.2);
                    let reason_s = reason.map(|r| format!("{r:02x}"));
                    match hit {
                        Some(i) => {
                            let f = &mut self.findings.list[i];
                            if f.kind == "swallowed_nmi" {
                                f.kind = "unknown_nmi".into();
                                f.severity = "warning".into();
                                f.message = format!(
                                    "NMI on CPU {cpu} that no handler claimed; the replay judged it swallowed (b2b with swallow_nmi) but the kernel printed it as unknown: the b2b threshold does not match this machine's timing (--b2b-threshold-ns)"
                                );
                            }
                            f.details.insert("console_confirmed".into(), true.into());
                            f.details.insert("reason".into(), reason_s.into());
                            f.evidence.push(line);
                            f.confidence = "observed".into();
                        }
                        None => {
                            let mut f = Finding::new("unknown_nmi", "warning", "observed");
                            f.ts_ns = Some(ts_ns);
                            f.cpu = Some(cpu);
                            f.message = format!(
                                "the kernel reported an unknown NMI on CPU {cpu} (reason {}): no handler claimed it; look for an external source (SERR/IOCHK, BMC, watchdog) or enable the nmi:nmi_handler tracepoint to see the handlers",
                                reason_s.clone().unwrap_or_else(|| "?".into())
                            );
                            f.details.insert("console_confirmed".into(), true.into());
                            f.details.insert("reason".into(), reason_s.into());
                            f.evidence.push(line);
                            self.findings.push(f);
                        }
                    }
                }
                ConsoleNmi::TooLong { ts_ns, cpu, handler, msecs, line } => {
                    let want = (msecs * 1e6) as u64;
                    // 5.6–5.9 (and the 4.19.y/5.4.y backports of 248ed51048c4
                    // before f94c91f7ba3b) printed the previous maximum, not
                    // this duration: there only the handler identifies the call.
                    let v = self.replay.model.version;
                    let value_printed = !((v.0, v.1) >= (5, 6) && (v.0, v.1) < (5, 10));
                    let hit = self
                        .findings
                        .list
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| {
                            f.kind == "slow_nmi_handler"
                                && f.details.get("handler").and_then(|h| h.as_str()) == Some(handler.as_str())
                                && (!value_printed || f.details.get("delta_ns").and_then(|d| d.as_u64()).is_some_and(|d| d.abs_diff(want) < 1_000_000))
                                && f.ts_ns.is_some_and(|t| t <= ts_ns)
                                && !f.details.contains_key("console_confirmed")
                        })
                        .max_by_key(|(_, f)| f.ts_ns)
                        .map(|(i, _)| i);
                    match hit {
                        Some(i) => {
                            let f = &mut self.findings.list[i];
                            f.details.insert("console_confirmed".into(), true.into());
                            f.evidence.push(line);
                        }
                        None => {
                            let mut f = Finding::new("slow_nmi_handler", "warning", "observed");
                            f.ts_ns = Some(ts_ns);
                            f.cpu = Some(cpu);
                            f.message = format!(
                                "the kernel reported NMI handler {handler} took {msecs:.3} ms (over the 1 ms nmi_longest_ns): NMIs were blocked meanwhile"
                            );
                            f.details.insert("handler".into(), handler.into());
                            f.details.insert("delta_ns".into(), want.into());
                            f.details.insert("console_confirmed".into(), true.into());
                            f.evidence.push(line);
                            self.findings.push(f);
                        }
                    }
                }
                ConsoleNmi::VmallocWarn { ts_ns, cpu, line } => {
                    let hit = self.latest_fault_finding(cpu, ts_ns, &["nmi_vmalloc_fault"]);
                    let why = format!("the kernel's WARN_ON_ONCE(in_nmi()) in vmalloc_fault: {line}");
                    match hit {
                        Some(i) => {
                            let f = &mut self.findings.list[i];
                            f.details.insert("confirmed_by".into(), why.into());
                            f.evidence.push(line);
                        }
                        None => {
                            let m = &self.replay.model;
                            let sev = if m.nested_nmi_corrupts_stack || !m.vmalloc_fault_handled { "error" } else { "warning" };
                            let mut f = Finding::new("nmi_vmalloc_fault", sev, "observed");
                            f.ts_ns = Some(ts_ns);
                            f.cpu = Some(cpu);
                            f.message = format!(
                                "the kernel warned that vmalloc_fault ran in NMI context on CPU {cpu} (WARN_ON_ONCE(in_nmi()), x86_64 2.6.37-5.1, x86_32 2.6.37-4.18): a lazy vmalloc sync inside an NMI; the trace has no page-fault event for it (record exceptions:page_fault_kernel to see the address). It warns once per boot: later ones are silent"
                            );
                            f.details.insert("confirmed_by".into(), why.into());
                            f.evidence.push(line);
                            self.findings.push(f);
                        }
                    }
                }
                ConsoleNmi::Oops { ts_ns, cpu, nmi, address, line } => {
                    let hit = self.latest_fault_finding(cpu, ts_ns, &["nmi_vmalloc_fault", "nmi_page_fault"]);
                    let why = format!("the kernel oopsed on the fault: {line}");
                    match hit {
                        Some(i) => {
                            let f = &mut self.findings.list[i];
                            f.severity = "error".into();
                            f.details.insert("confirmed_by".into(), why.into());
                            f.evidence.push(line);
                        }
                        None if nmi => {
                            let mut f = Finding::new("nmi_page_fault", "error", "observed");
                            f.ts_ns = Some(ts_ns);
                            f.cpu = Some(cpu);
                            let addr = address.map(|a| format!("{a:#x}")).unwrap_or_else(|| "?".into());
                            f.message = format!(
                                "the kernel oopsed on a page fault at {addr} in NMI context on CPU {cpu}: an unhandled fault inside an NMI (the trace has no page-fault event for it)"
                            );
                            f.details.insert("address".into(), addr.into());
                            f.details.insert("confirmed_by".into(), why.into());
                            f.evidence.push(line);
                            self.findings.push(f);
                        }
                        None => {}
                    }
                }
            }
        }
    }

    /// The latest fault-in-NMI finding of `kinds` on `cpu` at most 10 ms before `ts_ns`.
    fn latest_fault_finding(&self, cpu: u32, ts_ns: u64, kinds: &[&str]) -> Option<usize> {
        self.findings
            .list
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                kinds.contains(&f.kind.as_str()) && f.cpu == Some(cpu) && f.ts_ns.is_some_and(|t| t <= ts_ns && ts_ns - t < 10_000_000) && !f.details.contains_key("confirmed_by")
            })
            .max_by_key(|(_, f)| f.ts_ns)
            .map(|(i, _)| i)
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
                if !ev.ctx.known || ev.ctx.nmi || (ev.ctx.hardirq && !self.replay.model.ftrace_nmi_flag) {
                    self.nmi.candidate(ev, fi, &self.replay);
                }
            }
            Outcome::ExposedLoad { mm, lacking } => {
                self.exposure.on_load(ev, mm, lacking, &self.replay, &mut self.findings);
            }
            _ => {}
        }
        match m {
            Modelled::NmiHandler(mut h) => {
                // trace.dat gives the handler's address: name it from kallsyms
                let symbols = if h.handler.is_empty() { self.symbols.clone() } else { None };
                if let Some(name) = h.handler_addr.and_then(|a| symbols.as_deref()?.name(a)) {
                    h.handler = name;
                }
                self.timeline.handler_duration(&nmi_latch::handler_name(&h), h.delta_ns);
                self.nmi.handler(ev, &h, &self.replay, &mut self.findings)
            }
            Modelled::Console { msg } => {
                if msg.contains("NMI") {
                    self.console_nmi_lines += 1;
                }
                // Before the ftrace NMI flag (4.6) an NMI's events print `h`
                // (nmi_enter adds HARDIRQ_OFFSET): inside a handler's interval
                // they are NMI context, which the dump's attachment checks.
                let nmi = !ev.ctx.known || ev.ctx.nmi || (ev.ctx.hardirq && !self.replay.model.ftrace_nmi_flag);
                self.nmi.dumps.console(ev, msg, nmi, || event_line(ev));
                // An oops counts as in NMI only where the flags say so.
                let known_nmi = ev.ctx.known && nmi;
                self.console.add(ev.ts_ns, ev.cpu, known_nmi, msg, event_line(ev))
            }
            _ => {}
        }
    }
}

/// Events the replay and analyses use; the rest are only counted.
#[inline]
fn modelled_name(name: &str, ctx_known: bool) -> bool {
    use nmitrace_replay::name_eq;
    let hit = match name.as_bytes().first() {
        Some(b'p') => name_eq(name, "page_fault_kernel") || name_eq(name, "percpu_create_chunk"),
        Some(b'n') => name_eq(name, "nmi_handler"),
        Some(b's') => {
            name_eq(name, "sched_switch")
                || name_eq(name, "sched_process_fork")
                || name_eq(name, "sched_process_exec")
                || name_eq(name, "sched_process_free")
        }
        Some(b't') => name_eq(name, "tlb_flush") || name_eq(name, "task_newtask"),
        Some(b'a') => name_eq(name, "alloc_vmap_area"),
        Some(b'c') => name_eq(name, "console"),
        _ => false,
    };
    // Interrupt entry/exit rebuild the context stack where flags are missing.
    hit || (!ctx_known && (name.ends_with("_entry") || name.ends_with("_exit")))
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
        if self.nmi.windows_pending > 0 {
            self.nmi.settle(ev.cpu, &self.replay);
        }
        if self.nmi.flagged_pending > 0 && ev.ctx.known && !ev.ctx.nmi {
            self.nmi.leave_nmi(ev.cpu, &self.replay, &mut self.findings);
        }
        // The hot path: user-mode page faults are never in NMI and never sync
        // kernel entries; the per-CPU touch above is all they need.
        let name = ev.name;
        if nmitrace_replay::name_eq(name, "page_fault_user") {
            return nmitrace_parser::CONTINUE;
        }
        if nmitrace_replay::name_eq(name, "tlb_flush") && !self.replay.flush_matters(ev) {
            // No switch pending on this CPU and not the idle task: whatever
            // the reason, this flush changes nothing the analyses use (and
            // its fields need not be decoded).
            self.timeline.after_apply(ev, &Outcome::Nothing, &self.replay);
            return nmitrace_parser::CONTINUE;
        }
        if !modelled_name(name, ev.ctx.known) {
            return nmitrace_parser::CONTINUE;
        }
        self.modelled(ev);
        nmitrace_parser::CONTINUE
    }

    fn symbols(&mut self, s: &std::sync::Arc<nmitrace_parser::tracedat::symbols::Symbols>) {
        self.symbols = Some(s.clone());
    }

    fn notice(&mut self, n: &Notice) {
        if let Notice::LostEvents { cpu, count, origin, .. } = n {
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
            self.nmi.forget_cpu(*cpu, &self.replay, &mut self.findings);
        }
    }
}

#[cfg(test)]
mod tests;
