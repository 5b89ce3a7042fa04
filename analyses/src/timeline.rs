//! What happened when, per CPU, for charts and tables: NMI instances,
//! switch windows, kernel-mode faults, NMI handler durations, and the number
//! of mms out of sync with `init_mm` over time.
//!
//! Every series is BOUNDED: a [`Decimated`] list keeps every item until its
//! cap, then halves itself (keeps every other item) and from then on keeps
//! one item in `stride`, so a long trace yields an evenly spaced sample and a
//! count of what was dropped; memory does not grow with the trace.
//! Handler durations go into fixed log-scale buckets.
//!
//! The [`Report`](crate::Report) carries it as `timeline`, skipped by serde
//! (the JSON contract does not change).

use crate::nmi::instance::Instance;
use nmitrace_parser::Event;
use nmitrace_replay::{Outcome, Replay};
use std::collections::BTreeMap;

/// Items kept per series (NMI instances, windows, faults, mm samples).
pub const MAX_ITEMS: usize = 100_000;
/// Distinct handler names with a duration histogram.
pub const MAX_HANDLERS: usize = 64;

/// A list that keeps an evenly spaced sample once it reaches its cap.
#[derive(Clone, Debug)]
pub struct Decimated<T> {
    items: Vec<T>,
    cap: usize,
    stride: u64,
    seen: u64,
}

impl<T> Default for Decimated<T> {
    fn default() -> Self {
        Decimated::with_cap(MAX_ITEMS)
    }
}

impl<T> Decimated<T> {
    pub fn with_cap(cap: usize) -> Decimated<T> {
        Decimated {
            items: Vec::new(),
            cap: cap.max(2),
            stride: 1,
            seen: 0,
        }
    }

    /// Will the next push be kept? (Lets callers skip building an item.)
    #[inline]
    pub fn wants_next(&self) -> bool {
        self.seen % self.stride == 0
    }

    pub fn push(&mut self, x: T) {
        let i = self.seen;
        self.seen += 1;
        if i % self.stride != 0 {
            return;
        }
        if self.items.len() >= self.cap {
            let mut k = 0;
            self.items.retain(|_| {
                k += 1;
                (k - 1) % 2 == 0
            });
            self.stride *= 2;
            if i % self.stride != 0 {
                return;
            }
        }
        self.items.push(x);
    }

    /// Count one item that was not built (because `wants_next` said no).
    pub fn skip(&mut self) {
        self.seen += 1;
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// How many items were offered.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// How many were not kept.
    pub fn dropped(&self) -> u64 {
        self.seen - self.items.len() as u64
    }

    /// One item kept in this many (1 = all kept).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    pub fn last(&self) -> Option<&T> {
        self.items.last()
    }
}

/// One NMI instance (a run of `nmi_handler` events on one CPU).
#[derive(Clone, Debug)]
pub struct NmiMark {
    pub cpu: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Sum of the handlers' `handled`.
    pub handled: i64,
    /// Handler names, comma-separated, in order.
    pub handlers: String,
    pub pid: i32,
    pub comm: String,
    /// Faults attributed to this NMI.
    pub faults: u32,
    /// It ran in a context-switch window.
    pub in_switch_window: bool,
    pub nested: bool,
}

/// One context-switch window (cr3 = next, current = prev).
#[derive(Clone, Debug)]
pub struct WindowMark {
    pub cpu: u32,
    pub start_ns: u64,
    /// Next's first event; `None` when not seen.
    pub end_ns: Option<u64>,
    pub prev_pid: i32,
    pub next_pid: i32,
}

/// One kernel-mode page fault.
#[derive(Clone, Debug)]
pub struct FaultMark {
    pub cpu: u32,
    pub ts_ns: u64,
    pub address: Option<u64>,
    pub vmalloc: bool,
    /// The event's flags said NMI context.
    pub nmi_flag: bool,
}

/// The number of mms out of sync with `init_mm` from `ts_ns` on.
#[derive(Clone, Copy, Debug)]
pub struct MmSample {
    pub ts_ns: u64,
    pub out_of_sync: u32,
    pub live: u32,
}

/// Record a finished NMI instance.
pub fn mark_nmi(marks: &mut Decimated<NmiMark>, inst: &Instance) {
    if !marks.wants_next() {
        marks.skip();
        return;
    }
    let mut handlers = String::new();
    for (i, (n, _, _)) in inst.handlers.iter().enumerate() {
        if i > 0 {
            handlers.push(',');
        }
        handlers.push_str(n);
    }
    marks.push(NmiMark {
        cpu: inst.cpu,
        start_ns: inst.start,
        end_ns: inst.end,
        handled: inst.handled,
        handlers,
        pid: inst.pid,
        comm: inst.comm.clone(),
        faults: inst.faults.len() as u32,
        in_switch_window: inst.in_switch_window,
        nested: inst.nested,
    });
}

/// Everything the charts and tables need, bounded.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub nmis: Decimated<NmiMark>,
    pub windows: Decimated<WindowMark>,
    pub faults: Decimated<FaultMark>,
    /// Change points of the out-of-sync count.
    pub mm_sync: Decimated<MmSample>,
    pub durations: BTreeMap<String, crate::histogram::LogHistogram>,
    /// Handler names beyond [`MAX_HANDLERS`] (their durations are not kept).
    pub handlers_dropped: u64,
    /// Per CPU: start of the window recorded last, to record each once.
    open_windows: Vec<Option<u64>>,
    last_out_of_sync: Option<usize>,
}

impl Timeline {
    /// A finished NMI instance.
    pub fn nmi(&mut self, inst: &Instance) {
        mark_nmi(&mut self.nmis, inst);
    }

    /// An `nmi_handler` event's duration.
    pub fn handler_duration(&mut self, handler: &str, delta_ns: u64) {
        if let Some(h) = self.durations.get_mut(handler) {
            h.add(delta_ns);
            return;
        }
        if self.durations.len() >= MAX_HANDLERS {
            self.handlers_dropped += 1;
            return;
        }
        let mut h = crate::histogram::LogHistogram::default();
        h.add(delta_ns);
        self.durations.insert(handler.to_string(), h);
    }

    /// After the replay applied a modelled event.
    pub fn after_apply(&mut self, ev: &Event<'_>, outcome: &Outcome, replay: &Replay) {
        match outcome {
            Outcome::KernelFault(fi) => self.faults.push(FaultMark {
                cpu: ev.cpu,
                ts_ns: ev.ts_ns,
                address: fi.address,
                vmalloc: fi.entry.is_some(),
                nmi_flag: ev.ctx.known && ev.ctx.nmi,
            }),
            _ => {}
        }
        use nmitrace_parser::EventKind as K;
        if matches!(ev.kind, K::SchedSwitch | K::TlbFlush) {
            self.window_check(ev.cpu, replay);
        }
        if !replay.vmalloc.opened.is_empty()
            && matches!(
                ev.kind,
                K::SchedSwitch
                    | K::AllocVmapArea
                    | K::PercpuCreateChunk
                    | K::VmallocProbe
                    | K::PageFaultKernel
                    | K::SchedProcessFork
                    | K::SchedProcessExec
                    | K::SchedProcessFree
            )
        {
            self.mm_sample(ev.ts_ns, replay);
        }
    }

    /// Record a window when it opens; fill its end when the CPU's next one opens.
    fn window_check(&mut self, cpu: u32, replay: &Replay) {
        let Some(c) = replay.cpu(cpu) else { return };
        let w = &c.window;
        if !w.is_open() {
            return;
        }
        let ci = cpu as usize;
        if ci >= self.open_windows.len() {
            self.open_windows.resize(ci + 1, None);
        }
        if self.open_windows[ci] == Some(w.start_ts) {
            return;
        }
        self.close_previous(cpu, replay);
        self.open_windows[ci] = Some(w.start_ts);
        self.windows.push(WindowMark {
            cpu,
            start_ns: w.start_ts,
            end_ns: None,
            prev_pid: w.prev_pid,
            next_pid: w.next_pid,
        });
    }

    /// Give the CPU's last recorded window its end (the replay's `last_window`).
    fn close_previous(&mut self, cpu: u32, replay: &Replay) {
        let Some(start) = self.open_windows.get(cpu as usize).copied().flatten() else {
            return;
        };
        let Some(c) = replay.cpu(cpu) else { return };
        let lw = &c.last_window;
        if lw.start_ts != start || lw.end_ts.is_none() {
            return;
        }
        for m in self.windows.items.iter_mut().rev().take(256) {
            if m.cpu == cpu && m.start_ns == start {
                m.end_ns = lw.end_ts;
                break;
            }
        }
    }

    fn mm_sample(&mut self, ts_ns: u64, replay: &Replay) {
        let n = replay.mms.out_of_sync();
        if self.last_out_of_sync == Some(n) {
            return;
        }
        self.last_out_of_sync = Some(n);
        self.mm_sync.push(MmSample {
            ts_ns,
            out_of_sync: n as u32,
            live: replay.mms.live() as u32,
        });
    }

    /// End of trace: close the open windows, last mm sample.
    pub fn finish(&mut self, last_ts: Option<u64>, replay: &Replay) {
        for cpu in 0..self.open_windows.len() as u32 {
            self.close_previous(cpu, replay);
        }
        if let (Some(ts), Some(n)) = (last_ts, self.last_out_of_sync) {
            if self.mm_sync.last().is_some_and(|s| s.ts_ns < ts) {
                self.mm_sync.push(MmSample {
                    ts_ns: ts,
                    out_of_sync: n as u32,
                    live: replay.mms.live() as u32,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimated_stays_bounded_and_even() {
        let mut d = Decimated::with_cap(8);
        for i in 0..1000u64 {
            d.push(i);
        }
        assert!(d.items().len() <= 8);
        assert_eq!(d.seen(), 1000);
        assert_eq!(d.dropped(), 1000 - d.items().len() as u64);
        let s = d.stride();
        assert!(
            d.items().iter().all(|x| x % s == 0),
            "{:?} stride {s}",
            d.items()
        );
        assert_eq!(d.items()[0], 0);
    }
}
