//! Parquet tables (polars): decoded events (streamed in row groups of
//! [`EVENTS_BATCH`] rows, so memory stays flat), NMI instances and findings.
//! The schemas are documented in the README ("Tables").

use crate::Finding;
use nmitrace_parser::{Event, Notice, Sink};
use polars::prelude::*;
use std::fs::File;
use std::path::Path;

/// Events per row group of `events.parquet`.
pub const EVENTS_BATCH: usize = 65_536;

/// Write a whole DataFrame as one Parquet file (zstd).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> PolarsResult<()> {
    let f = File::create(path).map_err(|e| polars_err!(ComputeError: "{}: {e}", path.display()))?;
    ParquetWriter::new(f).with_compression(ParquetCompression::Zstd(None)).finish(df)?;
    Ok(())
}

/// Read a Parquet file into a DataFrame.
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    let f = File::open(path).map_err(|e| polars_err!(ComputeError: "{}: {e}", path.display()))?;
    ParquetReader::new(f).finish()
}

/// The `events` table's schema.
pub fn events_schema() -> Schema {
    Schema::from_iter([
        Field::new("ts_ns".into(), DataType::UInt64),
        Field::new("cpu".into(), DataType::UInt32),
        Field::new("pid".into(), DataType::Int32),
        Field::new("comm".into(), DataType::String),
        Field::new("context".into(), DataType::String),
        Field::new("system".into(), DataType::String),
        Field::new("name".into(), DataType::String),
        Field::new("fields".into(), DataType::String),
    ])
}

/// A [`Sink`] writing every event to a Parquet file, a row group per
/// [`EVENTS_BATCH`] events.
pub struct EventsWriter {
    writer: BatchedWriter<File>,
    ts: Vec<u64>,
    cpu: Vec<u32>,
    pid: Vec<i32>,
    comm: Vec<Option<String>>,
    context: Vec<&'static str>,
    system: Vec<Option<String>>,
    name: Vec<String>,
    fields: Vec<String>,
    pub rows: u64,
    pub error: Option<PolarsError>,
    /// Warnings and loss markers seen (the caller prints them).
    pub notices: Vec<String>,
}

impl EventsWriter {
    pub fn create(path: &Path) -> PolarsResult<EventsWriter> {
        let f = File::create(path).map_err(|e| polars_err!(ComputeError: "{}: {e}", path.display()))?;
        let writer = ParquetWriter::new(f).with_compression(ParquetCompression::Zstd(None)).batched(&events_schema())?;
        Ok(EventsWriter {
            writer,
            ts: Vec::new(),
            cpu: Vec::new(),
            pid: Vec::new(),
            comm: Vec::new(),
            context: Vec::new(),
            system: Vec::new(),
            name: Vec::new(),
            fields: Vec::new(),
            rows: 0,
            error: None,
            notices: Vec::new(),
        })
    }

    fn flush(&mut self) {
        if self.ts.is_empty() || self.error.is_some() {
            return;
        }
        let n = self.ts.len();
        let cols = vec![
            Column::new("ts_ns".into(), std::mem::take(&mut self.ts)),
            Column::new("cpu".into(), std::mem::take(&mut self.cpu)),
            Column::new("pid".into(), std::mem::take(&mut self.pid)),
            Column::new("comm".into(), std::mem::take(&mut self.comm)),
            Column::new("context".into(), std::mem::take(&mut self.context)),
            Column::new("system".into(), std::mem::take(&mut self.system)),
            Column::new("name".into(), std::mem::take(&mut self.name)),
            Column::new("fields".into(), std::mem::take(&mut self.fields)),
        ];
        let res = DataFrame::new(n, cols).and_then(|df| self.writer.write_batch(&df));
        if let Err(e) = res {
            self.error = Some(e);
        }
    }

    /// Write the last row group and the footer; the number of rows written.
    pub fn finish(mut self) -> PolarsResult<u64> {
        self.flush();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer.finish()?;
        Ok(self.rows)
    }
}

/// An event's fields as a JSON object (numbers as numbers, like `events --format jsonl`).
pub fn fields_json(ev: &Event<'_>) -> String {
    let mut o = String::with_capacity(64);
    nmitrace_parser::json::json_fields(&mut o, &ev.fields);
    o
}

impl Sink for EventsWriter {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.rows += 1;
        self.ts.push(ev.ts_ns);
        self.cpu.push(ev.cpu);
        self.pid.push(ev.pid);
        self.comm.push(ev.comm.map(Into::into));
        self.context.push(ev.ctx.label());
        self.system.push(ev.system.map(Into::into));
        self.name.push(ev.name.to_string());
        self.fields.push(fields_json(ev));
        if self.ts.len() >= EVENTS_BATCH {
            self.flush();
        }
        nmitrace_parser::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        if self.notices.len() < 100 {
            match n {
                Notice::Warning { origin, message } => self.notices.push(format!("{origin}: {message}")),
                Notice::LostEvents { cpu, count, origin, .. } => {
                    self.notices.push(format!("{origin}: CPU {cpu} lost {} events", count.map(|c| c.to_string()).unwrap_or_else(|| "some".into())))
                }
                _ => {}
            }
        }
    }
}

/// One row per NMI instance (evenly sampled beyond the timeline's cap).
pub fn nmi_instances_df(a: &crate::Analysis) -> PolarsResult<DataFrame> {
    let r = &a.report;
    let m = a.timeline.nmis.items();
    let trace: Vec<&str> = m.iter().map(|_| r.input.path.as_str()).collect();
    DataFrame::new(
        m.len(),
        vec![
            Column::new("trace".into(), trace),
            Column::new("cpu".into(), m.iter().map(|x| x.cpu).collect::<Vec<u32>>()),
            Column::new("start_ns".into(), m.iter().map(|x| x.start_ns).collect::<Vec<u64>>()),
            Column::new("end_ns".into(), m.iter().map(|x| x.end_ns).collect::<Vec<u64>>()),
            Column::new("duration_ns".into(), m.iter().map(|x| x.end_ns.saturating_sub(x.start_ns)).collect::<Vec<u64>>()),
            Column::new("handled".into(), m.iter().map(|x| x.handled).collect::<Vec<i64>>()),
            Column::new("handlers".into(), m.iter().map(|x| x.handlers.as_str()).collect::<Vec<&str>>()),
            Column::new("pid".into(), m.iter().map(|x| x.pid).collect::<Vec<i32>>()),
            Column::new("comm".into(), m.iter().map(|x| x.comm.as_str()).collect::<Vec<&str>>()),
            Column::new("faults".into(), m.iter().map(|x| x.faults).collect::<Vec<u32>>()),
            Column::new("in_switch_window".into(), m.iter().map(|x| x.in_switch_window).collect::<Vec<bool>>()),
            Column::new("nested".into(), m.iter().map(|x| x.nested).collect::<Vec<bool>>()),
        ],
    )
}

/// One row per finding, for findings of one or more traces.
pub fn findings_df<'a>(rows: impl IntoIterator<Item = (&'a str, &'a Finding)>) -> PolarsResult<DataFrame> {
    let rows: Vec<(&str, &Finding)> = rows.into_iter().collect();
    let s = |f: &dyn Fn(&Finding) -> String| rows.iter().map(|(_, x)| f(x)).collect::<Vec<String>>();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("trace".into(), rows.iter().map(|(t, _)| *t).collect::<Vec<&str>>()),
            Column::new("kind".into(), s(&|f| f.kind.to_string())),
            Column::new("severity".into(), s(&|f| f.severity.to_string())),
            Column::new("confidence".into(), s(&|f| f.confidence.to_string())),
            Column::new("ts_ns".into(), rows.iter().map(|(_, f)| f.ts_ns).collect::<Vec<Option<u64>>>()),
            Column::new("cpu".into(), rows.iter().map(|(_, f)| f.cpu).collect::<Vec<Option<u32>>>()),
            Column::new("pid".into(), rows.iter().map(|(_, f)| f.pid).collect::<Vec<Option<i32>>>()),
            Column::new("comm".into(), rows.iter().map(|(_, f)| f.comm.clone()).collect::<Vec<Option<String>>>()),
            Column::new("message".into(), s(&|f| f.message.clone())),
            Column::new("details".into(), s(&|f| serde_json::to_string(&f.details).unwrap_or_default())),
            Column::new("evidence".into(), s(&|f| f.evidence.join("\n"))),
        ],
    )
}

/// `DIR/nmi_instances.parquet` and `DIR/findings.parquet` for one report.
pub fn write_report_tables(a: &crate::Analysis, dir: &Path) -> PolarsResult<()> {
    let r = &a.report;
    std::fs::create_dir_all(dir).map_err(|e| polars_err!(ComputeError: "{}: {e}", dir.display()))?;
    write_parquet(&mut nmi_instances_df(a)?, &dir.join("nmi_instances.parquet"))?;
    write_parquet(&mut findings_df(r.findings.iter().map(|f| (r.input.path.as_str(), f)))?, &dir.join("findings.parquet"))?;
    Ok(())
}
