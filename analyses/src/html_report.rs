//! One self-contained HTML page per report (or per batch): summary, the
//! findings with their evidence lines, NMI statistics, and the charts as
//! inline SVG. No scripts, no external resources.

use crate::finding::Severity;
use crate::Report;
use std::fmt::Write;

/// A chart to inline: title and SVG text.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub svg: String,
}

/// Findings shown in full at most (the rest are counted).
pub const MAX_FINDINGS_SHOWN: usize = 300;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:0;background:#f6f7f9;color:#1d2230}
header{background:#1d2230;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:6px 0 0;color:#c8ccd6;font-size:14px;word-break:break-all}
main{padding:12px 28px 40px;max-width:1260px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:18px;margin:0 0 10px}
table{border-collapse:collapse;font-size:14px} td,th{border-bottom:1px solid #e5e8ee;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:12px;font-weight:600;color:#fff}
.error{background:#d62728}.warning{background:#e6a000}.info{background:#2ca02c}.ok{background:#2ca02c}.failed{background:#7f7f7f}
.verdict{font-size:17px;font-weight:600}
.finding{border-left:4px solid #ccc;padding:6px 12px;margin:10px 0;background:#fafbfc}
.finding.sev-error{border-color:#d62728}.finding.sev-warning{border-color:#e6a000}.finding.sev-info{border-color:#2ca02c}
.finding h3{font-size:15px;margin:0 0 4px}.meta{color:#555;font-size:13px}
.msg{margin:6px 0;font-size:14px;line-height:1.4}
pre{background:#1d2230;color:#e8eaf0;padding:8px 10px;border-radius:5px;overflow-x:auto;font-size:12px;margin:6px 0}
details summary{cursor:pointer;color:#345;font-size:13px}
.chart svg{max-width:100%;height:auto;border:1px solid #e5e8ee;border-radius:4px}
.regression{color:#d62728;font-weight:600}
";

/// A whole page around `body`.
pub fn page(title: &str, subtitle: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>{CSS}</style></head><body><header><h1>{t}</h1><p>{s}</p></header><main>\n{body}\n</main></body></html>\n",
        t = esc(title),
        s = esc(subtitle)
    )
}

/// A table: header cells and rows of (already escaped) HTML cells; numeric
/// cells (all digits, dots, commas) are right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::from("<table>");
    if headers.iter().any(|h| !h.is_empty()) {
        o.push_str("<thead><tr>");
        for h in headers {
            let _ = write!(o, "<th>{}</th>", esc(h));
        }
        o.push_str("</tr></thead>");
    }
    o.push_str("<tbody>");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            let numeric = !c.is_empty()
                && c.chars().all(|ch| {
                    ch.is_ascii_digit() || ch == '.' || ch == ',' || ch == ' ' || ch == '%'
                });
            let _ = write!(
                o,
                "<td{}>{c}</td>",
                if numeric { " class=\"n\"" } else { "" }
            );
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    o
}

pub fn badge(severity: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        esc(severity),
        esc(severity)
    )
}

/// Charts as a section each.
pub fn charts_html(charts: &[Chart]) -> String {
    let mut o = String::new();
    for c in charts {
        let _ = write!(
            o,
            "<section class=\"chart\"><h2>{}</h2>{}</section>\n",
            esc(&c.title),
            strip_xml_decl(&c.svg)
        );
    }
    o
}

fn strip_xml_decl(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

use crate::units::fmt_ts;

fn fmt_dur(ns: u64) -> String {
    crate::units::fmt_ns(ns as f64)
}

/// The findings of a report as cards with their evidence lines.
pub fn findings_html(findings: &[crate::Finding], trace: Option<&str>) -> String {
    findings_with_zooms(findings, trace, &[])
}

/// The cards, each with its zoomed chart (`zooms`: finding index → chart) beside it.
pub fn findings_with_zooms(
    findings: &[crate::Finding],
    trace: Option<&str>,
    zooms: &[(usize, Chart)],
) -> String {
    let mut o = String::new();
    for (i, f) in findings.iter().enumerate().take(MAX_FINDINGS_SHOWN) {
        let _ = write!(
            o,
            "<div class=\"finding sev-{}\"><h3>{} {} <span class=\"meta\">({})</span></h3>",
            f.severity,
            badge(f.severity.as_str()),
            f.kind,
            f.confidence
        );
        let mut meta = Vec::new();
        if let Some(t) = trace {
            meta.push(format!("trace {}", esc(t)));
        }
        if let Some(ts) = f.ts_ns {
            meta.push(format!("at {} s", fmt_ts(ts)));
        }
        if let Some(c) = f.cpu {
            meta.push(format!("CPU {c}"));
        }
        if let Some(p) = f.pid {
            meta.push(format!("{}[{p}]", esc(f.comm.as_deref().unwrap_or(""))));
        }
        let _ = write!(
            o,
            "<div class=\"meta\">{}</div><div class=\"msg\">{}</div>",
            meta.join(" · "),
            esc(&f.message)
        );
        if let Some(at) = f.interrupted_at() {
            let _ = write!(
                o,
                "<div class=\"msg\"><b>interrupted at</b> <code>{}</code></div>",
                esc(&at)
            );
        }
        if let Some(c) = f.details.confirmed_by() {
            let _ = write!(o, "<div class=\"msg\"><b>confirmed by</b> {}</div>", esc(c));
        }
        if let Some((_, z)) = zooms.iter().find(|(k, _)| *k == i) {
            let _ = write!(
                o,
                "<figure class=\"zoom\"><figcaption>{}</figcaption>{}</figure>",
                esc(&z.title),
                z.svg
            );
        }
        if !f.evidence.is_empty() {
            let _ = write!(
                o,
                "<pre class=\"evidence\">{}</pre>",
                esc(&f.evidence.join("\n"))
            );
        }
        let d = serde_json::to_string_pretty(&f.details).unwrap_or_default();
        if d != "{}" {
            let _ = write!(
                o,
                "<details><summary>details</summary><pre>{}</pre></details>",
                esc(&d)
            );
        }
        o.push_str("</div>\n");
    }
    if findings.len() > MAX_FINDINGS_SHOWN {
        let _ = write!(
            o,
            "<p>{} more findings are in the JSON report and the findings table.</p>",
            findings.len() - MAX_FINDINGS_SHOWN
        );
    }
    o
}

/// The report of one trace as a self-contained page.
pub fn trace_html(r: &Report, charts: &[Chart]) -> String {
    trace_html_zoomed(r, charts, &[])
}

/// The page, with each zoomed finding's chart in its card.
pub fn trace_html_zoomed(r: &Report, charts: &[Chart], zooms: &[(usize, Chart)]) -> String {
    let mut b = String::new();
    // Verdict.
    let worst = r.max_severity();
    let verdict = match worst {
        Some(Severity::Error) => format!(
            "{} errors, {} findings in all",
            r.findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count(),
            r.findings.len()
        ),
        Some(Severity::Warning) => format!(
            "{} warnings, {} findings in all",
            r.findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .count(),
            r.findings.len()
        ),
        Some(_) => format!("{} informational findings", r.findings.len()),
        None => "no findings".to_string(),
    };
    let sev = match worst {
        Some(Severity::Error) => "error",
        Some(Severity::Warning) => "warning",
        _ => "ok",
    };
    let _ = write!(
        b,
        "<section><h2>Summary</h2><p class=\"verdict\"><span class=\"badge {sev}\">{sev}</span> <b>{}</b> — {}</p>",
        esc(&r.coverage.verdict),
        esc(&verdict)
    );
    let m = &r.input.model;
    let model = format!(
        "{} (kernel from {}, arch from {})",
        m.label, m.source, m.arch_source
    );
    let span = match (r.events.first_ts_ns, r.events.last_ts_ns) {
        (Some(a), Some(z)) => format!(
            "{} s → {} s ({})",
            fmt_ts(a),
            fmt_ts(z),
            fmt_dur(z.saturating_sub(a))
        ),
        _ => "-".into(),
    };
    let rows = vec![
        vec!["format".into(), esc(&r.input.format)],
        vec![
            "kernel (trace)".into(),
            esc(r.input.kernel.as_deref().unwrap_or("not in the trace")),
        ],
        vec![
            "arch (trace)".into(),
            esc(r.input.arch.as_deref().unwrap_or("not in the trace")),
        ],
        vec!["model".into(), esc(&model)],
        vec!["events".into(), r.events.total.to_string()],
        vec!["time span".into(), esc(&span)],
        vec!["CPUs".into(), r.events.by_cpu.len().to_string()],
        vec![
            "lost events".into(),
            format!(
                "{} ({} markers)",
                r.events.lost_events, r.events.lost_event_markers
            ),
        ],
        vec!["NMI instances".into(), r.nmis.instances.to_string()],
        vec!["unparsed lines".into(), r.parse.unparsed_lines.to_string()],
    ];
    b.push_str(&table(&["", ""], &rows));
    if !m.assumptions.is_empty() {
        b.push_str("<h2 style=\"margin-top:14px\">Assumptions</h2>");
        let rows: Vec<Vec<String>> = m
            .assumptions
            .iter()
            .map(|x| vec![esc(x.what), esc(&x.value.to_string()), esc(&x.source)])
            .collect();
        b.push_str(&table(&["what", "value", "from"], &rows));
    }
    if !r.coverage.checks.is_empty() {
        b.push_str("<h2 style=\"margin-top:14px\">What could be checked</h2>");
        let rows: Vec<Vec<String>> = r
            .coverage
            .checks
            .iter()
            .map(|c| vec![esc(c.analysis), esc(c.status), esc(&c.why)])
            .collect();
        b.push_str(&table(&["analysis", "status", "why"], &rows));
        if let Some(rec) = &r.coverage.record {
            let _ = write!(
                b,
                "<p>To check the rest, record: <code>{}</code></p>",
                esc(rec)
            );
        }
    }
    if !r.summary.is_empty() {
        b.push_str("<h2 style=\"margin-top:14px\">Findings by kind</h2>");
        let rows: Vec<Vec<String>> = r
            .summary
            .iter()
            .map(|(k, n)| {
                let worst = r
                    .findings
                    .iter()
                    .filter(|f| f.kind == *k)
                    .map(|f| f.severity)
                    .max()
                    .unwrap_or(Severity::Info);
                vec![k.to_string(), badge(worst.as_str()), n.to_string()]
            })
            .collect();
        b.push_str(&table(&["kind", "worst severity", "count"], &rows));
    }
    b.push_str("</section>\n");
    // NMI statistics.
    if !r.nmis.by_handler.is_empty() {
        let rows: Vec<Vec<String>> = r
            .nmis
            .by_handler
            .iter()
            .map(|(h, s)| {
                vec![
                    esc(h),
                    s.count.to_string(),
                    s.handled.to_string(),
                    esc(&fmt_dur(s.p50_ns)),
                    esc(&fmt_dur(s.p99_ns)),
                    esc(&fmt_dur(s.max_ns)),
                ]
            })
            .collect();
        let _ = write!(
            b,
            "<section><h2>NMI handlers</h2>{}</section>\n",
            table(&["handler", "calls", "handled", "p50", "p99", "max"], &rows)
        );
    }
    // Findings.
    let _ = write!(
        b,
        "<section id=\"findings\"><h2>Findings ({})</h2>",
        r.findings.len()
    );
    if r.findings.is_empty() {
        b.push_str("<p>No findings.</p>");
    }
    b.push_str(&findings_with_zooms(&r.findings, None, zooms));
    b.push_str("</section>\n");
    b.push_str(&charts_html(charts));
    // Model notes and parse warnings.
    let notes: Vec<String> = r.input.model.notes.iter().map(|n| esc(n)).collect();
    if !notes.is_empty() || r.parse.warnings > 0 {
        b.push_str("<section><h2>Notes</h2><ul>");
        for n in notes {
            let _ = write!(b, "<li>{n}</li>");
        }
        for w in &r.parse.warning_examples {
            let _ = write!(
                b,
                "<li>warning at {}: {}</li>",
                esc(w.get("at").map(|s| s.as_str()).unwrap_or("")),
                esc(w.get("message").map(|s| s.as_str()).unwrap_or(""))
            );
        }
        b.push_str("</ul></section>\n");
    }
    page(
        &format!("nmitrace report: {}", short(&r.input.path)),
        &r.input.path,
        &b,
    )
}

fn short(p: &str) -> String {
    let parts: Vec<&str> = p.rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_is_self_contained() {
        let mut r = Report::new("a<b>.txt", &Default::default());
        let mut f = crate::Finding::new(
            crate::Kind::UnknownNmi,
            Severity::Warning,
            crate::Confidence::Observed,
            crate::finding::Details::Latch(Default::default()),
        );
        f.message = "x < y & z".into();
        f.evidence
            .push("<idle>-0 [001] d.Z1. 1.000000: nmi_handler: ...".into());
        r.findings.push(f);
        r.finalize();
        let h = trace_html(
            &r,
            &[Chart {
                title: "t".into(),
                svg: "<?xml version=\"1.0\"?><svg></svg>".into(),
            }],
        );
        assert!(h.contains("x &lt; y &amp; z"));
        assert!(h.contains("&lt;idle&gt;-0"));
        assert!(h.contains("<section class=\"chart\"><h2>t</h2><svg>"));
        assert!(!h.contains("<script") && !h.contains("http://") && !h.contains("https://"));
    }
}
