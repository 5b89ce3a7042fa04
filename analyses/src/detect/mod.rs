//! The detectors: each judges one thing the kernel does around NMIs and
//! writes its findings. They see the replay's state, the NMI instances the
//! builder ([`crate::nmi::instance`]) makes, and the events they ask for;
//! never each other, nor the timeline. Each is driven through [`Detector`],
//! so it can be tested alone on a handful of events.
//!
//! - [`latch`]: `default_do_nmi` replayed (unknown, swallowed, lost, nested NMIs);
//! - [`periodic`]: periodic sources missing beats (inferred lost NMIs);
//! - [`switch_window`]: NMIs inside context-switch windows (`cr3_current_mismatch`);
//! - [`faults`]: page faults inside NMIs;
//! - [`exposure`]: mms lacking vmalloc entries opened during the trace;
//! - [`slow_handler`]: handlers over `nmi_longest_ns`;
//! - [`console`]: the kernel's own console lines, confirming or correcting the rest.

pub mod console;
pub mod exposure;
pub mod faults;
pub mod latch;
pub mod periodic;
pub mod slow_handler;
pub mod switch_window;

use crate::finding::Findings;
use crate::nmi::dump::NmiDump;
use crate::nmi::instance::Instance;
use crate::Config;
use nmitrace_parser::model::NmiHandler;
use nmitrace_parser::Event;
use nmitrace_replay::{Outcome, Replay};

/// What every detector may look at.
pub struct Cx<'a> {
    pub replay: &'a Replay,
    pub config: &'a Config,
    /// The timestamps' resolution (1000 when whole µs).
    pub tol: u64,
    /// The back-to-back threshold in effect.
    pub b2b_threshold_ns: u64,
    /// The trace records page-fault events (faults are observed, not inferred).
    pub faults_traced: bool,
}

/// One `nmi_handler` event, as the detectors see it.
pub struct HandlerEvent<'e, 'a> {
    pub ev: &'e Event<'a>,
    pub h: &'e NmiHandler<'a>,
    /// The handler's name (its symbol, or address).
    pub name: &'e str,
    /// The register dump it printed, if any.
    pub dump: Option<&'e NmiDump>,
}

/// A detector. Every method has a default that does nothing.
pub trait Detector {
    /// The replay applied a modelled event and says what changed.
    fn on_outcome(
        &mut self,
        _ev: &Event<'_>,
        _outcome: &Outcome,
        _cx: &Cx<'_>,
        _out: &mut Findings,
    ) {
    }
    /// An `nmi_handler` event joined the open instance `inst` of its CPU.
    fn on_handler(
        &mut self,
        _h: &HandlerEvent<'_, '_>,
        _inst: &Instance,
        _cx: &Cx<'_>,
        _out: &mut Findings,
    ) {
    }
    /// An NMI is complete (the detectors run in a fixed order; the switch
    /// window's verdict is on the instance for those after it).
    fn on_instance(&mut self, _inst: &mut Instance, _cx: &Cx<'_>, _out: &mut Findings) {}
    /// The trace lost events on `cpu`.
    fn on_lost(&mut self, _cpu: u32, _cx: &Cx<'_>, _out: &mut Findings) {}
    /// End of the trace.
    fn finish(&mut self, _cx: &Cx<'_>, _out: &mut Findings) {}
}

/// Drive a detector by hand in its unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use nmitrace_replay::testkit::ev;

    pub fn cx_for<'a>(replay: &'a Replay, config: &'a Config) -> Cx<'a> {
        Cx {
            replay,
            config,
            tol: 1000,
            b2b_threshold_ns: config.b2b_threshold_ns,
            faults_traced: false,
        }
    }

    /// An `nmi_handler` event of `handler` on CPU 0 (pid 100), ending at `ts`.
    pub fn handler_event(
        ts: u64,
        handler: &str,
        delta_ns: u64,
        f: impl FnOnce(&HandlerEvent<'_, '_>),
    ) {
        ev::nmi(ts, 0, ("bash", 100), handler, delta_ns, 1).with(|e| {
            let nmitrace_parser::model::Modelled::NmiHandler(h) =
                nmitrace_parser::model::Modelled::from_event(e)
            else {
                panic!("not an nmi_handler")
            };
            f(&HandlerEvent {
                ev: e,
                h: &h,
                name: handler,
                dump: None,
            })
        })
    }
}
