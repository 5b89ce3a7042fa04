//! Zoomed timelines: for each finding about an NMI or a switch (up to a
//! cap), the events of its CPU from a few microseconds to a few
//! milliseconds around it, as the trace printed them — `sched_switch`,
//! `tlb_flush`, the NMI handlers' intervals, the NMI's console lines,
//! faults — with the switch window drawn from its bounds.
//!
//! The events come from a second pass over the trace ([`collect`]): the
//! report keeps no events, only their summary.

use super::{palette, Plot, FONT};
use crate::Report;
use nmitrace_parser::{Event, Notice, Sink};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Findings zoomed at most per trace.
pub const MAX_ZOOMS: usize = 12;
/// Events kept per zoom at most.
const MAX_EVENTS: usize = 400;
/// The widest zoom.
const MAX_SPAN_NS: u64 = 5_000_000;

/// One event on the zoomed CPU.
#[derive(Clone, Debug)]
pub struct ZoomEvent {
    pub ts_ns: u64,
    pub name: String,
    pub pid: i32,
    pub nmi: bool,
    /// The handler's start (`ts - delta_ns`) for an `nmi_handler` event.
    pub nmi_start: Option<u64>,
    /// A short label: `prev→next`, the handler, the console text, the address.
    pub label: String,
    pub line: String,
}

/// What one zoom shows.
#[derive(Clone, Debug)]
pub struct Zoom {
    /// The finding's index in the report.
    pub finding: usize,
    pub kind: crate::Kind,
    pub severity: crate::Severity,
    pub cpu: u32,
    pub ts_ns: u64,
    pub lo: u64,
    pub hi: u64,
    pub window: Option<(u64, Option<u64>)>,
    pub events: Vec<ZoomEvent>,
    /// Events of the CPU in the range beyond what was kept.
    pub dropped: u64,
}

/// The zooms the report's findings call for (NMI and switch findings on a
/// CPU, most severe first, then in time), without their events yet.
pub fn plan(r: &Report) -> Vec<Zoom> {
    let mut idx: Vec<usize> = (0..r.findings.len())
        .filter(|&i| r.findings[i].cpu.is_some() && r.findings[i].ts_ns.is_some())
        .collect();
    // trace-wide notes are no place to zoom
    idx.retain(|&i| {
        !r.findings[i].kind.is_trace_note() && r.findings[i].kind != crate::Kind::VmallocExposure
    });
    idx.sort_by_key(|&i| {
        (
            std::cmp::Reverse(r.findings[i].severity),
            r.findings[i].ts_ns,
        )
    });
    idx.truncate(MAX_ZOOMS);
    idx.sort_unstable();
    idx.into_iter()
        .map(|i| {
            let f = &r.findings[i];
            let ts = f.ts_ns.unwrap_or(0);
            let mut a = ts;
            let mut b = ts;
            for v in f.details.times() {
                a = a.min(v);
                b = b.max(v);
            }
            // as much again on each side, at least 5 µs, at most MAX_SPAN_NS in all
            let pad = (b - a).max(5_000);
            let (mut lo, mut hi) = (a.saturating_sub(pad), b.saturating_add(pad));
            if hi - lo > MAX_SPAN_NS {
                lo = ts.saturating_sub(MAX_SPAN_NS / 2);
                hi = lo + MAX_SPAN_NS;
            }
            let window = f.details.window();
            Zoom {
                finding: i,
                kind: f.kind,
                severity: f.severity,
                cpu: f.cpu.unwrap_or(0),
                ts_ns: ts,
                lo,
                hi,
                window,
                events: Vec::new(),
                dropped: 0,
            }
        })
        .collect()
}

/// A sink that keeps the zooms' events.
pub struct Collector {
    pub zooms: Vec<Zoom>,
    /// The last zoom's end: reading can stop there.
    end: u64,
}

impl Collector {
    pub fn new(zooms: Vec<Zoom>) -> Collector {
        let end = zooms.iter().map(|z| z.hi).max().unwrap_or(0);
        Collector { zooms, end }
    }
}

fn label(ev: &Event<'_>) -> (String, Option<u64>) {
    let f = &ev.fields;
    let s = |n: &str| f.get(n).map(|v| v.to_string()).unwrap_or_default();
    match ev.name {
        "sched_switch" => (format!("{}→{}", s("prev_pid"), s("next_pid")), None),
        "tlb_flush" => (format!("flush r{}", s("reason")), None),
        "nmi_handler" => {
            let d = f.get("delta_ns").and_then(|v| v.as_u64()).unwrap_or(0);
            let h = f.get("handler").map(|v| v.to_string()).unwrap_or_default();
            (
                h.trim_end_matches("()").to_string(),
                Some(ev.ts_ns.saturating_sub(d)),
            )
        }
        "console" => {
            let m = s("msg");
            (m.chars().take(28).collect(), None)
        }
        n if n.starts_with("page_fault") => (s("address"), None),
        n => (n.to_string(), None),
    }
}

impl Sink for Collector {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        if ev.ts_ns > self.end.saturating_add(MAX_SPAN_NS) {
            // every zoom is filled (events are in time order, give or take a CPU's skew)
            return nmitrace_parser::STOP;
        }
        for z in self.zooms.iter_mut() {
            if ev.cpu != z.cpu || ev.ts_ns < z.lo || ev.ts_ns > z.hi {
                continue;
            }
            if z.events.len() >= MAX_EVENTS {
                z.dropped += 1;
                continue;
            }
            let (label, nmi_start) = label(ev);
            z.events.push(ZoomEvent {
                ts_ns: ev.ts_ns,
                name: ev.name.to_string(),
                pid: ev.pid,
                nmi: ev.ctx.nmi,
                nmi_start,
                label,
                line: nmitrace_replay::event_line(ev),
            });
        }
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, _n: &Notice) {}
}

/// Read the trace at `path` again for the zooms of `report` (none for
/// standard input, which cannot be read twice).
pub fn collect(path: &str, report: &Report, threads: Option<usize>) -> Result<Vec<Zoom>, String> {
    let zooms = plan(report);
    if zooms.is_empty() || path == "-" || path == "<stdin>" {
        return Ok(Vec::new());
    }
    let mut t = nmitrace_parser::Trace::open(path).map_err(|e| e.to_string())?;
    t.threads = threads;
    t.probe().map_err(|e| e.to_string())?;
    let mut c = Collector::new(zooms);
    t.run(&mut c).map_err(|e| e.to_string())?;
    Ok(c.zooms)
}

/// The lanes, top to bottom.
const LANES: [&str; 5] = ["sched", "tlb_flush", "NMI", "faults", "other"];

fn lane(e: &ZoomEvent) -> usize {
    match e.name.as_str() {
        n if n.starts_with("sched_") => 0,
        "tlb_flush" => 1,
        "nmi_handler" => 2,
        _ if e.nmi => 2,
        n if n.starts_with("page_fault") => 3,
        _ => 4,
    }
}

/// A zoom drawn.
pub struct ZoomPlot<'z> {
    pub zoom: &'z Zoom,
    name: String,
}

impl<'z> ZoomPlot<'z> {
    /// The `n`-th zoom of a trace: `zoom-N-KIND.svg`.
    pub fn new(zoom: &'z Zoom, n: usize) -> ZoomPlot<'z> {
        ZoomPlot {
            zoom,
            name: format!("zoom-{}-{}", n + 1, zoom.kind),
        }
    }
}

impl Plot for ZoomPlot<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn title(&self) -> String {
        let z = self.zoom;
        format!(
            "{} on CPU {} at {}: {} µs around it",
            z.kind,
            z.cpu,
            crate::units::fmt_ts(z.ts_ns),
            (z.hi - z.lo) / 1000
        )
    }

    fn size(&self) -> (u32, u32) {
        (1100, 380)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let z = self.zoom;
        let x = |ns: u64| (ns as f64 - z.ts_ns as f64) / 1000.0;
        let (x0, x1) = (x(z.lo), x(z.hi));
        let (_, h) = root.dim_in_pixel();
        let (root, legend_area) = root.split_vertically(h - super::legend_height(1));
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title(), (FONT, 17))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, -0.6f64..(LANES.len() as f64 - 0.4))
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(LANES.len())
            .y_label_formatter(&|y| {
                let i = y.round() as i64;
                if (y - i as f64).abs() < 1e-6 && (0..LANES.len() as i64).contains(&i) {
                    LANES[LANES.len() - 1 - i as usize].to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("µs from the finding")
            .label_style((FONT, 13))
            .draw()
            .map_err(e)?;
        let y_of = |l: usize| (LANES.len() - 1 - l) as f64;
        // the window, from its bounds (open: to the right edge)
        if let Some((s, end)) = z.window {
            let xe = end.map(x).unwrap_or(x1).min(x1);
            let xs = x(s).max(x0);
            if xe >= xs {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (xs, -0.6),
                            (xe.max(xs + (x1 - x0) / 400.0), LANES.len() as f64 - 0.4),
                        ],
                        palette::WINDOW.mix(0.25).filled(),
                    )))
                    .map_err(e)?;
            }
        }
        // NMI handler intervals as bars
        let bars: Vec<(f64, f64)> = z
            .events
            .iter()
            .filter_map(|ev| ev.nmi_start.map(|s| (x(s).max(x0), x(ev.ts_ns))))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(a, b)| {
                Rectangle::new(
                    [
                        (a, y_of(2) - 0.28),
                        (b.max(a + (x1 - x0) / 500.0), y_of(2) + 0.28),
                    ],
                    palette::NMI.mix(0.55).filled(),
                )
            }))
            .map_err(e)?;
        // the events, with a few labels (alternating heights so they do not
        // collide); the ones that bound the window and the NMI always
        let style = TextStyle::from((FONT, 11).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let key_style = TextStyle::from((FONT, 12).into_font().style(FontStyle::Bold))
            .color(&palette::ERROR)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let (ws, we) = match z.window {
            Some((s, e)) => (Some(s), e),
            None => (None, None),
        };
        let first_flush = ws.and_then(|s| {
            z.events
                .iter()
                .find(|e| e.name == "tlb_flush" && e.ts_ns >= s)
                .map(|e| e.ts_ns)
        });
        let is_key = |ev: &ZoomEvent| {
            Some(ev.ts_ns) == ws && ev.name == "sched_switch"
                || Some(ev.ts_ns) == we
                || ev.nmi_start.is_some()
                || (ev.name == "tlb_flush" && Some(ev.ts_ns) == first_flush)
        };
        let mut last_label_x = [f64::MIN; LANES.len()];
        let mut flip = [false; LANES.len()];
        let mut keys = Vec::new();
        for ev in &z.events {
            if is_key(ev) {
                keys.push(ev);
            }
            let l = lane(ev);
            let c = match l {
                0 => RGBColor(60, 60, 60),
                1 => palette::WINDOW,
                2 => palette::NMI,
                3 => palette::FAULT,
                _ => RGBColor(120, 120, 120),
            };
            let px = x(ev.ts_ns);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(px, y_of(l) - 0.2), (px, y_of(l) + 0.2)],
                    c.stroke_width(2),
                )))
                .map_err(e)?;
            let min_gap = (x1 - x0) / 14.0;
            if !is_key(ev) && px - last_label_x[l] >= min_gap {
                last_label_x[l] = px;
                flip[l] = !flip[l];
                let dy = if flip[l] { 0.34 } else { -0.34 };
                chart
                    .draw_series(std::iter::once(Text::new(
                        ev.label.clone(),
                        (px, y_of(l) + dy),
                        style.clone(),
                    )))
                    .map_err(e)?;
            }
        }
        for ev in keys {
            let l = lane(ev);
            let px = x(ev.ts_ns);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(px, y_of(l) - 0.3), (px, y_of(l) + 0.3)],
                    palette::ERROR.stroke_width(3),
                )))
                .map_err(e)?;
            let text = if ev.label == ev.name || ev.label.is_empty() {
                ev.name.clone()
            } else {
                format!("{} {}", ev.name, ev.label)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (px, y_of(l) + 0.42),
                    key_style.clone(),
                )))
                .map_err(e)?;
        }
        // the finding
        let fc = palette::severity(z.severity.as_str());
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -0.6), (0.0, LANES.len() as f64 - 0.4)],
                fc.stroke_width(2),
            )))
            .map_err(e)?;
        let mut legend = vec![
            (
                format!("{} ({})", z.kind, z.severity),
                super::Mark::Line(fc),
            ),
            (
                "NMI handler interval".to_string(),
                super::Mark::Rect(palette::NMI),
            ),
        ];
        if z.window.is_some() {
            legend.push((
                "switch window (cr3 = next, current = prev)".into(),
                super::Mark::Rect(palette::WINDOW),
            ));
        }
        if z.dropped > 0 {
            legend.push((
                format!("{} more events not drawn", z.dropped),
                super::Mark::Line(RGBColor(200, 200, 200)),
            ));
        }
        super::legend_strip(&legend_area, &legend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_zooms_nmi_findings_around_their_bounds() {
        let mut r = Report::new("t", &Default::default());
        use crate::finding::*;
        let nmi = NmiFacts {
            nmi_start_ns: 100_000,
            nmi_end_ns: 230_000,
            handled: 1,
            handlers: Vec::new(),
            interrupted: None,
        };
        let w = WindowDetails {
            nmi,
            prev_pid: 1,
            prev_comm: None,
            next_pid: 2,
            next_comm: None,
            bounds: Some(WindowBounds {
                current_mm: "a".into(),
                cr3_mm: "b".into(),
                window_start_ns: 90_000,
                window_end_ns: None,
            }),
            window_from: "tlb_flush reason 0".into(),
            fault_in_nmi: None,
            reverse: None,
            confirmed_by: None,
        };
        let mut f = Finding::new(
            Kind::Cr3CurrentMismatch,
            Severity::Warning,
            Confidence::Observed,
            Details::Window(Box::new(w)),
        );
        f.cpu = Some(1);
        f.ts_ns = Some(100_000);
        r.findings.push(f);
        let mut note = Finding::new(
            Kind::TraceOverwritten,
            Severity::Info,
            Confidence::Observed,
            Details::Overwritten {
                overwritten: 1,
                at: None,
            },
        );
        note.cpu = Some(0);
        note.ts_ns = Some(1);
        r.findings.push(note);
        let z = plan(&r);
        assert_eq!(z.len(), 1);
        assert_eq!((z[0].lo, z[0].hi), (0, 370_000));
        assert_eq!(z[0].window, Some((90_000, None)));
    }
}
