//! mms out of sync with `init_mm` over time: after a new vmalloc top-level
//! entry appears, every existing mm lacks it until a lazy fault syncs it.

use super::{palette, Plot, TimeAxis, FONT};
use crate::Report;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct MmSyncPlot<'r> {
    report: &'r Report,
    timeline: &'r crate::timeline::Timeline,
}

impl<'r> MmSyncPlot<'r> {
    pub fn new(a: &'r crate::Analysis) -> MmSyncPlot<'r> {
        MmSyncPlot {
            report: &a.report,
            timeline: &a.timeline,
        }
    }
}

impl Plot for MmSyncPlot<'_> {
    fn name(&self) -> &str {
        "mm_out_of_sync"
    }

    fn title(&self) -> String {
        "mms out of sync with init_mm over time".into()
    }

    fn size(&self) -> (u32, u32) {
        (1200, 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let s = self.timeline.mm_sync.items();
        if s.is_empty() {
            return super::draw_message(
                root,
                &self.title(),
                "no vmalloc top-level entry opened during the trace: every mm stays in sync with init_mm",
            );
        }
        let first = self
            .report
            .events
            .first_ts_ns
            .unwrap_or(s[0].ts_ns)
            .min(s[0].ts_ns);
        let last = self
            .report
            .events
            .last_ts_ns
            .unwrap_or(first)
            .max(s[s.len() - 1].ts_ns)
            .max(first + 1);
        let ax = TimeAxis::for_span(first, last - first);
        let span = ax.x(last);
        let ymax = s
            .iter()
            .map(|p| p.live.max(p.out_of_sync))
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.15;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title(), (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..span * 1.02, 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(format!("time since the first event ({})", ax.unit))
            .y_desc("mms")
            .y_label_formatter(&super::int_label)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let step = |f: &dyn Fn(&crate::timeline::MmSample) -> u32, from_zero: bool| {
            let mut pts = Vec::with_capacity(s.len() * 2 + 3);
            if from_zero {
                // Nothing is out of sync before the first entry opens.
                pts.push((0.0, 0.0));
                pts.push((ax.x(s[0].ts_ns), 0.0));
            }
            for (i, p) in s.iter().enumerate() {
                let x = ax.x(p.ts_ns);
                if i > 0 {
                    pts.push((x, f(&s[i - 1]) as f64));
                }
                pts.push((x, f(p) as f64));
            }
            pts.push((span, f(&s[s.len() - 1]) as f64));
            pts
        };
        chart
            .draw_series(LineSeries::new(
                step(&|p| p.live, false),
                palette::BASELINE.stroke_width(2),
            ))
            .map_err(e)?
            .label("live mms (replay model)")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], palette::BASELINE.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(
                step(&|p| p.out_of_sync, true),
                palette::ERROR.stroke_width(3),
            ))
            .map_err(e)?
            .label("mms lacking a vmalloc entry init_mm has (a lazy vmalloc fault away)")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], palette::ERROR.stroke_width(3))
            });
        super::draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    }
}
