//! Charts over many traces (`nmitrace batch`): how many traces show each
//! finding kind, the fleet's NMI handler latency, and — against a baseline —
//! what regressed.

use super::{fmt_ns, palette, Plot, FONT};
pub use crate::regression::{KindRate, P99Row};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Share of traces with each finding kind (and the baseline's, when given).
pub struct FindingRatesPlot {
    pub name: String,
    pub title: String,
    pub n_traces: u64,
    pub baseline_n: Option<u64>,
    pub rates: Vec<KindRate>,
}

fn pct(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        100.0 * k as f64 / n as f64
    }
}

impl Plot for FindingRatesPlot {
    fn name(&self) -> &str {
        &self.name
    }

    fn title(&self) -> String {
        self.title.clone()
    }

    fn size(&self) -> (u32, u32) {
        let per = if self.baseline_n.is_some() { 46 } else { 34 };
        (1200, (150 + per * self.rates.len().max(1)) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        if self.rates.is_empty() {
            return super::draw_message(root, &self.title, "no findings in any trace");
        }
        let n = self.rates.len();
        let xmax = self
            .rates
            .iter()
            .map(|r| {
                pct(r.traces, self.n_traces).max(
                    r.baseline_traces
                        .map_or(0.0, |b| pct(b, self.baseline_n.unwrap_or(0))),
                )
            })
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.3;
        let kinds: Vec<String> = self.rates.iter().map(|r| r.kind.to_string()).collect();
        let ylab = move |y: &f64| {
            let r = y.round();
            if (y - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < kinds.len() {
                kinds[kinds.len() - 1 - r as usize].clone()
            } else {
                String::new()
            }
        };
        // the legend in a strip below the bars, never over them or their labels
        let (_, h) = root.dim_in_pixel();
        let (root, legend_area) = root.split_vertically(h - super::legend_height(1));
        let root = &root;
        let mut items = Vec::new();
        if let Some(bn) = self.baseline_n {
            items.push((
                format!("baseline ({bn} traces)"),
                super::Mark::Rect(palette::BASELINE),
            ));
        }
        items.push((
            format!("this batch ({} traces)", self.n_traces),
            super::Mark::Rect(palette::CURRENT),
        ));
        if self.rates.iter().any(|r| r.regressed) {
            items.push(("regressed".to_string(), super::Mark::Rect(palette::ERROR)));
        }
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(170)
            .build_cartesian_2d(0f64..xmax, -0.6f64..(n as f64 - 0.4))
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 2)
            .y_label_formatter(&ylab)
            .x_desc("traces with at least one finding of the kind (%)")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let lane = |i: usize| (n - 1 - i) as f64;
        let label_style = TextStyle::from((FONT, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        if let Some(bn) = self.baseline_n {
            chart
                .draw_series(self.rates.iter().enumerate().map(|(i, r)| {
                    let y = lane(i);
                    Rectangle::new(
                        [
                            (0.0, y + 0.02),
                            (pct(r.baseline_traces.unwrap_or(0), bn), y + 0.36),
                        ],
                        palette::BASELINE.filled(),
                    )
                }))
                .map_err(e)?
                .label(format!("baseline ({bn} traces)"))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], palette::BASELINE.filled())
                });
            chart
                .draw_series(self.rates.iter().enumerate().map(|(i, r)| {
                    let b = r.baseline_traces.unwrap_or(0);
                    Text::new(
                        format!("{b} ({:.1}%)", pct(b, bn)),
                        (pct(b, bn) + xmax * 0.01, lane(i) + 0.19),
                        label_style.clone(),
                    )
                }))
                .map_err(e)?;
        }
        let (y0, y1) = if self.baseline_n.is_some() {
            (-0.36, -0.02)
        } else {
            (-0.3, 0.3)
        };
        chart
            .draw_series(
                self.rates
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !r.regressed)
                    .map(|(i, r)| {
                        let y = lane(i);
                        Rectangle::new(
                            [(0.0, y + y0), (pct(r.traces, self.n_traces), y + y1)],
                            palette::CURRENT.filled(),
                        )
                    }),
            )
            .map_err(e)?
            .label(format!("this batch ({} traces)", self.n_traces))
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], palette::CURRENT.filled())
            });
        if self.rates.iter().any(|r| r.regressed) {
            chart
                .draw_series(
                    self.rates
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.regressed)
                        .map(|(i, r)| {
                            let y = lane(i);
                            Rectangle::new(
                                [(0.0, y + y0), (pct(r.traces, self.n_traces), y + y1)],
                                palette::ERROR.filled(),
                            )
                        }),
                )
                .map_err(e)?
                .label("regressed")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], palette::ERROR.filled())
                });
        }
        chart
            .draw_series(self.rates.iter().enumerate().map(|(i, r)| {
                let p = pct(r.traces, self.n_traces);
                let tag = if r.regressed { "  REGRESSION" } else { "" };
                Text::new(
                    format!("{} ({p:.1}%){tag}", r.traces),
                    (p + xmax * 0.01, lane(i) + (y0 + y1) / 2.0),
                    label_style.clone(),
                )
            }))
            .map_err(e)?;
        super::legend_strip(&legend_area, &items)
    }
}

/// Fleet NMI handler p99 against the baseline.
pub struct P99Plot {
    pub rows: Vec<P99Row>,
}

impl Plot for P99Plot {
    fn name(&self) -> &str {
        "regression_nmi_p99"
    }

    fn title(&self) -> String {
        "NMI handler latency p99: baseline vs this batch".into()
    }

    fn size(&self) -> (u32, u32) {
        (1200, (150 + 50 * self.rows.len().max(1)) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        if self.rows.is_empty() {
            return super::draw_message(
                root,
                &self.title(),
                "no nmi_handler events in either batch",
            );
        }
        let n = self.rows.len();
        let vals = self
            .rows
            .iter()
            .flat_map(|r| [r.p99_ns, r.baseline_p99_ns])
            .flatten();
        let hi = vals.fold(1e6f64, f64::max) * 20.0;
        let handlers: Vec<String> = self.rows.iter().map(|r| r.handler.clone()).collect();
        let ylab = move |y: &f64| {
            let r = y.round();
            if (y - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < handlers.len() {
                handlers[handlers.len() - 1 - r as usize].clone()
            } else {
                String::new()
            }
        };
        let (_, h) = root.dim_in_pixel();
        let (root, legend_area) = root.split_vertically(h - super::legend_height(1));
        let root = &root;
        let items = vec![
            (
                "baseline p99".to_string(),
                super::Mark::Rect(palette::BASELINE),
            ),
            (
                "this batch p99".to_string(),
                super::Mark::Rect(palette::CURRENT),
            ),
            ("regressed".to_string(), super::Mark::Rect(palette::ERROR)),
            (
                "1 ms (nmi_longest_ns)".to_string(),
                super::Mark::Line(palette::ERROR),
            ),
        ];
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{} (log scale; red line: 1 ms)", self.title()),
                (FONT, 20),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(230)
            .build_cartesian_2d((10f64..hi).log_scale(), -0.6f64..(n as f64 - 0.4))
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 2)
            .y_label_formatter(&ylab)
            .x_label_formatter(&|x| fmt_ns(*x))
            .x_desc("p99 of handler duration over all traces (delta_ns), log scale")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let lane = |i: usize| (n - 1 - i) as f64;
        let ls = TextStyle::from((FONT, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(self.rows.iter().enumerate().filter_map(|(i, r)| {
                r.baseline_p99_ns.map(|v| {
                    Rectangle::new(
                        [(10.0, lane(i) + 0.02), (v, lane(i) + 0.36)],
                        palette::BASELINE.filled(),
                    )
                })
            }))
            .map_err(e)?
            .label("baseline p99")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], palette::BASELINE.filled())
            });
        chart
            .draw_series(self.rows.iter().enumerate().filter_map(|(i, r)| {
                let c = if r.regressed {
                    palette::ERROR
                } else {
                    palette::CURRENT
                };
                r.p99_ns.map(|v| {
                    Rectangle::new([(10.0, lane(i) - 0.36), (v, lane(i) - 0.02)], c.filled())
                })
            }))
            .map_err(e)?
            .label("this batch p99 (red: regressed)")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], palette::CURRENT.filled())
            });
        chart
            .draw_series(self.rows.iter().enumerate().flat_map(|(i, r)| {
                let mut v = Vec::new();
                if let Some(b) = r.baseline_p99_ns {
                    v.push(Text::new(fmt_ns(b), (b * 1.1, lane(i) + 0.19), ls.clone()));
                }
                if let Some(p) = r.p99_ns {
                    let tag = if r.regressed { "  REGRESSION" } else { "" };
                    v.push(Text::new(
                        format!("{}{tag}", fmt_ns(p)),
                        (p * 1.1, lane(i) - 0.19),
                        ls.clone(),
                    ));
                }
                v
            }))
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1e6, -0.6), (1e6, n as f64 - 0.4)],
                palette::ERROR.stroke_width(2),
            )))
            .map_err(e)?;
        super::legend_strip(&legend_area, &items)
    }
}
