//! The `events` block: counts by name and CPU, time span, and what the
//! input said it lost or could not parse.

use crate::finding::{Confidence, Details, Finding, Kind, Severity};
use crate::report::{EventsBlock, ParseBlock};
use ahash::AHashMap;
use nmitrace_parser::{Event, Notice, Origin};
use std::collections::BTreeMap;

/// CPUs beyond this index are counted in a map instead of the dense vector
/// (a hostile cpu number must not size an allocation).
const DENSE_CPUS: usize = 4096;

/// Distinct event names counted in the vector before falling back to a map.
const NAMES_DENSE: usize = 256;

#[derive(Default)]
pub struct EventCounts {
    total: u64,
    /// Names seen, with counts: a short vector searched from the last hit
    /// (no hashing, no allocation per event).
    names: Vec<(Box<str>, u64)>,
    last: usize,
    /// Name hash → slot + 1 in `names` (0 = empty).
    cache: Vec<u16>,
    by_name: AHashMap<Box<str>, u64>,
    by_cpu: Vec<u64>,
    by_cpu_sparse: BTreeMap<u32, u64>,
    first_ts: Option<u64>,
    last_ts: Option<u64>,
    /// Events the flags put in NMI context.
    pub nmi_context_events: u64,
    /// The format carries context flags (some event had them).
    pub flags_known: bool,
}

impl EventCounts {
    #[inline]
    pub fn add(&mut self, ev: &Event<'_>) {
        self.total += 1;
        if ev.ctx.known {
            self.flags_known = true;
            if ev.ctx.nmi {
                self.nmi_context_events += 1;
            }
        }
        match self.names.get_mut(self.last) {
            Some((n, c)) if nmitrace_replay::name_eq(n, ev.name) => *c += 1,
            _ => self.count_name(ev.name, 1),
        }
        self.count_cpu(ev.cpu, 1);
        self.span(ev.ts_ns, ev.ts_ns);
    }

    #[inline]
    fn count_cpu(&mut self, cpu: u32, n: u64) {
        let c = cpu as usize;
        if c < DENSE_CPUS {
            if c >= self.by_cpu.len() {
                self.by_cpu.resize(c + 1, 0);
            }
            self.by_cpu[c] += n;
        } else {
            *self.by_cpu_sparse.entry(cpu).or_default() += n;
        }
    }

    /// Widen the time span to take in `first..=last`.
    #[inline]
    fn span(&mut self, first: u64, last: u64) {
        self.first_ts = Some(self.first_ts.map_or(first, |t| t.min(first)));
        self.last_ts = Some(self.last_ts.map_or(last, |t| t.max(last)));
    }

    fn count_name(&mut self, name: &str, count: u64) {
        // A direct-mapped cache (length, first and last byte) finds the
        // name's slot without a scan when names alternate.
        let b = name.as_bytes();
        let h = b
            .len()
            .wrapping_mul(31)
            .wrapping_add(*b.first().unwrap_or(&0) as usize)
            .wrapping_add((*b.last().unwrap_or(&0) as usize) << 3)
            & 255;
        if let Some(&i) = self.cache.get(h) {
            let i = i as usize;
            if i > 0 && nmitrace_replay::name_eq(&self.names[i - 1].0, name) {
                self.names[i - 1].1 += count;
                self.last = i - 1;
                return;
            }
        }
        if self.cache.is_empty() {
            self.cache = vec![0; 256];
        }
        if let Some(i) = self
            .names
            .iter()
            .position(|(n, _)| nmitrace_replay::name_eq(n, name))
        {
            self.cache[h] = (i + 1) as u16;
            self.names[i].1 += count;
            self.last = i;
        } else if self.names.len() < NAMES_DENSE {
            self.names.push((name.into(), count));
            self.last = self.names.len() - 1;
            self.cache[h] = self.names.len() as u16;
        } else {
            *self.by_name.entry(name.into()).or_default() += count;
        }
    }

    /// `c.count` events the reader counted instead of delivering (in task
    /// or softirq context, or in text that says no context: see
    /// `Sink::countable`).
    pub fn add_counted(&mut self, c: &nmitrace_parser::Counted<'_>) {
        if c.count == 0 {
            return;
        }
        self.total += c.count;
        if c.context_known {
            self.flags_known = true;
        }
        self.count_name(c.name, c.count);
        self.count_cpu(c.cpu, c.count);
        self.span(c.first_ts_ns, c.last_ts_ns);
    }

    /// Events seen on `cpu` so far.
    pub fn cpu_events(&self, cpu: u32) -> u64 {
        match self.by_cpu.get(cpu as usize) {
            Some(&n) => n,
            None if (cpu as usize) < DENSE_CPUS => 0,
            None => self.by_cpu_sparse.get(&cpu).copied().unwrap_or(0),
        }
    }

    /// Was an event with this name seen?
    pub fn has_name(&self, name: &str) -> bool {
        self.names.iter().any(|(n, _)| **n == *name) || self.by_name.contains_key(name)
    }

    pub fn into_block(mut self, notices: &NoticeLog) -> EventsBlock {
        for (n, c) in self.names.drain(..) {
            *self.by_name.entry(n).or_default() += c;
        }
        let by_name: BTreeMap<String, u64> = self
            .by_name
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect();
        let mut by_cpu: BTreeMap<u32, u64> = self.by_cpu_sparse;
        for (cpu, &n) in self.by_cpu.iter().enumerate() {
            if n > 0 {
                by_cpu.insert(cpu as u32, n);
            }
        }
        EventsBlock {
            total: self.total,
            by_name,
            by_cpu: by_cpu
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            first_ts_ns: self.first_ts,
            last_ts_ns: self.last_ts,
            lost_events: notices.lost_total,
            lost_event_markers: notices.lost.len() as u64,
            overwritten_events: 0,
        }
    }
}

/// How many example lines of each kind of notice are kept for the report.
pub const EXAMPLES: usize = 5;

/// One recorded loss of trace data.
#[derive(Clone, Debug)]
pub struct Loss {
    pub cpu: u32,
    pub count: Option<u64>,
    pub ts_ns: Option<u64>,
    pub origin: Origin,
}

#[derive(Default)]
pub struct NoticeLog {
    /// Every loss marker (one per marker, so bounded by the trace's markers, not its events).
    pub lost: Vec<Loss>,
    pub lost_total: u64,
    pub buffer_started: Vec<u32>,
    pub unparsed: u64,
    pub unparsed_examples: Vec<(String, String, String)>,
    pub warnings: u64,
    pub warning_examples: Vec<(String, String)>,
    /// Losses before a CPU's first event: the overwritten past of a flight recorder.
    pub overwritten: Vec<Loss>,
    pub overwritten_total: u64,
}

/// At most this many loss markers are kept individually; the rest are summed.
const MAX_LOSSES: usize = 10_000;

impl NoticeLog {
    pub fn add(&mut self, n: &Notice) {
        match n {
            Notice::LostEvents {
                cpu,
                count,
                ts_ns,
                origin,
            } => {
                self.lost_total += count.unwrap_or(0);
                if self.lost.len() < MAX_LOSSES {
                    self.lost.push(Loss {
                        cpu: *cpu,
                        count: *count,
                        ts_ns: *ts_ns,
                        origin: *origin,
                    });
                }
            }
            Notice::BufferStarted { cpu, .. } => {
                if !self.buffer_started.contains(cpu) {
                    self.buffer_started.push(*cpu);
                }
            }
            Notice::Unparsed {
                origin,
                text,
                reason,
            } => {
                self.unparsed += 1;
                if self.unparsed_examples.len() < EXAMPLES {
                    self.unparsed_examples
                        .push((origin.to_string(), text.clone(), reason.clone()));
                }
            }
            Notice::Warning { origin, message } => {
                self.warnings += 1;
                if self.warning_examples.len() < EXAMPLES {
                    self.warning_examples
                        .push((origin.to_string(), message.clone()));
                }
            }
        }
    }

    /// A loss before `cpu`'s first event.
    pub fn add_overwritten(&mut self, cpu: u32, count: Option<u64>, origin: Origin) {
        self.overwritten_total += count.unwrap_or(0);
        if self.overwritten.len() < MAX_LOSSES {
            self.overwritten.push(Loss {
                cpu,
                count,
                ts_ns: None,
                origin,
            });
        }
    }

    /// One `trace_overwritten` note when the ring buffer overwrote events
    /// before the trace starts (the header's count, or losses before each
    /// CPU's first event): the trace is the buffer's last part, not a gap.
    pub fn overwritten_finding(&self, header: Option<u64>) -> Option<Finding> {
        let header = header.filter(|&n| n > 0);
        if header.is_none() && self.overwritten.is_empty() {
            return None;
        }
        let total = header.unwrap_or(0).max(self.overwritten_total);
        let at = self.overwritten.first().map(|l| l.origin.to_string());
        let mut f = Finding::new(
            Kind::TraceOverwritten,
            Severity::Info,
            Confidence::Observed,
            Details::Overwritten {
                overwritten: total,
                at,
            },
        );
        let per_cpu: Vec<String> = self
            .overwritten
            .iter()
            .map(|l| match l.count {
                Some(n) => format!("CPU {} {n}", l.cpu),
                None => format!("CPU {} some", l.cpu),
            })
            .collect();
        let what = match (header, per_cpu.is_empty()) {
            (Some(n), _) => format!("{n} older events were overwritten before the trace starts (entries-in-buffer/entries-written)"),
            (None, false) => format!("older events were overwritten before each CPU's first event ({})", per_cpu.join(", ")),
            (None, true) => unreachable!(),
        };
        f.message = format!(
            "{what}: the ring buffer ran in overwrite mode (a flight recorder), so the trace is its last part; nothing is missing inside it, but state from before the first event (tasks, mms, a switch in progress) is unknown"
        );
        Some(f)
    }

    /// One `trace_data_loss` finding per loss marker.
    pub fn data_loss_findings(&self) -> Vec<Finding> {
        self.lost
            .iter()
            .map(|l| {
                let what = match l.count {
                    Some(n) => format!("{n} events"),
                    None => "an unknown number of events".to_string(),
                };
                let mut f = Finding::new(
                    Kind::TraceDataLoss,
                    Severity::Warning,
                    Confidence::Observed,
                    Details::DataLoss { lost: l.count, at: l.origin.to_string() },
                );
                f.ts_ns = l.ts_ns;
                f.cpu = Some(l.cpu);
                f.message = format!(
                    "CPU {} lost {what} ({}): the ring buffer overflowed; findings near this point may be incomplete (record with a larger buffer, trace-cmd record -b)",
                    l.cpu, l.origin
                );
                f
            })
            .collect()
    }
}

impl NoticeLog {
    /// The report's `parse` block: the reader's counts and this log's examples.
    pub fn parse_block(&self, stats: &nmitrace_parser::ParseStats) -> ParseBlock {
        let notices = self;
        let ex = |pairs: &[(&str, &String)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).clone()))
                .collect()
        };
        ParseBlock {
            lines: stats.lines,
            unparsed_lines: notices.unparsed,
            unparsed_examples: notices
                .unparsed_examples
                .iter()
                .map(|(at, text, why)| ex(&[("at", at), ("text", text), ("reason", why)]))
                .collect(),
            warnings: notices.warnings,
            warning_examples: notices
                .warning_examples
                .iter()
                .map(|(at, m)| ex(&[("at", at), ("message", m)]))
                .collect(),
        }
    }
}
