//! `nmitrace._native`: the Rust side of the Python package. Every function
//! releases the GIL while Rust works, turns a bad trace into
//! `nmitrace.TraceError` (naming the file) and a panic into one too (never
//! a crash of the interpreter). Tables cross into Python as Arrow IPC
//! streams (`pyarrow.ipc.open_stream`); `nmitrace/__init__.py` wraps them.

use nmitrace_analyses::tables::{self, EventColumns, EVENTS_BATCH};
use nmitrace_analyses::{Analysis, Config, DEFAULT_B2B_THRESHOLD_NS};
use nmitrace_cli::batch::{self, Batch, Options, TraceResult};
use nmitrace_parser::{Event, Flow, Notice, Sink, Trace};
use polars::prelude::DataFrame;
use pyo3::create_exception;
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};

create_exception!(
    _native,
    TraceError,
    PyValueError,
    "A trace nmitrace cannot read (the message names the file and what was wrong)."
);

/// Run `f` with the GIL released; an error or a panic becomes a TraceError.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, String> + Send) -> PyResult<T> {
    let r = py.allow_threads(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TraceError::new_err(e)),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TraceError::new_err(format!(
                "internal error in nmitrace (a bug; please report it with the input): {msg}"
            )))
        }
    }
}

fn config(kernel: Option<String>, arch: Option<String>, b2b_threshold_ns: u64) -> PyResult<Config> {
    if let Some(k) = &kernel {
        nmitrace_replay::kernel_model::check_kernel(k)
            .map_err(|e| PyValueError::new_err(format!("kernel={k:?}: {e}")))?;
    }
    if let Some(a) = &arch {
        const ARCHES: [&str; 4] = ["x86_64", "x86_64-5level", "x86_32", "x86_32-pae"];
        if !ARCHES.contains(&a.as_str()) {
            return Err(PyValueError::new_err(format!(
                "arch={a:?}: not one of {}",
                ARCHES.join(", ")
            )));
        }
    }
    Ok(Config {
        kernel,
        arch,
        b2b_threshold_ns,
    })
}

/// What `nmitrace analyze` runs, without its progress line.
fn analysis(
    path: &std::path::Path,
    config: &Config,
    threads: Option<usize>,
) -> Result<Analysis, String> {
    let t = Trace::open(path).map_err(|e| e.to_string())?;
    nmitrace_cli::analyze::analyze_trace(t, config, threads, false, None)
        .map_err(|e| format!("{e:#}"))
}

fn ipc(mut df: DataFrame) -> Result<Vec<u8>, String> {
    tables::ipc_stream_bytes(&mut df).map_err(|e| format!("cannot encode the table: {e}"))
}

/// The `analyze --format json` document of one trace, as JSON text.
#[pyfunction]
#[pyo3(signature = (path, kernel=None, arch=None, b2b_threshold_ns=DEFAULT_B2B_THRESHOLD_NS, threads=None))]
fn analyze_json(
    py: Python<'_>,
    path: PathBuf,
    kernel: Option<String>,
    arch: Option<String>,
    b2b_threshold_ns: u64,
    threads: Option<usize>,
) -> PyResult<String> {
    let cfg = config(kernel, arch, b2b_threshold_ns)?;
    detached(py, || {
        let a = analysis(&path, &cfg, threads)?;
        serde_json::to_string_pretty(&a.report).map_err(|e| e.to_string())
    })
}

/// The report (JSON text), and the NMI instances and findings tables (Arrow IPC streams).
#[pyfunction]
#[pyo3(signature = (path, kernel=None, arch=None, b2b_threshold_ns=DEFAULT_B2B_THRESHOLD_NS, threads=None))]
fn analyze_tables(
    py: Python<'_>,
    path: PathBuf,
    kernel: Option<String>,
    arch: Option<String>,
    b2b_threshold_ns: u64,
    threads: Option<usize>,
) -> PyResult<(String, Py<PyBytes>, Py<PyBytes>)> {
    let cfg = config(kernel, arch, b2b_threshold_ns)?;
    let (json, nmis, findings) = detached(py, || {
        let a = analysis(&path, &cfg, threads)?;
        let json = serde_json::to_string_pretty(&a.report).map_err(|e| e.to_string())?;
        let nmis = ipc(tables::nmi_instances_df(&a).map_err(|e| e.to_string())?)?;
        let rows = a
            .report
            .findings
            .iter()
            .map(|f| (a.report.input.path.as_str(), f));
        let findings = ipc(tables::findings_df(rows).map_err(|e| e.to_string())?)?;
        Ok((json, nmis, findings))
    })?;
    Ok((
        json,
        PyBytes::new(py, &nmis).unbind(),
        PyBytes::new(py, &findings).unbind(),
    ))
}

/// The events table's schema, as an empty Arrow IPC stream.
#[pyfunction]
fn events_schema(py: Python<'_>) -> PyResult<Py<PyBytes>> {
    let b = detached(py, || {
        ipc(DataFrame::empty_with_schema(&tables::events_schema()))
    })?;
    Ok(PyBytes::new(py, &b).unbind())
}

/// Fills a batch of rows and hands it over, encoded, when full; stops the
/// reading when the Python side has gone (the reader dropped).
struct ChannelSink {
    cols: EventColumns,
    names: Option<HashSet<String>>,
    tx: std::sync::mpsc::SyncSender<Result<Vec<u8>, String>>,
    gone: bool,
    warnings: Vec<String>,
}

impl ChannelSink {
    fn send(&mut self) -> bool {
        if self.cols.is_empty() {
            return true;
        }
        let msg = self.cols.take().map_err(|e| e.to_string()).and_then(ipc);
        if self.tx.send(msg).is_err() {
            self.gone = true;
        }
        !self.gone
    }
}

impl Sink for ChannelSink {
    fn event(&mut self, ev: &Event<'_>) -> Flow {
        if let Some(n) = &self.names {
            if !n.contains(ev.name) {
                return nmitrace_parser::CONTINUE;
            }
        }
        self.cols.push(ev);
        if self.cols.len() >= EVENTS_BATCH && !self.send() {
            return nmitrace_parser::STOP;
        }
        nmitrace_parser::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        tables::keep_notice(&mut self.warnings, n);
    }
}

/// The decoded events, batch by batch (each an Arrow IPC stream), decoded
/// on a thread of its own ahead of the reader (at most two batches ahead:
/// memory stays flat whatever the trace's length).
#[pyclass(module = "nmitrace._native")]
struct EventStream {
    rx: std::sync::Mutex<Option<Receiver<Result<Vec<u8>, String>>>>,
    warnings: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[pymethods]
impl EventStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let taken = self.rx.lock().ok().and_then(|mut g| g.take());
        let Some(rx) = taken else {
            return Err(PyStopIteration::new_err(()));
        };
        let (rx, got) = py.allow_threads(move || {
            let got = rx.recv();
            (rx, got)
        });
        match got {
            Ok(Ok(b)) => {
                if let Ok(mut g) = self.rx.lock() {
                    *g = Some(rx);
                }
                Ok(PyBytes::new(py, &b).unbind())
            }
            // The reader's error ends the stream.
            Ok(Err(e)) => Err(TraceError::new_err(e)),
            Err(_) => Err(PyStopIteration::new_err(())),
        }
    }

    /// Warnings and loss markers the reader met so far (the first 100).
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Stop the decoding (the thread ends at its next batch).
    fn close(&self) {
        if let Ok(mut g) = self.rx.lock() {
            *g = None;
        }
    }
}

#[pyfunction]
#[pyo3(signature = (path, names=None, threads=None))]
fn events_stream(
    py: Python<'_>,
    path: PathBuf,
    names: Option<Vec<String>>,
    threads: Option<usize>,
) -> PyResult<EventStream> {
    // Opened here, so that a missing or unreadable file raises at once.
    let mut trace = detached(py, || Trace::open(&path).map_err(|e| e.to_string()))?;
    trace.threads = threads;
    let (tx, rx) = sync_channel(2);
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = warnings.clone();
    std::thread::Builder::new()
        .name("nmitrace-events".into())
        .spawn(move || {
            let mut sink = ChannelSink { cols: EventColumns::default(), names: names.map(|n| n.into_iter().collect()), tx, gone: false, warnings: Vec::new() };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| trace.run(&mut sink)));
            if let Ok(mut w) = shared.lock() {
                *w = std::mem::take(&mut sink.warnings);
            }
            let err = match r {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("{}: internal error in nmitrace while decoding (a bug; please report it with the input)", path.display())),
            };
            if !sink.gone {
                sink.send();
            }
            if let Some(e) = err {
                let _ = sink.tx.send(Err(e));
            }
        })
        .map_err(|e| TraceError::new_err(format!("cannot start the decoding thread: {e}")))?;
    Ok(EventStream {
        rx: std::sync::Mutex::new(Some(rx)),
        warnings,
    })
}

/// The files under `paths` as `nmitrace batch` walks them (each once, by
/// inode; directories sorted), and what the walk passed over with the reason.
#[pyfunction]
fn walk(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<(Vec<String>, Vec<(String, String)>)> {
    detached(py, || {
        let w = batch::walk(&paths).map_err(|e| format!("{e:#}"))?;
        Ok((
            w.files.iter().map(|p| p.display().to_string()).collect(),
            w.skipped,
        ))
    })
}

fn part_summary(b: &Batch) -> (usize, usize, usize, u64) {
    let failed = b.results.iter().filter(|r| r.status != "ok").count();
    (
        b.results.len(),
        failed,
        b.skipped.len(),
        b.results.iter().map(|r| r.events).sum(),
    )
}

/// Analyse `files` as one shard of a fleet and write its tables into `out`
/// (what `nmitrace merge` reads). (traces, failed, skipped, events).
#[pyfunction]
#[pyo3(signature = (files, out, jobs=None, threads=None, kernel=None, arch=None, b2b_threshold_ns=DEFAULT_B2B_THRESHOLD_NS, timeout=None))]
#[allow(clippy::too_many_arguments)]
fn batch_part(
    py: Python<'_>,
    files: Vec<PathBuf>,
    out: PathBuf,
    jobs: Option<usize>,
    threads: Option<usize>,
    kernel: Option<String>,
    arch: Option<String>,
    b2b_threshold_ns: u64,
    timeout: Option<f64>,
) -> PyResult<(usize, usize, usize, u64)> {
    let cfg = config(kernel, arch, b2b_threshold_ns)?;
    detached(py, || {
        let t0 = std::time::Instant::now();
        let opts = Options::new(jobs, threads, cfg, timeout, false);
        let (results, not_traces) =
            batch::analyse_files(&files, &opts).map_err(|e| format!("{e:#}"))?;
        let b = Batch::new(
            results,
            not_traces,
            Vec::new(),
            t0.elapsed().as_secs_f64(),
            opts.jobs,
        );
        batch::write_part(&out, &b).map_err(|e| format!("{e:#}"))?;
        Ok(part_summary(&b))
    })
}

/// A part in which every one of `files` failed with `reason` (a shard whose
/// workers kept dying): the traces keep their rows.
#[pyfunction]
fn failed_part(
    py: Python<'_>,
    files: Vec<String>,
    out: PathBuf,
    reason: String,
) -> PyResult<(usize, usize, usize, u64)> {
    detached(py, || {
        let results: Vec<TraceResult> = files
            .into_iter()
            .map(|f| TraceResult::failed(f, String::new(), reason.clone(), 0.0))
            .collect();
        let b = Batch::new(results, Vec::new(), Vec::new(), 0.0, 1);
        batch::write_part(&out, &b).map_err(|e| format!("{e:#}"))?;
        Ok(part_summary(&b))
    })
}

/// `nmitrace merge PARTS --out OUT [--baseline B]`, with the files the
/// caller's walk skipped: (the summary text, the exit status).
#[pyfunction]
#[pyo3(signature = (parts, out, baseline=None, walk_skipped=Vec::new()))]
fn merge(
    py: Python<'_>,
    parts: Vec<PathBuf>,
    out: PathBuf,
    baseline: Option<PathBuf>,
    walk_skipped: Vec<(String, String)>,
) -> PyResult<(String, u8)> {
    detached(py, || {
        let base = match &baseline {
            Some(d) => Some(nmitrace_analyses::regression::read_baseline(d)?),
            None => None,
        };
        nmitrace_cli::merge::merge(&parts, &out, base.as_ref(), walk_skipped)
            .map_err(|e| format!("{e:#}"))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TraceError", m.py().get_type::<TraceError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<EventStream>()?;
    m.add_function(wrap_pyfunction!(analyze_json, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_tables, m)?)?;
    m.add_function(wrap_pyfunction!(events_schema, m)?)?;
    m.add_function(wrap_pyfunction!(events_stream, m)?)?;
    m.add_function(wrap_pyfunction!(walk, m)?)?;
    m.add_function(wrap_pyfunction!(batch_part, m)?)?;
    m.add_function(wrap_pyfunction!(failed_part, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    Ok(())
}
