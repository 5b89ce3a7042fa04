//! Inferred lost NMIs: a periodic source (hard-lockup watchdog, fixed-period
//! PMU sampling) missing beats while its CPU was busy.

use super::{Cx, Detector};
use crate::finding::{Confidence, Details, Finding, Findings, Kind, LostDetails, Severity};
use crate::nmi::instance::Instance;
use nmitrace_replay::{fmt_ts, Cpu};

/// Intervals remembered per (CPU, handler) to judge regularity.
const WINDOW: usize = 8;
/// Regular intervals needed before a gap is judged.
const MIN_INTERVALS: usize = 6;
/// Gaps longer than this many periods are a stopped source (throttling, the
/// event disabled), not lost NMIs.
const MAX_MISSING: u64 = 16;

struct Tracker {
    handler: String,
    /// The last beat's evidence line.
    line: String,
    last: u64,
    idle_at_last: u64,
    intervals: [u64; WINDOW],
    n: usize,
}

impl Tracker {
    /// The period, when the recent intervals are regular (spread ≤ 10 %).
    fn period(&self) -> Option<u64> {
        if self.n < MIN_INTERVALS {
            return None;
        }
        let k = self.n.min(WINDOW);
        let mut v: Vec<u64> = self.intervals[..k].to_vec();
        v.sort_unstable();
        let med = v[k / 2];
        if med == 0 || (v[k - 1] - v[0]) * 10 > med {
            return None;
        }
        Some(med)
    }

    fn push(&mut self, iv: u64) {
        self.intervals[self.n % WINDOW] = iv;
        self.n += 1;
    }
}

#[derive(Default)]
pub struct PeriodicBeats {
    cpus: Vec<Vec<Tracker>>,
    pub missing_beats: u64,
}

impl PeriodicBeats {
    /// A handler handled something at `ts` on `cpu`. Returns an inferred
    /// `lost_nmi` when beats are missing while the CPU was busy.
    pub fn beat(
        &mut self,
        cpu: u32,
        handler: &str,
        ts: u64,
        line: &str,
        rc: &Cpu,
    ) -> Option<Finding> {
        let c = cpu as usize;
        if c >= self.cpus.len() {
            self.cpus.resize_with(c + 1, Vec::new);
        }
        let list = &mut self.cpus[c];
        let idle_now = rc.idle_until(ts);
        let Some(t) = list.iter_mut().find(|t| t.handler == handler) else {
            list.push(Tracker {
                handler: handler.into(),
                line: line.into(),
                last: ts,
                idle_at_last: idle_now,
                intervals: [0; WINDOW],
                n: 0,
            });
            return None;
        };
        let last_line = std::mem::replace(&mut t.line, line.to_string());
        let iv = ts.saturating_sub(t.last);
        let idle = idle_now.saturating_sub(t.idle_at_last);
        let last = t.last;
        t.last = ts;
        t.idle_at_last = idle_now;
        if iv == 0 {
            return None;
        }
        let Some(period) = t.period() else {
            t.push(iv);
            return None;
        };
        if iv * 2 < period * 3 {
            t.push(iv);
            return None;
        }
        let k = (iv + period / 2) / period;
        let off = iv.abs_diff(k * period);
        if k < 2 || k > MAX_MISSING + 1 || off * 4 > period {
            return None;
        }
        let missing = k - 1;
        if idle * 10 > iv {
            // The CPU idled: cycle-based sources (the watchdog) stop counting.
            return None;
        }
        self.missing_beats += missing;
        let mut f = Finding::new(
            Kind::LostNmi,
            Severity::Warning,
            Confidence::Inferred,
            Details::Lost(Box::new(LostDetails::Beats {
                handler: handler.into(),
                period_ns: period,
                gap_ns: iv,
                lost: missing,
                idle_ns: idle,
            })),
        );
        f.ts_ns = Some(last);
        f.cpu = Some(cpu);
        f.message = format!(
            "periodic NMI source {handler} on CPU {cpu} (period {:.3} ms) missed {missing} beat{} between {} and {} while the CPU was busy ({:.0} % idle): the NMIs were dropped or collapsed in the latch (NMI pressure, or NMIs blocked by a long handler)",
            period as f64 / 1e6,
            if missing == 1 { "" } else { "s" },
            fmt_ts(last),
            fmt_ts(ts),
            idle as f64 * 100.0 / iv as f64
        );
        f.evidence.push(last_line);
        f.evidence.push(line.to_string());
        Some(f)
    }
}

impl Detector for PeriodicBeats {
    /// Each handler that claimed work beats once per NMI.
    fn on_instance(&mut self, inst: &mut Instance, cx: &Cx<'_>, out: &mut Findings) {
        if inst.handlerless {
            return;
        }
        let Some(rc) = cx.replay.cpu(inst.cpu) else {
            return;
        };
        for (name, _, handled) in &inst.handlers {
            if *handled > 0 {
                let line = inst
                    .handlers
                    .iter()
                    .position(|(n, _, _)| n == name)
                    .and_then(|i| inst.lines.get(i))
                    .or(inst.lines.first());
                if let Some(f) = self.beat(
                    inst.cpu,
                    name,
                    inst.start,
                    line.map_or("", |l| l.as_str()),
                    rc,
                ) {
                    out.push(f);
                }
            }
        }
    }
}
