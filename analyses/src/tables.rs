//! Parquet tables (polars): decoded events (streamed in row groups of
//! [`EVENTS_BATCH`] rows, so memory stays flat), NMI instances and findings.
//! The schemas are documented in the README ("Tables").

use crate::Finding;
use nmitrace_parser::{Event, Notice, Sink};
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use std::fs::File;
use std::path::Path;

/// Events per row group of `events.parquet`.
pub const EVENTS_BATCH: usize = 65_536;

/// Write a whole DataFrame as one Parquet file (zstd).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> PolarsResult<()> {
    let f = File::create(path).map_err(|e| polars_err!(ComputeError: "{}: {e}", path.display()))?;
    ParquetWriter::new(f)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)?;
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

/// The `events` table's columns for a batch of events: what both the
/// Parquet writer and the Arrow stream of the Python package fill.
#[derive(Default)]
pub struct EventColumns {
    ts: Vec<u64>,
    cpu: Vec<u32>,
    pid: Vec<i32>,
    comm: Vec<Option<String>>,
    context: Vec<&'static str>,
    system: Vec<Option<String>>,
    name: Vec<String>,
    fields: Vec<String>,
}

impl EventColumns {
    pub fn push(&mut self, ev: &Event<'_>) {
        self.ts.push(ev.ts_ns);
        self.cpu.push(ev.cpu);
        self.pid.push(ev.pid);
        self.comm.push(ev.comm.map(Into::into));
        self.context.push(ev.ctx.label());
        self.system.push(ev.system.map(Into::into));
        self.name.push(ev.name.to_string());
        self.fields.push(fields_json(ev));
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The rows so far as a DataFrame (of [`events_schema`]); empties the buffers.
    pub fn take(&mut self) -> PolarsResult<DataFrame> {
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
        DataFrame::new(n, cols)
    }
}

/// A DataFrame as one Arrow IPC stream (schema, record batches, end
/// marker), strings as `large_utf8` (what every Arrow reader takes).
pub fn ipc_stream_bytes(df: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut out = Vec::new();
    IpcStreamWriter::new(&mut out)
        .with_compat_level(CompatLevel::oldest())
        .finish(df)?;
    Ok(out)
}

/// A [`Sink`] writing every event to a Parquet file, a row group per
/// [`EVENTS_BATCH`] events.
pub struct EventsWriter {
    writer: BatchedWriter<File>,
    cols: EventColumns,
    pub rows: u64,
    pub error: Option<PolarsError>,
    /// Warnings and loss markers seen (the caller prints them).
    pub notices: Vec<String>,
}

impl EventsWriter {
    pub fn create(path: &Path) -> PolarsResult<EventsWriter> {
        let f =
            File::create(path).map_err(|e| polars_err!(ComputeError: "{}: {e}", path.display()))?;
        let writer = ParquetWriter::new(f)
            .with_compression(ParquetCompression::Zstd(None))
            .batched(&events_schema())?;
        Ok(EventsWriter {
            writer,
            cols: EventColumns::default(),
            rows: 0,
            error: None,
            notices: Vec::new(),
        })
    }

    fn flush(&mut self) {
        if self.cols.is_empty() || self.error.is_some() {
            return;
        }
        let res = self.cols.take().and_then(|df| self.writer.write_batch(&df));
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

/// Keep a warning or loss marker for the caller to print (the first 100).
pub fn keep_notice(notices: &mut Vec<String>, n: &Notice) {
    if notices.len() >= 100 {
        return;
    }
    match n {
        Notice::Warning { origin, message } => notices.push(format!("{origin}: {message}")),
        Notice::LostEvents {
            cpu, count, origin, ..
        } => notices.push(format!(
            "{origin}: CPU {cpu} lost {} events",
            count
                .map(|c| c.to_string())
                .unwrap_or_else(|| "some".into())
        )),
        _ => {}
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
        self.cols.push(ev);
        if self.cols.len() >= EVENTS_BATCH {
            self.flush();
        }
        nmitrace_parser::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        keep_notice(&mut self.notices, n);
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
            Column::new(
                "start_ns".into(),
                m.iter().map(|x| x.start_ns).collect::<Vec<u64>>(),
            ),
            Column::new(
                "end_ns".into(),
                m.iter().map(|x| x.end_ns).collect::<Vec<u64>>(),
            ),
            Column::new(
                "duration_ns".into(),
                m.iter()
                    .map(|x| x.end_ns.saturating_sub(x.start_ns))
                    .collect::<Vec<u64>>(),
            ),
            Column::new(
                "handled".into(),
                m.iter().map(|x| x.handled).collect::<Vec<i64>>(),
            ),
            Column::new(
                "handlers".into(),
                m.iter().map(|x| x.handlers.as_str()).collect::<Vec<&str>>(),
            ),
            Column::new("pid".into(), m.iter().map(|x| x.pid).collect::<Vec<i32>>()),
            Column::new(
                "comm".into(),
                m.iter().map(|x| x.comm.as_str()).collect::<Vec<&str>>(),
            ),
            Column::new(
                "faults".into(),
                m.iter().map(|x| x.faults).collect::<Vec<u32>>(),
            ),
            Column::new(
                "in_switch_window".into(),
                m.iter().map(|x| x.in_switch_window).collect::<Vec<bool>>(),
            ),
            Column::new(
                "nested".into(),
                m.iter().map(|x| x.nested).collect::<Vec<bool>>(),
            ),
        ],
    )
}

/// One row per finding, for findings of one or more traces.
pub fn findings_df<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a Finding)>,
) -> PolarsResult<DataFrame> {
    let rows: Vec<(&str, &Finding)> = rows.into_iter().collect();
    let s =
        |f: &dyn Fn(&Finding) -> String| rows.iter().map(|(_, x)| f(x)).collect::<Vec<String>>();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(
                "trace".into(),
                rows.iter().map(|(t, _)| *t).collect::<Vec<&str>>(),
            ),
            Column::new("kind".into(), s(&|f| f.kind.to_string())),
            Column::new("severity".into(), s(&|f| f.severity.to_string())),
            Column::new("confidence".into(), s(&|f| f.confidence.to_string())),
            Column::new(
                "ts_ns".into(),
                rows.iter()
                    .map(|(_, f)| f.ts_ns)
                    .collect::<Vec<Option<u64>>>(),
            ),
            Column::new(
                "cpu".into(),
                rows.iter()
                    .map(|(_, f)| f.cpu)
                    .collect::<Vec<Option<u32>>>(),
            ),
            Column::new(
                "pid".into(),
                rows.iter()
                    .map(|(_, f)| f.pid)
                    .collect::<Vec<Option<i32>>>(),
            ),
            Column::new(
                "comm".into(),
                rows.iter()
                    .map(|(_, f)| f.comm.clone())
                    .collect::<Vec<Option<String>>>(),
            ),
            Column::new("message".into(), s(&|f| f.message.clone())),
            Column::new(
                "details".into(),
                s(&|f| serde_json::to_string(&f.details).unwrap_or_default()),
            ),
            Column::new("evidence".into(), s(&|f| f.evidence.join("\n"))),
        ],
    )
}

/// `DIR/nmi_instances.parquet` and `DIR/findings.parquet` for one report.
pub fn write_report_tables(a: &crate::Analysis, dir: &Path) -> PolarsResult<()> {
    let r = &a.report;
    std::fs::create_dir_all(dir)
        .map_err(|e| polars_err!(ComputeError: "{}: {e}", dir.display()))?;
    write_parquet(
        &mut nmi_instances_df(a)?,
        &dir.join("nmi_instances.parquet"),
    )?;
    write_parquet(
        &mut findings_df(r.findings.iter().map(|f| (r.input.path.as_str(), f)))?,
        &dir.join("findings.parquet"),
    )?;
    Ok(())
}

/// A column's type, fixed by the event's first row: trace.dat gives signed
/// or unsigned integers and strings from its format files; text gives
/// integers where the value is one (`12`, `-1`, `0x1f`), strings otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ColKind {
    I64,
    U64,
    Str,
}

enum ColBuf {
    I64(Vec<Option<i64>>),
    U64(Vec<Option<u64>>),
    Str(Vec<Option<String>>),
}

impl ColBuf {
    fn new(k: ColKind) -> ColBuf {
        match k {
            ColKind::I64 => ColBuf::I64(Vec::new()),
            ColKind::U64 => ColBuf::U64(Vec::new()),
            ColKind::Str => ColBuf::Str(Vec::new()),
        }
    }

    /// Append `v` (null when absent or not of the column's type; `false` then).
    fn push(&mut self, v: Option<nmitrace_parser::Value<'_>>) -> bool {
        use nmitrace_parser::Value as V;
        match self {
            ColBuf::I64(c) => {
                let x = v.and_then(|v| v.as_i64());
                c.push(x);
                x.is_some() || v.is_none()
            }
            ColBuf::U64(c) => {
                let x = v.and_then(|v| v.as_u64());
                c.push(x);
                x.is_some() || v.is_none()
            }
            ColBuf::Str(c) => {
                c.push(v.map(|v| match v {
                    V::Str(s) => s.to_string(),
                    V::Int(i) => i.to_string(),
                    V::Uint(u) => u.to_string(),
                    V::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
                }));
                true
            }
        }
    }

    fn take(&mut self, name: &str) -> Column {
        match self {
            ColBuf::I64(c) => Column::new(name.into(), std::mem::take(c)),
            ColBuf::U64(c) => Column::new(name.into(), std::mem::take(c)),
            ColBuf::Str(c) => Column::new(name.into(), std::mem::take(c)),
        }
    }

    fn dtype(k: ColKind) -> DataType {
        match k {
            ColKind::I64 => DataType::Int64,
            ColKind::U64 => DataType::UInt64,
            ColKind::Str => DataType::String,
        }
    }
}

fn col_kind(v: &nmitrace_parser::Value<'_>) -> ColKind {
    use nmitrace_parser::Value as V;
    match v {
        V::Int(_) => ColKind::I64,
        V::Uint(_) => ColKind::U64,
        V::Str(s)
            if nmitrace_parser::event::parse_int(s).is_some_and(|x| i64::try_from(x).is_ok()) =>
        {
            ColKind::I64
        }
        _ => ColKind::Str,
    }
}

/// One event's table being written.
struct EventTable {
    writer: Option<BatchedWriter<File>>,
    path: std::path::PathBuf,
    fields: Vec<(String, String, ColKind)>,
    ts: Vec<u64>,
    cpu: Vec<u32>,
    pid: Vec<i32>,
    comm: Vec<Option<String>>,
    context: Vec<&'static str>,
    vals: Vec<ColBuf>,
}

/// The common columns, named as LISA's `trace-dump` does, apart from the fields.
const COMMON: [&str; 5] = ["ts_ns", "__cpu", "__pid", "__comm", "__context"];

impl EventTable {
    fn new(path: std::path::PathBuf, ev: &Event<'_>) -> EventTable {
        let mut fields: Vec<(String, String, ColKind)> = Vec::new();
        for f in ev.fields.iter() {
            if fields.iter().any(|(n, _, _)| n == f.name) {
                continue;
            }
            let col = if COMMON.contains(&f.name) {
                format!("{}_field", f.name)
            } else {
                f.name.to_string()
            };
            fields.push((f.name.to_string(), col, col_kind(&f.value)));
        }
        let vals = fields.iter().map(|(_, _, k)| ColBuf::new(*k)).collect();
        EventTable {
            writer: None,
            path,
            fields,
            ts: Vec::new(),
            cpu: Vec::new(),
            pid: Vec::new(),
            comm: Vec::new(),
            context: Vec::new(),
            vals,
        }
    }

    fn flush(&mut self) -> PolarsResult<()> {
        if self.ts.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            let mut schema = vec![
                Field::new("ts_ns".into(), DataType::UInt64),
                Field::new("__cpu".into(), DataType::UInt32),
                Field::new("__pid".into(), DataType::Int32),
                Field::new("__comm".into(), DataType::String),
                Field::new("__context".into(), DataType::String),
            ];
            schema.extend(
                self.fields
                    .iter()
                    .map(|(_, c, k)| Field::new(c.as_str().into(), ColBuf::dtype(*k))),
            );
            let f = File::create(&self.path)
                .map_err(|e| polars_err!(ComputeError: "{}: {e}", self.path.display()))?;
            self.writer = Some(
                ParquetWriter::new(f)
                    .with_compression(ParquetCompression::Zstd(None))
                    .batched(&Schema::from_iter(schema))?,
            );
        }
        let n = self.ts.len();
        let mut cols = vec![
            Column::new("ts_ns".into(), std::mem::take(&mut self.ts)),
            Column::new("__cpu".into(), std::mem::take(&mut self.cpu)),
            Column::new("__pid".into(), std::mem::take(&mut self.pid)),
            Column::new("__comm".into(), std::mem::take(&mut self.comm)),
            Column::new("__context".into(), std::mem::take(&mut self.context)),
        ];
        for ((_, c, _), v) in self.fields.iter().zip(self.vals.iter_mut()) {
            cols.push(v.take(c));
        }
        let df = DataFrame::new(n, cols)?;
        self.writer
            .as_mut()
            .expect("created above")
            .write_batch(&df)
    }
}

/// A [`Sink`] writing `DIR/<event>.parquet`, one table per event with a
/// typed column per field (like LISA's `trace-dump`), a row group per
/// [`EVENTS_BATCH`] rows of an event.
pub struct SplitWriter {
    dir: std::path::PathBuf,
    tables: std::collections::BTreeMap<String, EventTable>,
    pub rows: u64,
    /// Values that did not fit their column's type (stored as null), and
    /// fields an event had beyond its first row's (not stored).
    pub mismatched: u64,
    pub extra_fields: u64,
    /// Events of names beyond [`MAX_TABLES`] (not stored).
    pub over_cap: u64,
    pub error: Option<PolarsError>,
    pub notices: Vec<String>,
}

/// Tables kept open at once at the most (one per event name).
const MAX_TABLES: usize = 4096;

impl SplitWriter {
    pub fn create(dir: &Path) -> PolarsResult<SplitWriter> {
        std::fs::create_dir_all(dir)
            .map_err(|e| polars_err!(ComputeError: "{}: {e}", dir.display()))?;
        Ok(SplitWriter {
            dir: dir.to_path_buf(),
            tables: Default::default(),
            rows: 0,
            mismatched: 0,
            extra_fields: 0,
            over_cap: 0,
            error: None,
            notices: Vec::new(),
        })
    }

    /// Write every table's last row group and footer; the events written and the tables.
    pub fn finish(mut self) -> PolarsResult<(u64, usize)> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let n = self.tables.len();
        for t in self.tables.values_mut() {
            t.flush()?;
            if let Some(w) = t.writer.take() {
                w.finish()?;
            }
        }
        Ok((self.rows, n))
    }
}

impl Sink for SplitWriter {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        if self.error.is_some() {
            return nmitrace_parser::STOP;
        }
        if !self.tables.contains_key(ev.name) {
            if self.tables.len() >= MAX_TABLES {
                self.over_cap += 1;
                return nmitrace_parser::CONTINUE;
            }
            // A file name from the event name: letters, digits, `_`, `-`.
            let file: String = ev
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let file = if file.is_empty() {
                "_".to_string()
            } else {
                file
            };
            self.tables.insert(
                ev.name.to_string(),
                EventTable::new(self.dir.join(format!("{file}.parquet")), ev),
            );
        }
        let t = self.tables.get_mut(ev.name).expect("inserted above");
        self.rows += 1;
        t.ts.push(ev.ts_ns);
        t.cpu.push(ev.cpu);
        t.pid.push(ev.pid);
        t.comm.push(ev.comm.map(Into::into));
        t.context.push(ev.ctx.label());
        // One pass over the event's fields: each into its column (the first
        // of a repeated name; the repeat, like a field the first row lacked,
        // is not stored), the columns it lacks null.
        let mut row: Vec<Option<nmitrace_parser::Value<'_>>> = vec![None; t.fields.len()];
        let mut extra = false;
        for f in ev.fields.iter() {
            match t.fields.iter().position(|(n, _, _)| n == f.name) {
                Some(i) if row[i].is_none() => row[i] = Some(f.value),
                _ => extra = true,
            }
        }
        for (buf, v) in t.vals.iter_mut().zip(row) {
            if !buf.push(v) {
                self.mismatched += 1;
            }
        }
        if extra {
            self.extra_fields += 1;
        }
        if t.ts.len() >= EVENTS_BATCH {
            if let Err(e) = t.flush() {
                self.error = Some(e);
                return nmitrace_parser::STOP;
            }
        }
        nmitrace_parser::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        keep_notice(&mut self.notices, n);
    }
}
