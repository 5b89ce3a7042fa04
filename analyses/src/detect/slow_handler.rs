//! `slow_nmi_handler`: a handler that ran `nmi_longest_ns` (1 ms) or more
//! (arch/x86/kernel/nmi.c `nmi_check_duration()`: `if (duration <
//! nmi_longest_ns || duration < action->max_duration) return;`, so the
//! kernel prints "took too long" for a new per-handler maximum only, 3.15+).

use super::{Cx, Detector, HandlerEvent};
use crate::finding::{Confidence, Details, Finding, Findings, Kind, Severity, SlowDetails};
use crate::nmi::instance::{interrupted, Instance};

/// The kernel's `nmi_longest_ns` default: a handler this slow is reported.
pub const SLOW_HANDLER_NS: u64 = 1_000_000;

#[derive(Default)]
pub struct SlowHandlers {
    /// Per handler: the kernel's `max_duration`.
    max: Vec<(String, u64)>,
}

impl Detector for SlowHandlers {
    fn on_handler(
        &mut self,
        he: &HandlerEvent<'_, '_>,
        _inst: &Instance,
        _cx: &Cx<'_>,
        out: &mut Findings,
    ) {
        let (ev, h, name) = (he.ev, he.h, he.name);
        let i = match self.max.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.max.push((name.to_string(), 0));
                self.max.len() - 1
            }
        };
        let prints_too_long = h.delta_ns >= SLOW_HANDLER_NS && h.delta_ns >= self.max[i].1;
        if prints_too_long {
            self.max[i].1 = h.delta_ns;
        }
        if h.delta_ns < SLOW_HANDLER_NS {
            return;
        }
        let mut f = Finding::new(
            Kind::SlowNmiHandler,
            Severity::Warning,
            Confidence::Observed,
            Details::Slow(SlowDetails {
                handler: name.to_string(),
                delta_ns: h.delta_ns,
                threshold_ns: Some(SLOW_HANDLER_NS),
                kernel_prints_too_long: Some(prints_too_long),
                interrupted: he.dump.map(interrupted),
                console_confirmed: None,
            }),
        );
        f.ts_ns = Some(ev.ts_ns.saturating_sub(h.delta_ns));
        f.cpu = Some(ev.cpu);
        f.pid = Some(ev.pid);
        f.comm = ev.comm.map(Into::into);
        let ms = h.delta_ns as f64 / 1e6;
        f.message = format!(
            "NMI handler {name} ran {ms:.3} ms on CPU {} (over the kernel's 1 ms nmi_longest_ns): NMIs are blocked meanwhile, latched NMIs collapse, and perf lowers its sample rate (\"perf: interrupt took too long\")",
            ev.cpu
        );
        f.evidence.push(nmitrace_replay::event_line(ev));
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests_support::{cx_for, handler_event};

    #[test]
    fn a_new_maximum_at_or_over_one_ms_is_what_the_kernel_prints() {
        let replay = nmitrace_replay::Replay::new(nmitrace_replay::KernelModel::choose(
            None,
            None,
            Some("6.1"),
            Some("x86_64"),
        ));
        let cfg = crate::Config::default();
        let cx = cx_for(&replay, &cfg);
        let mut d = SlowHandlers::default();
        let mut out = Findings::default();
        for (ts, delta) in [
            (10_000_000u64, 2_000_000u64),
            (20_000_000, 1_500_000),
            (30_000_000, 999_999),
            (40_000_000, 3_000_000),
        ] {
            handler_event(ts, "nmi_cpu_backtrace_handler", delta, |he| {
                d.on_handler(he, &Instance::default(), &cx, &mut out)
            });
        }
        let v: Vec<(u64, bool)> = out
            .iter()
            .map(|(_, f)| match &f.details {
                Details::Slow(s) => (s.delta_ns, s.kernel_prints_too_long.unwrap()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            v,
            vec![(2_000_000, true), (1_500_000, false), (3_000_000, true)]
        );
    }
}
