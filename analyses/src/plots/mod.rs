//! Charts with plotters, each drawn once as SVG (kept as a string for the
//! HTML report) and once as PNG (bitmap backend, text in DejaVu Sans
//! embedded through the `dejavu` crate, so no system font is needed).
//!
//! - [`timeline`]: per-CPU timeline of a trace (NMI instances, switch
//!   windows, faults, findings);
//! - [`durations`]: NMI handler duration histograms (log scale, 1 ms line);
//! - [`mm_sync`]: mms out of sync with `init_mm` over time;
//! - [`fleet`]: batch charts (finding rates, NMI latency across traces,
//!   baseline regressions);
//! - [`zoom`]: a few microseconds to milliseconds of one CPU around a finding.

pub mod durations;
pub mod fleet;
pub mod mm_sync;
pub mod timeline;
pub mod zoom;

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// The font family every chart uses.
pub const FONT: &str = "sans-serif";

/// Colours shared by the charts.
/// The legend box every chart draws: white, framed, 13 px labels, at `pos`.
pub fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())
}

pub mod palette {
    use plotters::style::RGBColor;
    pub const NMI: RGBColor = RGBColor(31, 119, 180);
    pub const WINDOW: RGBColor = RGBColor(150, 150, 150);
    pub const FAULT: RGBColor = RGBColor(255, 127, 14);
    pub const VMALLOC_FAULT: RGBColor = RGBColor(148, 103, 189);
    pub const ERROR: RGBColor = RGBColor(214, 39, 40);
    pub const WARNING: RGBColor = RGBColor(230, 160, 0);
    pub const INFO: RGBColor = RGBColor(44, 160, 44);
    pub const BASELINE: RGBColor = RGBColor(160, 160, 160);
    pub const CURRENT: RGBColor = RGBColor(31, 119, 180);

    pub fn severity(s: &str) -> RGBColor {
        match s {
            "error" => ERROR,
            "warning" => WARNING,
            _ => INFO,
        }
    }
}

/// A chart that can draw itself on any plotters backend.
pub trait Plot {
    /// File stem (`timeline` → `timeline.svg`, `timeline.png`).
    fn name(&self) -> &str;
    /// Title shown above the chart in the HTML report.
    fn title(&self) -> String;
    fn size(&self) -> (u32, u32) {
        (1200, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// A drawn chart: its SVG text (for inlining) and where the files went.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub name: String,
    pub title: String,
    pub svg: String,
}

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
        let _ = plotters::style::register_font(FONT, FontStyle::Italic, dejavu::sans::oblique());
        let _ = plotters::style::register_font(FONT, FontStyle::Oblique, dejavu::sans::oblique());
    });
}

/// Draw `plot` as SVG (returned) and, when `dir` is given, write
/// `dir/NAME.svg` and `dir/NAME.png`.
pub fn render<P: Plot>(plot: &P, dir: Option<&Path>) -> Result<Rendered, String> {
    register_fonts();
    let size = plot.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        plot.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let svg_path = dir.join(format!("{}.svg", plot.name()));
        std::fs::write(&svg_path, &svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
        let png_path = dir.join(format!("{}.png", plot.name()));
        let root = BitMapBackend::new(&png_path, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        plot.draw(&root)?;
        root.present()
            .map_err(|e| format!("{}: {e}", png_path.display()))?;
    }
    Ok(Rendered {
        name: plot.name().to_string(),
        title: plot.title(),
        svg,
    })
}

/// Draw a centred message (for charts without data).
pub fn draw_message<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    msg: &str,
) -> Result<(), String> {
    let (w, h) = root.dim_in_pixel();
    let title_style = TextStyle::from((FONT, 22).into_font()).color(&BLACK);
    root.draw(&Text::new(title.to_string(), (20, 15), title_style))
        .map_err(|e| e.to_string())?;
    let style = TextStyle::from((FONT, 18).into_font())
        .color(&RGBColor(90, 90, 90))
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    root.draw(&Text::new(
        msg.to_string(),
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// A legend entry's marker.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    Circle(RGBColor),
    Triangle(RGBColor),
    Rect(RGBColor),
    Cross(RGBColor),
    Line(RGBColor),
}

/// Height of a legend strip of `rows` rows.
pub fn legend_height(rows: u32) -> u32 {
    12 + 24 * rows
}

/// A legend drawn as a horizontal strip (below a chart, never over data);
/// wraps onto further rows.
pub fn legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[(String, Mark)],
) -> Result<(), String> {
    let e = |e: plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (w, _) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 14).into_font()).color(&BLACK).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    let (mut x, mut y) = (80i32, 18i32);
    for (label, m) in items {
        let tw = area
            .estimate_text_size(label, &style)
            .map(|(w, _)| w as i32)
            .unwrap_or(label.len() as i32 * 8);
        if x + 14 + tw > w as i32 - 10 && x > 80 {
            x = 80;
            y += 24;
        }
        match *m {
            Mark::Circle(c) => area.draw(&Circle::new((x, y), 5, c.filled())).map_err(e)?,
            Mark::Triangle(c) => area
                .draw(&TriangleMarker::new((x, y), 6, c.filled()))
                .map_err(e)?,
            Mark::Rect(c) => area
                .draw(&Rectangle::new(
                    [(x - 6, y - 7), (x + 6, y + 7)],
                    c.filled(),
                ))
                .map_err(e)?,
            Mark::Cross(c) => area
                .draw(&Cross::new((x, y), 6, c.stroke_width(3)))
                .map_err(e)?,
            Mark::Line(c) => area
                .draw(&PathElement::new(
                    vec![(x - 9, y), (x + 9, y)],
                    c.stroke_width(3),
                ))
                .map_err(e)?,
        }
        area.draw(&Text::new(label.clone(), (x + 14, y), style.clone()))
            .map_err(e)?;
        x += 14 + tw + 30;
    }
    Ok(())
}

/// Labels only at whole numbers (counts).
pub fn int_label(y: &f64) -> String {
    if (y - y.round()).abs() < 1e-9 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// Time axis: nanoseconds → a unit that keeps the numbers readable.
#[derive(Clone, Copy, Debug)]
pub struct TimeAxis {
    pub origin_ns: u64,
    pub div: f64,
    pub unit: &'static str,
}

impl TimeAxis {
    pub fn for_span(origin_ns: u64, span_ns: u64) -> TimeAxis {
        let (div, unit) = if span_ns >= 10_000_000_000 {
            (1e9, "s")
        } else if span_ns >= 10_000_000 {
            (1e6, "ms")
        } else {
            (1e3, "µs")
        };
        TimeAxis {
            origin_ns,
            div,
            unit,
        }
    }

    pub fn x(&self, ns: u64) -> f64 {
        (ns as f64 - self.origin_ns as f64) / self.div
    }
}

pub use crate::units::fmt_ns;

/// The charts of one trace (timeline, handler durations, mms out of sync).
pub fn trace_charts(a: &crate::Analysis, dir: Option<&Path>) -> Result<Vec<Rendered>, String> {
    Ok(vec![
        render(&timeline::TimelinePlot::new(a), dir)?,
        render(&durations::DurationsPlot::new(a), dir)?,
        render(&mm_sync::MmSyncPlot::new(a), dir)?,
    ])
}

/// The zoomed charts of one trace, each with the index of its finding.
pub fn zoom_charts(
    zooms: &[zoom::Zoom],
    dir: Option<&Path>,
) -> Result<Vec<(usize, Rendered)>, String> {
    zooms
        .iter()
        .enumerate()
        .map(|(n, z)| Ok((z.finding, render(&zoom::ZoomPlot::new(z, n), dir)?)))
        .collect()
}
