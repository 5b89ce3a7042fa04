//! `Sink::countable`: a reader (trace.dat's, a text trace's) that counts
//! instead of delivering events keeps everything a sink could see. On a real trace (gcc-medium,
//! 87 % user page faults): delivered plus counted is every event, per CPU
//! and per name; on each CPU the delivered events keep every change of pid,
//! every event in NMI or hardirq context and every event of another kind,
//! in order; the counted ones' time span lies inside the trace's.

use nmitrace_parser::{Counted, Event, EventKind, Flow, Notice, Sink, Trace, CONTINUE};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Default)]
struct All {
    /// (cpu, pid, kind is countable, plain context, name) of every event,
    /// in order; plain: task or softirq, or not said (no flags column).
    seen: Vec<(u32, i32, bool, bool, String)>,
    /// Whether each event's context was said (flags).
    known: Vec<bool>,
    counted: BTreeMap<(u32, String), u64>,
    /// Where each event of `seen` is (its line, its byte offset).
    at: Vec<String>,
    span: Option<(u64, u64)>,
    countable: bool,
}

fn countable_kind(k: EventKind) -> bool {
    matches!(k, EventKind::PageFaultUser | EventKind::Other)
}

impl Sink for All {
    fn event(&mut self, ev: &Event<'_>) -> Flow {
        let plain = !ev.ctx.known || (!ev.ctx.nmi && !ev.ctx.hardirq);
        self.known.push(ev.ctx.known);
        self.seen.push((
            ev.cpu,
            ev.pid,
            countable_kind(ev.kind),
            plain,
            ev.name.to_string(),
        ));
        self.at.push(ev.origin.to_string());
        let (lo, hi) = self.span.unwrap_or((u64::MAX, 0));
        self.span = Some((lo.min(ev.ts_ns), hi.max(ev.ts_ns)));
        CONTINUE
    }
    fn notice(&mut self, _: &Notice) {}
    fn countable(&self, kind: EventKind) -> bool {
        self.countable && countable_kind(kind)
    }
    fn counted(&mut self, c: &Counted<'_>) -> nmitrace_parser::Flow {
        *self.counted.entry((c.cpu, c.name.to_string())).or_default() += c.count;
        let (lo, hi) = self.span.unwrap();
        assert!(
            c.first_ts_ns >= lo && c.last_ts_ns <= hi && c.first_ts_ns <= c.last_ts_ns,
            "{c:?}"
        );
        CONTINUE
    }
}

fn read(path: &PathBuf, countable: bool) -> All {
    let mut s = All {
        countable,
        ..Default::default()
    };
    let mut t = Trace::open(path).unwrap();
    t.threads = Some(2);
    t.run(&mut s).unwrap();
    s
}

/// gcc-medium's `file` read twice, every event delivered, then with
/// counting: per CPU and name, delivered + counted = all, and more than half
/// is counted. Returns both readings and the number counted.
fn read_both(file: &str) -> (All, All, u64) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/real/gcc-medium")
        .join(file);
    let all = read(&path, false);
    let some = read(&path, true);
    assert!(all.counted.is_empty());
    let counted: u64 = some.counted.values().sum();
    assert_eq!(some.seen.len() as u64 + counted, all.seen.len() as u64);
    assert!(
        counted * 2 > all.seen.len() as u64,
        "only {counted} of {} counted",
        all.seen.len()
    );
    let tally = |v: &[(u32, i32, bool, bool, String)]| {
        let mut m: BTreeMap<(u32, String), u64> = BTreeMap::new();
        for e in v {
            *m.entry((e.0, e.4.clone())).or_default() += 1;
        }
        m
    };
    let mut got = tally(&some.seen);
    for (k, n) in &some.counted {
        *got.entry(k.clone()).or_default() += n;
    }
    assert_eq!(
        got,
        tally(&all.seen),
        "{file}: delivered + counted per CPU and name"
    );
    (all, some, counted)
}

#[test]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
fn counted_events_are_the_ones_that_tell_nothing_new() {
    let (all, some, _) = read_both("trace.dat");
    // Per CPU: what the full stream keeps after dropping the events that
    // repeat the previous plain countable event's pid is exactly what was delivered.
    let mut cpus: BTreeMap<u32, (Vec<(i32, String)>, Option<i32>)> = BTreeMap::new();
    for (cpu, pid, ck, plain, name) in &all.seen {
        let (keep, last) = cpus.entry(*cpu).or_default();
        if *ck && *plain {
            if *last == Some(*pid) {
                continue;
            }
            *last = Some(*pid);
        } else {
            *last = None;
        }
        keep.push((*pid, name.clone()));
    }
    let mut delivered: BTreeMap<u32, Vec<(i32, String)>> = BTreeMap::new();
    for (cpu, pid, _, _, name) in &some.seen {
        delivered
            .entry(*cpu)
            .or_default()
            .push((*pid, name.clone()));
    }
    for (cpu, (keep, _)) in cpus {
        assert_eq!(delivered.get(&cpu), Some(&keep), "CPU {cpu}");
    }
}

/// A text trace's reader counts by the same rule, each chunk of lines
/// starting afresh: what it delivers lies between what the rule keeps over
/// the whole stream and everything, and delivered + counted = all, per CPU
/// and name. Without a flags column (`trace-cmd report`) a counted event
/// repeats both the pid and the event of the CPU's previous one.
#[test]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
fn a_text_trace_counts_by_the_same_rule() {
    for file in ["trace.txt.gz", "report.txt.gz"] {
        let (all, some, counted) = read_both(file);
        // Per CPU, walking the full stream: an event the reader delivered
        // is kept; one it counted must repeat the pid (and, context unsaid,
        // the name) of the CPU's previous countable event, itself such an
        // event with its context said or unsaid alike.
        let delivered: std::collections::HashSet<&String> = some.at.iter().collect();
        let mut last: BTreeMap<u32, Option<(i32, bool, String)>> = BTreeMap::new();
        let mut skipped = 0u64;
        for (((cpu, pid, ck, plain, name), at), known) in
            all.seen.iter().zip(&all.at).zip(&all.known)
        {
            let l = last.entry(*cpu).or_default();
            if !delivered.contains(at) {
                let repeats = l
                    .as_ref()
                    .is_some_and(|(p, k, n)| p == pid && k == known && (*known || n == name));
                assert!(
                    *ck && *plain && repeats,
                    "{file}: CPU {cpu}: a counted {name} of pid {pid} that the rule keeps"
                );
                skipped += 1;
            }
            *l = (*ck && *plain).then(|| (*pid, *known, name.clone()));
        }
        assert_eq!(skipped, counted, "{file}");
        // the report has no flags column: every event's context is unsaid
        assert_eq!(
            all.known.iter().any(|k| *k),
            file == "trace.txt.gz",
            "{file}"
        );
    }
}
