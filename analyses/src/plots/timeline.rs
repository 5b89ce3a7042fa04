//! Per-CPU timeline of one trace: a lane per CPU with its switch windows,
//! kernel-mode faults, NMI instances and findings (marked and labelled).

use super::{palette, Plot, TimeAxis, FONT};
use crate::Report;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Points drawn per series at most (evenly spaced sample beyond).
const MAX_DRAWN: usize = 4000;
/// Findings labelled at most (all are marked).
const MAX_LABELS: usize = 40;
const LABEL_LEVELS: usize = 3;

pub struct TimelinePlot<'r> {
    report: &'r Report,
    timeline: &'r crate::timeline::Timeline,
    cpus: Vec<u32>,
    axis: TimeAxis,
    span: f64,
}

fn sample<T>(v: &[T]) -> impl Iterator<Item = &T> {
    let step = v.len().div_ceil(MAX_DRAWN).max(1);
    v.iter().step_by(step)
}

impl<'r> TimelinePlot<'r> {
    pub fn new(a: &'r crate::Analysis) -> TimelinePlot<'r> {
        let report = &a.report;
        let mut cpus: Vec<u32> = report
            .events
            .by_cpu
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect();
        cpus.sort_unstable();
        let first = report.events.first_ts_ns.unwrap_or(0);
        let last = report.events.last_ts_ns.unwrap_or(first).max(first + 1);
        let axis = TimeAxis::for_span(first, last - first);
        let span = axis.x(last);
        TimelinePlot {
            report,
            timeline: &a.timeline,
            cpus,
            axis,
            span,
        }
    }

    fn lane(&self, cpu: u32) -> Option<f64> {
        self.cpus.binary_search(&cpu).ok().map(|i| i as f64)
    }
}

impl Plot for TimelinePlot<'_> {
    fn name(&self) -> &str {
        "timeline"
    }

    fn title(&self) -> String {
        "Per-CPU timeline: NMIs, switch windows, faults, findings".into()
    }

    fn size(&self) -> (u32, u32) {
        (1200, (220 + 110 * self.cpus.len().clamp(1, 16)) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        if self.cpus.is_empty() {
            return super::draw_message(root, &self.title(), "no events in this trace");
        }
        let tl = self.timeline;
        let n = self.cpus.len() as f64;
        let start_s = self.axis.origin_ns as f64 / 1e9;
        let caption = format!(
            "Per-CPU timeline of {} (starts at {start_s:.6} s)",
            short_path(&self.report.input.path)
        );
        let (w, h) = root.dim_in_pixel();
        let _ = w;
        let (root, legend_area) = root.split_vertically(h - super::legend_height(2));
        let mut legend: Vec<(String, super::Mark)> = Vec::new();
        let root = &root;
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..self.span * 1.02, -0.55f64..(n - 0.5 + 0.15))
            .map_err(e)?;
        let ncpu = self.cpus.len();
        let cpus = self.cpus.clone();
        let ylab = move |y: &f64| {
            let r = y.round();
            if (y - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < ncpu {
                format!("CPU {}", cpus[r as usize])
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(ncpu * 2 + 2)
            .y_label_formatter(&ylab)
            .x_labels(12)
            .x_desc(format!("time since the first event ({})", self.axis.unit))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;

        // Lane separators.
        chart
            .draw_series((1..self.cpus.len()).map(|i| {
                PathElement::new(
                    vec![(0.0, i as f64 - 0.5), (self.span * 1.02, i as f64 - 0.5)],
                    RGBColor(200, 200, 200).stroke_width(1),
                )
            }))
            .map_err(e)?;

        // Switch windows: grey spans/ticks under the lane centre.
        let windows: Vec<_> = sample(tl.windows.items())
            .filter_map(|w| self.lane(w.cpu).map(|y| (w, y)))
            .collect();
        let ax = self.axis;
        // At least a pixel wide: a window of a few µs on a long trace is still seen.
        let min_w = self.span / 1100.0;
        chart
            .draw_series(windows.iter().map(|(w, y)| {
                let x0 = ax.x(w.start_ns);
                let x1 = w.end_ns.map(|t| ax.x(t)).unwrap_or(x0);
                Rectangle::new(
                    [(x0, y - 0.46), (x1.max(x0 + min_w), y - 0.34)],
                    palette::WINDOW.mix(0.5).filled(),
                )
            }))
            .map_err(e)?;
        legend.push((
            format!(
                "switch window (cr3 ≠ current), {} in all",
                tl.windows.seen()
            ),
            super::Mark::Rect(palette::WINDOW),
        ));

        // Kernel-mode faults.
        let faults: Vec<_> = sample(tl.faults.items())
            .filter_map(|f| self.lane(f.cpu).map(|y| (f, y)))
            .collect();
        chart
            .draw_series(faults.iter().filter(|(f, _)| !f.vmalloc).map(|(f, y)| {
                TriangleMarker::new((ax.x(f.ts_ns), y - 0.2), 5, palette::FAULT.filled())
            }))
            .map_err(e)?;
        legend.push((
            format!("kernel-mode page fault, {} in all", tl.faults.seen()),
            super::Mark::Triangle(palette::FAULT),
        ));
        chart
            .draw_series(faults.iter().filter(|(f, _)| f.vmalloc).map(|(f, y)| {
                TriangleMarker::new((ax.x(f.ts_ns), y - 0.2), 7, palette::VMALLOC_FAULT.filled())
            }))
            .map_err(e)?;
        legend.push((
            "fault on a vmalloc address".into(),
            super::Mark::Triangle(palette::VMALLOC_FAULT),
        ));

        // NMI instances: their interval as a bar, and a dot at the start.
        let nmis: Vec<_> = sample(tl.nmis.items())
            .filter_map(|m| self.lane(m.cpu).map(|y| (m, y)))
            .collect();
        chart
            .draw_series(nmis.iter().map(|(m, y)| {
                Rectangle::new(
                    [(ax.x(m.start_ns), y - 0.04), (ax.x(m.end_ns), y + 0.04)],
                    palette::NMI.filled(),
                )
            }))
            .map_err(e)?;
        chart
            .draw_series(
                nmis.iter()
                    .map(|(m, y)| Circle::new((ax.x(m.start_ns), *y), 4, palette::NMI.filled())),
            )
            .map_err(e)?;
        legend.push((
            format!("NMI instance, {} in all", tl.nmis.seen()),
            super::Mark::Circle(palette::NMI),
        ));

        // Findings: a cross per finding, labelled with its kind.
        for sev in [
            crate::Severity::Error,
            crate::Severity::Warning,
            crate::Severity::Info,
        ] {
            let pts: Vec<(f64, f64)> = self
                .report
                .findings
                .iter()
                .filter(|f| f.severity == sev)
                .filter_map(|f| Some((ax.x(f.ts_ns?), self.lane(f.cpu?)? + 0.2)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let c = palette::severity(sev.as_str());
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y)| Cross::new((x, y), 7, c.stroke_width(3))),
                )
                .map_err(e)?;
            legend.push((
                format!("{sev} finding ({})", pts.len()),
                super::Mark::Cross(c),
            ));
        }
        // Labels, stacked when they would overlap.
        let px_per_unit = 1050.0 / (self.span * 1.02);
        let mut level_end: Vec<Vec<f64>> =
            vec![vec![f64::NEG_INFINITY; LABEL_LEVELS]; self.cpus.len()];
        let mut labelled = 0;
        let mut findings: Vec<_> = self
            .report
            .findings
            .iter()
            .filter(|f| f.ts_ns.is_some() && f.cpu.is_some())
            .collect();
        findings.sort_by_key(|f| (f.ts_ns, std::cmp::Reverse(f.severity)));
        for f in findings {
            if labelled >= MAX_LABELS {
                break;
            }
            let Some(lane) = self.lane(f.cpu.unwrap()) else {
                continue;
            };
            let x = ax.x(f.ts_ns.unwrap());
            let text = f.kind.as_str();
            let width = (text.len() as f64 * 7.5 + 10.0) / px_per_unit;
            let li = lane as usize;
            let Some(level) = (0..LABEL_LEVELS).find(|&k| level_end[li][k] < x) else {
                continue;
            };
            // Right-align labels that would run off the chart.
            let right = (x + width) > self.span * 1.02;
            level_end[li][level] = if right { x } else { x + width };
            let y = lane + 0.27 + 0.1 * level as f64;
            let color = palette::severity(f.severity.as_str());
            let style = TextStyle::from((FONT, 13).into_font())
                .color(&color)
                .pos(Pos::new(
                    if right { HPos::Right } else { HPos::Left },
                    VPos::Bottom,
                ));
            chart
                .draw_series(std::iter::once(Text::new(text, (x, y), style)))
                .map_err(e)?;
            labelled += 1;
        }

        super::legend_strip(&legend_area, &legend)?;
        Ok(())
    }
}

/// The last two components of a path.
pub fn short_path(p: &str) -> String {
    let parts: Vec<&str> = p.rsplit('/').take(3).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}
