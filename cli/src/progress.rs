//! Progress on long runs: a line on standard error, refreshed twice a
//! second, only when standard error is a terminal and the run has lasted
//! more than a second. Wraps the real sink; costs one counter per event.

use nmitrace_parser::{Event, Notice, Sink};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress<'s> {
    inner: &'s mut dyn Sink,
    label: String,
    enabled: bool,
    start: Instant,
    last: Instant,
    events: u64,
    shown: bool,
}

impl<'s> Progress<'s> {
    pub fn new(inner: &'s mut dyn Sink, label: &str) -> Progress<'s> {
        let now = Instant::now();
        Progress {
            inner,
            label: label.to_string(),
            enabled: std::io::stderr().is_terminal(),
            start: now,
            last: now,
            events: 0,
            shown: false,
        }
    }

    #[cold]
    fn tick(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.start) < Duration::from_secs(1) || now.duration_since(self.last) < Duration::from_millis(500) {
            return;
        }
        self.last = now;
        self.shown = true;
        let secs = now.duration_since(self.start).as_secs_f64();
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[K{}: {:.1}M events, {:.1}s ({:.1}M events/s)",
            self.label,
            self.events as f64 / 1e6,
            secs,
            self.events as f64 / 1e6 / secs
        );
    }

    /// Clear the progress line.
    pub fn done(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

impl Sink for Progress<'_> {
    #[inline]
    fn event(&mut self, ev: &Event<'_>) {
        self.events += 1;
        if self.enabled && self.events & 0xffff == 0 {
            self.tick();
        }
        self.inner.event(ev);
    }

    fn notice(&mut self, n: &Notice) {
        self.inner.notice(n);
    }

    fn symbols(&mut self, s: &std::sync::Arc<nmitrace_parser::tracedat::symbols::Symbols>) {
        self.inner.symbols(s);
    }
}
