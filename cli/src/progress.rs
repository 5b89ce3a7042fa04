//! Progress on long runs: a line on standard error, refreshed twice a
//! second, only when standard error is a terminal and the run has lasted
//! more than a second; and a deadline (`batch --timeout`) that stops the
//! reading. Sees every event before the analyzer; costs one counter per event.

use nmitrace_parser::Event;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    enabled: bool,
    start: Instant,
    last: Instant,
    events: u64,
    shown: bool,
    deadline: Option<Instant>,
    /// The deadline passed and the reading was stopped.
    pub timed_out: bool,
}

impl Progress {
    /// `show`: draw the progress line (on a terminal); `deadline`: stop reading then.
    pub fn new(label: &str, show: bool, deadline: Option<Instant>) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            enabled: show && std::io::stderr().is_terminal(),
            start: now,
            last: now,
            events: 0,
            shown: false,
            deadline,
            timed_out: false,
        }
    }

    #[cold]
    fn tick(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.start) < Duration::from_secs(1)
            || now.duration_since(self.last) < Duration::from_millis(500)
        {
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

impl nmitrace_analyses::Watch for Progress {
    #[inline]
    fn event(&mut self, _ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.events += 1;
        if self.events & 0xfff == 0 {
            if self.enabled && self.events & 0xffff == 0 {
                self.tick();
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.timed_out = true;
                return nmitrace_parser::STOP;
            }
        }
        nmitrace_parser::CONTINUE
    }

    /// Counted events (a text trace's, after each chunk of lines; trace.dat's
    /// at the end): they count, and the deadline is checked.
    fn counted(&mut self, c: &nmitrace_parser::Counted<'_>) -> nmitrace_parser::Flow {
        self.events += c.count;
        if self.enabled {
            self.tick();
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.timed_out = true;
            return nmitrace_parser::STOP;
        }
        nmitrace_parser::CONTINUE
    }
}
