//! NMI handler durations: one histogram per handler, log-scale x axis,
//! with the kernel's 1 ms `nmi_longest_ns` line.

use super::{fmt_ns, palette, Plot, FONT};
use crate::histogram::LogHistogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Handlers drawn at most (the busiest).
const MAX_PANELS: usize = 6;
pub const SLOW_NS: f64 = 1e6;

/// Log-scale duration buckets: 10 per decade from 10 ns (bucket 0) to 100 s.
const BUCKETS_PER_DECADE: usize = 10;
const DURATION_BUCKETS: usize = 10 * BUCKETS_PER_DECADE;
const MIN_DURATION_NS: f64 = 10.0;

/// What a chart draws of a [`LogHistogram`]: counts in log-scale display
/// bins (10 per decade; the data keeps its own finer buckets).
#[derive(Clone, Debug)]
pub struct DurationHist {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub max_ns: u64,
}

impl Default for DurationHist {
    fn default() -> Self {
        DurationHist {
            buckets: vec![0; DURATION_BUCKETS],
            count: 0,
            max_ns: 0,
        }
    }
}

impl DurationHist {
    pub fn bucket_of(ns: u64) -> usize {
        let v = (ns as f64).max(MIN_DURATION_NS);
        let b = ((v / MIN_DURATION_NS).log10() * BUCKETS_PER_DECADE as f64).floor() as usize;
        b.min(DURATION_BUCKETS - 1)
    }

    /// Lower bound of bucket `b` in ns.
    pub fn bucket_low_ns(b: usize) -> f64 {
        MIN_DURATION_NS * 10f64.powf(b as f64 / BUCKETS_PER_DECADE as f64)
    }

    /// The display bins of `h`: each sample (or bucket) in the bin of its value.
    pub fn of(h: &LogHistogram) -> DurationHist {
        let mut d = DurationHist::default();
        for (v, n) in h.values() {
            d.buckets[Self::bucket_of(v)] += n;
        }
        d.count = h.count();
        d.max_ns = h.max();
        d
    }
}

pub struct DurationsPlot {
    name: String,
    title: String,
    hists: Vec<(String, LogHistogram)>,
}

impl DurationsPlot {
    pub fn new(a: &crate::Analysis) -> DurationsPlot {
        DurationsPlot::from_hists(
            "nmi_durations",
            "NMI handler durations",
            &a.timeline.durations,
        )
    }

    pub fn from_hists(
        name: &str,
        title: &str,
        hists: &BTreeMap<String, LogHistogram>,
    ) -> DurationsPlot {
        let mut v: Vec<(String, LogHistogram)> =
            hists.iter().map(|(k, h)| (k.clone(), h.clone())).collect();
        v.sort_by_key(|(_, h)| std::cmp::Reverse(h.count()));
        v.truncate(MAX_PANELS);
        DurationsPlot {
            name: name.into(),
            title: title.into(),
            hists: v,
        }
    }
}

impl Plot for DurationsPlot {
    fn name(&self) -> &str {
        &self.name
    }

    fn title(&self) -> String {
        self.title.clone()
    }

    fn size(&self) -> (u32, u32) {
        (1200, (90 + 260 * self.hists.len().max(1)) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        if self.hists.is_empty() {
            return super::draw_message(root, &self.title, "no nmi_handler events in this trace");
        }
        let root = root
            .titled(
                &format!(
                    "{} (log scale; red line: 1 ms, the kernel's nmi_longest_ns)",
                    self.title
                ),
                (FONT, 20),
            )
            .map_err(e)?;
        let panels = root.split_evenly((self.hists.len(), 1));
        for (area, (name, data)) in panels.iter().zip(&self.hists) {
            let h = &DurationHist::of(data);
            let nz: Vec<usize> = (0..DURATION_BUCKETS)
                .filter(|&b| h.buckets[b] > 0)
                .collect();
            let lo =
                DurationHist::bucket_low_ns(nz.first().copied().unwrap_or(0).saturating_sub(2))
                    .min(1e3);
            let hi = DurationHist::bucket_low_ns(nz.last().copied().unwrap_or(0) + 3).max(3e6);
            let ymax = h.buckets.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
            let (p50, p99) = (data.quantile(0.5) as f64, data.quantile(0.99) as f64);
            let caption = format!(
                "{name}: {} call{}, p50 ≈ {}, p99 ≈ {}, max {}",
                h.count,
                if h.count == 1 { "" } else { "s" },
                fmt_ns(p50),
                fmt_ns(p99),
                fmt_ns(h.max_ns as f64)
            );
            let mut chart = ChartBuilder::on(area)
                .caption(caption, (FONT, 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d((lo..hi).log_scale(), 0f64..ymax)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc("handler duration (delta_ns), log scale")
                .y_desc("calls")
                .x_label_formatter(&|x| fmt_ns(*x))
                .y_label_formatter(&super::int_label)
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(e)?;
            chart
                .draw_series(nz.iter().map(|&b| {
                    let x0 = DurationHist::bucket_low_ns(b);
                    let x1 = DurationHist::bucket_low_ns(b + 1);
                    let c = if x0 >= SLOW_NS {
                        palette::ERROR
                    } else {
                        palette::NMI
                    };
                    Rectangle::new([(x0, 0.0), (x1, h.buckets[b] as f64)], c.mix(0.8).filled())
                }))
                .map_err(e)?
                .label("calls per duration bucket")
                .legend(|(x, y)| {
                    Rectangle::new(
                        [(x, y - 5), (x + 10, y + 5)],
                        palette::NMI.mix(0.8).filled(),
                    )
                });
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(SLOW_NS, 0.0), (SLOW_NS, ymax)],
                    palette::ERROR.stroke_width(2),
                )))
                .map_err(e)?
                .label("1 ms: slow handler (nmi_longest_ns)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], palette::ERROR.stroke_width(2))
                });
            super::draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_buckets() {
        assert_eq!(DurationHist::bucket_of(0), 0);
        assert_eq!(DurationHist::bucket_of(10), 0);
        assert_eq!(DurationHist::bucket_of(100), 10);
        assert_eq!(DurationHist::bucket_of(1_000_000), 50);
        assert!((DurationHist::bucket_low_ns(50) - 1e6).abs() < 1.0);
        assert_eq!(DurationHist::bucket_of(u64::MAX), DURATION_BUCKETS - 1);
    }

    #[test]
    fn display_bins_hold_every_sample() {
        let mut h = LogHistogram::default();
        [100u64, 1_000, 1_000_000, 1_500_000]
            .iter()
            .for_each(|&v| h.add(v));
        let d = DurationHist::of(&h);
        assert_eq!(
            (
                d.buckets[10],
                d.buckets[20],
                d.buckets[50],
                d.count,
                d.max_ns
            ),
            (1, 1, 1, 4, 1_500_000)
        );
    }
}
