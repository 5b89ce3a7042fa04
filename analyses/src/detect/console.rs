//! Console lines as ground truth: `Uhhuh. NMI received for unknown reason
//! 3d on CPU 90.` (arch/x86/kernel/nmi.c `unknown_nmi_error`), `INFO: NMI
//! handler (X) took too long to run: N msecs` (`nmi_check_duration`, 5.6+;
//! `nmi_max_handler` from irq_work 3.15–5.5), the `WARN_ON_ONCE(in_nmi())`
//! of x86 `vmalloc_fault()` (2.6.37 ebc8827f75954 until 5.2 a65c88e16f32 on
//! x86_64, 4.19 6863ea0cda87 on x86_32), and page-fault oopses
//! (`BUG: unable to handle …`, arch/x86/mm/fault.c `show_fault_oops`).

use super::{Cx, Detector};
use crate::finding::{
    Confidence, Details, FaultDetails, Finding, FindingId, Findings, Kind, LatchDetails, Severity,
    SlowDetails,
};

/// A console line the kernel printed about NMIs.
#[derive(Clone, Debug)]
pub enum ConsoleNmi {
    Unknown {
        ts_ns: u64,
        cpu: u32,
        reason: Option<u8>,
        line: String,
    },
    TooLong {
        ts_ns: u64,
        cpu: u32,
        handler: String,
        msecs: f64,
        line: String,
    },
    /// `WARNING: CPU: N PID: P at arch/x86/mm/fault.c:L vmalloc_fault+…`:
    /// the kernel caught itself syncing a vmalloc entry inside an NMI.
    VmallocWarn { ts_ns: u64, cpu: u32, line: String },
    /// `BUG: unable to handle kernel paging request at …` /
    /// `BUG: unable to handle page fault for address: …` (4.20+).
    Oops {
        ts_ns: u64,
        cpu: u32,
        nmi: bool,
        address: Option<u64>,
        line: String,
    },
}

const MAX_LINES: usize = 10_000;

#[derive(Default)]
pub struct ConsoleLog {
    pub lines: Vec<ConsoleNmi>,
}

impl ConsoleLog {
    /// `nmi`: the flags say the line was printed in NMI context.
    pub fn add(&mut self, ts_ns: u64, cpu: u32, nmi: bool, msg: &str, line: String) {
        if self.lines.len() >= MAX_LINES {
            return;
        }
        if msg.contains("WARNING:") && msg.contains("vmalloc_fault") {
            let on_cpu = msg.find("CPU: ").and_then(|i| {
                msg[i + 5..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            });
            self.lines.push(ConsoleNmi::VmallocWarn {
                ts_ns,
                cpu: on_cpu.unwrap_or(cpu),
                line,
            });
            return;
        }
        if let Some(p) = msg.find("BUG: unable to handle") {
            let rest = &msg[p..];
            let address = rest
                .rsplit([' ', ':'])
                .next()
                .map(|a| a.trim().trim_start_matches("0x"))
                .and_then(|a| u64::from_str_radix(a, 16).ok());
            self.lines.push(ConsoleNmi::Oops {
                ts_ns,
                cpu,
                nmi,
                address,
                line,
            });
            return;
        }
        if let Some(p) = msg.find("NMI received for unknown reason") {
            let rest = &msg[p + "NMI received for unknown reason".len()..];
            let mut words = rest.split_whitespace();
            let reason = words.next().and_then(|w| u8::from_str_radix(w, 16).ok());
            let on_cpu = rest.find("on CPU").and_then(|i| {
                rest[i + 6..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            });
            self.lines.push(ConsoleNmi::Unknown {
                ts_ns,
                cpu: on_cpu.unwrap_or(cpu),
                reason,
                line,
            });
        } else if let Some(p) = msg.find("NMI handler (") {
            let rest = &msg[p + "NMI handler (".len()..];
            let Some(close) = rest.find(')') else { return };
            let handler = rest[..close].to_string();
            let Some(t) = rest.find("took too long to run:") else {
                return;
            };
            let num: String = rest[t + 21..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let msecs = num.parse().unwrap_or(0.0);
            self.lines.push(ConsoleNmi::TooLong {
                ts_ns,
                cpu,
                handler,
                msecs,
                line,
            });
        }
    }
}

/// The console as ground truth: every NMI line the kernel printed confirms
/// the finding it is about (found by kind, CPU, time and handler) or, when
/// the replay had none, becomes one.
#[derive(Default)]
pub struct Console {
    pub log: ConsoleLog,
}

impl Detector for Console {
    fn finish(&mut self, cx: &Cx<'_>, out: &mut Findings) {
        for c in std::mem::take(&mut self.log.lines) {
            match c {
                ConsoleNmi::Unknown {
                    ts_ns,
                    cpu,
                    reason,
                    line,
                } => unknown(out, ts_ns, cpu, reason, line),
                ConsoleNmi::TooLong {
                    ts_ns,
                    cpu,
                    handler,
                    msecs,
                    line,
                } => too_long(out, cx, ts_ns, cpu, handler, msecs, line),
                ConsoleNmi::VmallocWarn { ts_ns, cpu, line } => {
                    vmalloc_warn(out, cx, ts_ns, cpu, line)
                }
                ConsoleNmi::Oops {
                    ts_ns,
                    cpu,
                    nmi,
                    address,
                    line,
                } => oops(out, ts_ns, cpu, nmi, address, line),
            }
        }
    }
}

/// "Uhhuh. NMI received for unknown reason": the empty NMI it reports is the
/// latest on that CPU before the line.
fn unknown(out: &mut Findings, ts_ns: u64, cpu: u32, reason: Option<u8>, line: String) {
    let reason_s = reason.map(|r| format!("{r:02x}"));
    match super::latch::empty_nmi_before(out, cpu, ts_ns).and_then(|id| out.get_mut(id)) {
        Some(f) => {
            if f.kind == Kind::SwallowedNmi {
                f.kind = Kind::UnknownNmi;
                f.severity = Severity::Warning;
                f.message = format!(
                    "NMI on CPU {cpu} that no handler claimed; the replay judged it swallowed (b2b with swallow_nmi) but the kernel printed it as unknown: the b2b threshold does not match this machine's timing (--b2b-threshold-ns)"
                );
            }
            if let Details::Latch(d) = &mut f.details {
                d.console_confirmed = Some(true);
                d.reason = Some(reason_s);
            }
            f.evidence.push(line);
            f.confidence = Confidence::Observed;
        }
        None => {
            let message = format!(
                "the kernel reported an unknown NMI on CPU {cpu} (reason {}): no handler claimed it; look for an external source (SERR/IOCHK, BMC, watchdog) or enable the nmi:nmi_handler tracepoint to see the handlers",
                reason_s.clone().unwrap_or_else(|| "?".into())
            );
            let details = Details::Latch(Box::new(LatchDetails {
                console_confirmed: Some(true),
                reason: Some(reason_s),
                ..Default::default()
            }));
            out.push(console_finding(
                Kind::UnknownNmi,
                Severity::Warning,
                details,
                ts_ns,
                cpu,
                message,
                line,
            ));
        }
    }
}

/// "INFO: NMI handler (X) took too long to run": the slow-handler finding of that handler.
fn too_long(
    out: &mut Findings,
    cx: &Cx<'_>,
    ts_ns: u64,
    cpu: u32,
    handler: String,
    msecs: f64,
    line: String,
) {
    let want = (msecs * 1e6) as u64;
    // 5.6–5.9 (and the 4.19.y/5.4.y backports of 248ed51048c4 before
    // f94c91f7ba3b) printed the previous maximum, not this duration: there
    // only the handler identifies the call.
    let v = cx.replay.model.version;
    let value_printed = !((v.0, v.1) >= (5, 6) && (v.0, v.1) < (5, 10));
    let hit = out
        .iter()
        .filter(|(_, f)| f.kind == Kind::SlowNmiHandler && f.ts_ns.is_some_and(|t| t <= ts_ns))
        .filter(|(_, f)| match &f.details {
            Details::Slow(s) => {
                s.handler == handler
                    && (!value_printed || s.delta_ns.abs_diff(want) < 1_000_000)
                    && s.console_confirmed.is_none()
            }
            _ => false,
        })
        .max_by_key(|(_, f)| f.ts_ns)
        .map(|(id, _)| id);
    match hit.and_then(|id| out.get_mut(id)) {
        Some(f) => {
            if let Details::Slow(s) = &mut f.details {
                s.console_confirmed = Some(true);
            }
            f.evidence.push(line);
        }
        None => {
            let message = format!(
                "the kernel reported NMI handler {handler} took {msecs:.3} ms (over the 1 ms nmi_longest_ns): NMIs were blocked meanwhile"
            );
            let details = Details::Slow(SlowDetails {
                handler,
                delta_ns: want,
                console_confirmed: Some(true),
                ..Default::default()
            });
            out.push(console_finding(
                Kind::SlowNmiHandler,
                Severity::Warning,
                details,
                ts_ns,
                cpu,
                message,
                line,
            ));
        }
    }
}

/// A finding the kernel's console line alone shows: the replay had none for it to confirm.
fn console_finding(
    kind: Kind,
    severity: Severity,
    details: Details,
    ts_ns: u64,
    cpu: u32,
    message: String,
    line: String,
) -> Finding {
    let mut f = Finding::new(kind, severity, Confidence::Observed, details);
    f.ts_ns = Some(ts_ns);
    f.cpu = Some(cpu);
    f.message = message;
    f.evidence.push(line);
    f
}

/// The latest fault-in-NMI finding of `kinds` on `cpu` at most 10 ms before
/// `ts_ns` that no console line confirmed yet.
fn latest_fault(out: &Findings, cpu: u32, ts_ns: u64, kinds: &[Kind]) -> Option<FindingId> {
    out.iter()
        .filter(|(_, f)| {
            kinds.contains(&f.kind)
                && f.cpu == Some(cpu)
                && f.ts_ns
                    .is_some_and(|t| t <= ts_ns && ts_ns - t < 10_000_000)
                && f.details.confirmed_by().is_none()
        })
        .max_by_key(|(_, f)| f.ts_ns)
        .map(|(id, _)| id)
}

fn confirm_fault(f: &mut Finding, why: String, line: String) {
    if let Details::Fault(d) = &mut f.details {
        d.confirmed_by = Some(why);
    }
    f.evidence.push(line);
}

/// x86 `vmalloc_fault()`'s `WARN_ON_ONCE(in_nmi())`.
fn vmalloc_warn(out: &mut Findings, cx: &Cx<'_>, ts_ns: u64, cpu: u32, line: String) {
    let why = format!("the kernel's WARN_ON_ONCE(in_nmi()) in vmalloc_fault: {line}");
    match latest_fault(out, cpu, ts_ns, &[Kind::NmiVmallocFault]).and_then(|id| out.get_mut(id)) {
        Some(f) => confirm_fault(f, why, line),
        None => {
            let m = &cx.replay.model;
            let sev = if m.nested_nmi_corrupts_stack || !m.vmalloc_fault_handled {
                Severity::Error
            } else {
                Severity::Warning
            };
            let message = format!(
                "the kernel warned that vmalloc_fault ran in NMI context on CPU {cpu} (WARN_ON_ONCE(in_nmi()), x86_64 2.6.37-5.1, x86_32 2.6.37-4.18): a lazy vmalloc sync inside an NMI; the trace has no page-fault event for it (record exceptions:page_fault_kernel to see the address). It warns once per boot: later ones are silent"
            );
            let details = Details::Fault(Box::new(FaultDetails {
                confirmed_by: Some(why),
                ..Default::default()
            }));
            out.push(console_finding(
                Kind::NmiVmallocFault,
                sev,
                details,
                ts_ns,
                cpu,
                message,
                line,
            ));
        }
    }
}

/// A page-fault oops: the fault finding it ends, made an error.
fn oops(out: &mut Findings, ts_ns: u64, cpu: u32, nmi: bool, address: Option<u64>, line: String) {
    let why = format!("the kernel oopsed on the fault: {line}");
    match latest_fault(
        out,
        cpu,
        ts_ns,
        &[Kind::NmiVmallocFault, Kind::NmiPageFault],
    )
    .and_then(|id| out.get_mut(id))
    {
        Some(f) => {
            f.severity = Severity::Error;
            confirm_fault(f, why, line);
        }
        None if nmi => {
            let addr = address
                .map(|a| format!("{a:#x}"))
                .unwrap_or_else(|| "?".into());
            let message = format!(
                "the kernel oopsed on a page fault at {addr} in NMI context on CPU {cpu}: an unhandled fault inside an NMI (the trace has no page-fault event for it)"
            );
            let details = Details::Fault(Box::new(FaultDetails {
                address: Some(addr),
                confirmed_by: Some(why),
                ..Default::default()
            }));
            out.push(console_finding(
                Kind::NmiPageFault,
                Severity::Error,
                details,
                ts_ns,
                cpu,
                message,
                line,
            ));
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lines() {
        let mut c = ConsoleLog::default();
        c.add(
            1,
            0,
            true,
            "[  123.456] Uhhuh. NMI received for unknown reason 3d on CPU 90.",
            "l".into(),
        );
        c.add(
            2,
            0,
            true,
            "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 2.345 msecs",
            "l".into(),
        );
        c.add(
            3,
            1,
            true,
            "WARNING: CPU: 3 PID: 1 at arch/x86/mm/fault.c:442 vmalloc_fault+0x1c7/0x1e0",
            "l".into(),
        );
        c.add(
            4,
            1,
            true,
            "BUG: unable to handle kernel paging request at ffffc90000123000",
            "l".into(),
        );
        c.add(
            5,
            1,
            false,
            "BUG: unable to handle page fault for address: ffffc90000456000",
            "l".into(),
        );
        match &c.lines[0] {
            ConsoleNmi::Unknown { cpu, reason, .. } => {
                assert_eq!((*cpu, *reason), (90, Some(0x3d)))
            }
            x => panic!("{x:?}"),
        }
        match &c.lines[1] {
            ConsoleNmi::TooLong { handler, msecs, .. } => assert_eq!(
                (handler.as_str(), *msecs),
                ("perf_event_nmi_handler", 2.345)
            ),
            x => panic!("{x:?}"),
        }
        assert!(matches!(c.lines[2], ConsoleNmi::VmallocWarn { cpu: 3, .. }));
        assert!(matches!(
            c.lines[3],
            ConsoleNmi::Oops {
                nmi: true,
                address: Some(0xffffc90000123000),
                ..
            }
        ));
        assert!(matches!(
            c.lines[4],
            ConsoleNmi::Oops {
                nmi: false,
                address: Some(0xffffc90000456000),
                ..
            }
        ));
    }
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;
    use crate::detect::tests_support::cx_for;
    use crate::finding::NmiFacts;

    #[test]
    fn console_lines_confirm_findings_by_key_or_become_findings() {
        let replay = nmitrace_replay::Replay::new(nmitrace_replay::KernelModel::choose(
            None,
            None,
            Some("6.1"),
            Some("x86_64"),
        ));
        let cfg = crate::Config::default();
        let cx = cx_for(&replay, &cfg);
        let mut out = Findings::default();
        // A swallowed NMI on CPU 1 that the kernel printed as unknown.
        let nmi = NmiFacts {
            nmi_start_ns: 1_000,
            nmi_end_ns: 2_000,
            handled: 0,
            handlers: Vec::new(),
            interrupted: None,
        };
        let mut f = Finding::new(
            Kind::SwallowedNmi,
            Severity::Info,
            Confidence::Observed,
            Details::Latch(Box::new(LatchDetails {
                nmi: Some(nmi),
                ..Default::default()
            })),
        );
        f.cpu = Some(1);
        f.ts_ns = Some(1_000);
        let id = out.push(f).unwrap();
        let mut c = Console::default();
        c.log.add(
            5_000,
            1,
            true,
            "Uhhuh. NMI received for unknown reason 2d on CPU 1.",
            "uhhuh line".into(),
        );
        // No slow-handler finding to confirm: the line becomes one.
        c.log.add(
            6_000,
            0,
            true,
            "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 2.500 msecs",
            "too long line".into(),
        );
        c.finish(&cx, &mut out);
        let f = out.get_mut(id).unwrap();
        assert_eq!((f.kind, f.severity), (Kind::UnknownNmi, Severity::Warning));
        let Details::Latch(d) = &f.details else {
            panic!()
        };
        assert_eq!(
            (d.console_confirmed, d.reason.clone()),
            (Some(true), Some(Some("2d".to_string())))
        );
        let v = out.into_vec();
        assert_eq!(v.len(), 2);
        assert_eq!((v[1].kind, v[1].ts_ns), (Kind::SlowNmiHandler, Some(6_000)));
        let Details::Slow(s) = &v[1].details else {
            panic!()
        };
        assert_eq!((s.delta_ns, s.console_confirmed), (2_500_000, Some(true)));
    }
}
