//! The human report: verdict first, then the model, the NMIs, and each
//! finding with the trace lines that prove it.

use crate::finding::{Finding, Severity};
use crate::report::Report;
use std::fmt::Write;

fn wrap(out: &mut String, indent: &str, text: &str, width: usize) {
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

fn ts(ns: u64) -> String {
    crate::units::fmt_ts(ns)
}

impl Report {
    /// A readable report: verdict first, the model printed, each finding with
    /// its evidence lines as the trace printed them.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let count = |sev: Severity| self.findings.iter().filter(|f| f.severity == sev).count();
        let (e, w, i) = (
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info),
        );
        let _ = writeln!(s, "nmitrace: {} ({})", self.input.path, self.input.format);
        let verdict = if self.coverage.verdict.is_empty() {
            "?"
        } else {
            self.coverage.verdict.as_str()
        };
        let _ = writeln!(
            s,
            "verdict: {verdict} — {e} error(s), {w} warning(s), {i} info"
        );
        if !self.summary.is_empty() {
            let kinds: Vec<String> = self
                .summary
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(s, "  {}", kinds.join(", "));
        }
        let uncovered: Vec<&crate::coverage::Check> = self
            .coverage
            .checks
            .iter()
            .filter(|c| c.status != "checked")
            .collect();
        if !uncovered.is_empty() {
            let _ = writeln!(s, "\ncoverage:");
            for c in &uncovered {
                wrap(
                    &mut s,
                    "  ",
                    &format!("{}: {} ({})", c.analysis, c.status, c.why),
                    100,
                );
            }
            if let Some(r) = &self.coverage.record {
                wrap(&mut s, "  ", &format!("record: {r}"), 100);
            }
        }
        let m = &self.input.model;
        let _ = writeln!(
            s,
            "\nmodel: {} (kernel from {}, arch from {})",
            m.label, m.source, m.arch_source
        );
        let parts: Vec<String> = m
            .assumptions
            .iter()
            .map(|x| format!("{} {} ({})", x.what, x.value, x.source))
            .collect();
        wrap(&mut s, "  ", &format!("assumed: {}", parts.join(", ")), 100);
        if m.what_if {
            let _ = writeln!(
                s,
                "  WHAT-IF: replayed under a different kernel than the trace came from ({})",
                m.trace_kernel.as_deref().unwrap_or("?")
            );
        }
        let _ = writeln!(s, "  era: {}", m.era);
        let _ = writeln!(
            s,
            "  vmalloc: {}-{} ({} entries, {})",
            m.vmalloc_range[0], m.vmalloc_range[1], m.vmalloc_entries, m.vmalloc_range_from
        );
        let _ = writeln!(
            s,
            "  switch windows from: {}; b2b threshold: {} ns",
            m.switch_windows_from, m.b2b_threshold_ns
        );
        for n in &m.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        let ev = &self.events;
        let span = match (ev.first_ts_ns, ev.last_ts_ns) {
            (Some(a), Some(b)) => format!("{} .. {}", ts(a), ts(b)),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "\nevents: {} on {} CPUs, {span}",
            ev.total,
            ev.by_cpu.len()
        );
        if ev.lost_event_markers > 0 {
            let _ = writeln!(
                s,
                "  lost: {} events in {} markers",
                ev.lost_events, ev.lost_event_markers
            );
        }
        if self.parse.unparsed_lines > 0 {
            let _ = writeln!(s, "  unparsed lines: {}", self.parse.unparsed_lines);
            for x in &self.parse.unparsed_examples {
                let g = |k: &str| x.get(k).map(|v| v.as_str()).unwrap_or("");
                let _ = writeln!(s, "    {}: {} ({})", g("at"), g("text"), g("reason"));
            }
        }
        if self.parse.warnings > 0 {
            let _ = writeln!(s, "  warnings: {}", self.parse.warnings);
            for x in &self.parse.warning_examples {
                let g = |k: &str| x.get(k).map(|v| v.as_str()).unwrap_or("");
                wrap(
                    &mut s,
                    "    ",
                    &format!("{}: {}", g("at"), g("message")),
                    100,
                );
            }
        }
        let _ = writeln!(s, "nmis: {} instances", self.nmis.instances);
        for (h, st) in &self.nmis.by_handler {
            let _ = writeln!(
                s,
                "  {h:<32} count {:>8}  handled {:>8}  p50 {:>9} ns  p99 {:>9} ns  max {:>9} ns",
                st.count, st.handled, st.p50_ns, st.p99_ns, st.max_ns
            );
        }
        let mut order: Vec<&Finding> = self.findings.iter().collect();
        order.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.ts_ns.cmp(&b.ts_ns)));
        let _ = writeln!(s, "\nfindings: {}", order.len());
        for f in order {
            let mut head = format!(
                "[{}] {} ({})",
                f.severity.as_str().to_uppercase(),
                f.kind,
                f.confidence
            );
            if let Some(t) = f.ts_ns {
                let _ = write!(head, " at {}", ts(t));
            }
            if let Some(c) = f.cpu {
                let _ = write!(head, " CPU {c}");
            }
            if let Some(p) = f.pid {
                let _ = write!(head, " {}[{p}]", f.comm.as_deref().unwrap_or(""));
            }
            let _ = writeln!(s, "\n{head}");
            wrap(&mut s, "    ", &f.message, 100);
            if let Some(at) = f.interrupted_at() {
                let _ = writeln!(s, "    interrupted at: {at}");
            }
            if let Some(c) = f.details.confirmed_by() {
                wrap(&mut s, "    ", &format!("confirmed by: {c}"), 100);
            }
            if !f.evidence.is_empty() {
                let _ = writeln!(s, "    evidence:");
                for l in &f.evidence {
                    let _ = writeln!(s, "      | {l}");
                }
            }
        }
        s
    }
}
