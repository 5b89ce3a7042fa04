//! `analyze --tables/--plot/--report` and `events --format parquet`: the
//! Parquet files load in polars with the README's schema and agree with the
//! JSON report; the charts are real SVG/PNG files; the HTML page renders in
//! headless Chromium with its findings (skipped when chromium is absent).

mod common;
use common::*;
use polars::prelude::*;
use std::path::Path;
use std::process::Command;

fn read(path: &Path) -> DataFrame {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(f)
        .finish()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema_of(df: &DataFrame) -> Vec<(String, DataType)> {
    df.columns()
        .iter()
        .map(|c| (c.name().to_string(), c.dtype().clone()))
        .collect()
}

fn expect_schema(df: &DataFrame, want: &[(&str, DataType)]) {
    let got = schema_of(df);
    let want: Vec<(String, DataType)> = want
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    assert_eq!(got, want);
}

const SCENARIO: &str = "sample-traces/scenarios/perf-vmalloc-fault-in-switch-window/trace.txt";

#[test]
fn analyze_tables_match_the_json_report_and_the_documented_schema() {
    let t = repo().join(SCENARIO);
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let k = ["--kernel", "2.6.35", "--arch", "x86_64"];
    let mut args = vec![
        "analyze",
        t.to_str().unwrap(),
        "--tables",
        tables.to_str().unwrap(),
    ];
    args.extend_from_slice(&k);
    let o = nmitrace(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let json = analyze_json(&t, &k);

    let ev = read(&tables.join("events.parquet"));
    expect_schema(
        &ev,
        &[
            ("ts_ns", DataType::UInt64),
            ("cpu", DataType::UInt32),
            ("pid", DataType::Int32),
            ("comm", DataType::String),
            ("context", DataType::String),
            ("system", DataType::String),
            ("name", DataType::String),
            ("fields", DataType::String),
        ],
    );
    assert_eq!(
        ev.height() as u64,
        json["events"]["total"].as_u64().unwrap()
    );
    // Same count of one event name as the report's by_name.
    let names = ev.column("name").unwrap().str().unwrap();
    let switches = names.iter().filter(|n| *n == Some("sched_switch")).count() as u64;
    assert_eq!(
        switches,
        json["events"]["by_name"]["sched_switch"].as_u64().unwrap()
    );
    // Fields are JSON objects with numbers as numbers.
    let fields = ev.column("fields").unwrap().str().unwrap();
    let nmi_row = names.iter().position(|n| n == Some("nmi_handler")).unwrap();
    let f: serde_json::Value = serde_json::from_str(fields.get(nmi_row).unwrap()).unwrap();
    assert!(f["delta_ns"].is_u64(), "{f}");

    let nmi = read(&tables.join("nmi_instances.parquet"));
    expect_schema(
        &nmi,
        &[
            ("trace", DataType::String),
            ("cpu", DataType::UInt32),
            ("start_ns", DataType::UInt64),
            ("end_ns", DataType::UInt64),
            ("duration_ns", DataType::UInt64),
            ("handled", DataType::Int64),
            ("handlers", DataType::String),
            ("pid", DataType::Int32),
            ("comm", DataType::String),
            ("faults", DataType::UInt32),
            ("in_switch_window", DataType::Boolean),
            ("nested", DataType::Boolean),
        ],
    );
    assert_eq!(
        nmi.height() as u64,
        json["nmis"]["instances"].as_u64().unwrap()
    );
    let in_window = nmi.column("in_switch_window").unwrap().bool().unwrap();
    assert_eq!(
        in_window.iter().filter(|b| *b == Some(true)).count(),
        1,
        "the scenario's NMI ran in a switch window"
    );

    let fi = read(&tables.join("findings.parquet"));
    expect_schema(
        &fi,
        &[
            ("trace", DataType::String),
            ("kind", DataType::String),
            ("severity", DataType::String),
            ("confidence", DataType::String),
            ("ts_ns", DataType::UInt64),
            ("cpu", DataType::UInt32),
            ("pid", DataType::Int32),
            ("comm", DataType::String),
            ("message", DataType::String),
            ("details", DataType::String),
            ("evidence", DataType::String),
        ],
    );
    let jf = json["findings"].as_array().unwrap();
    assert_eq!(fi.height(), jf.len());
    let kinds: Vec<String> = fi
        .column("kind")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect();
    let jkinds: Vec<String> = jf
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, jkinds);
}

#[test]
fn events_parquet_streams_many_row_groups() {
    // 205,519 events, four row groups of 65,536: the real trace when ../shared is there.
    let full = shared()
        .map(|s| s.join("real/gcc-medium/trace.dat"))
        .filter(|p| p.is_file());
    let t = full
        .clone()
        .unwrap_or_else(|| repo().join("sample-traces/real/shell-python.trace.txt.gz"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.parquet");
    let o = nmitrace(&[
        "events",
        t.to_str().unwrap(),
        "--format",
        "parquet",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let df = read(&out);
    let count = nmitrace(&["events", t.to_str().unwrap(), "--format", "count"]);
    let n: usize = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(df.height(), n);
    assert!(n >= 4000, "{n}");
    if full.is_some() {
        assert!(n > 3 * 65_536, "{n}");
    }
    // Timestamps in trace order.
    let ts: Vec<u64> = df
        .column("ts_ns")
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    // Parquet without -o is a usage error.
    let o = nmitrace(&["events", t.to_str().unwrap(), "--format", "parquet"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn plots_are_svg_and_png() {
    let t = repo().join(SCENARIO);
    let dir = tempfile::tempdir().unwrap();
    let plots = dir.path().join("plots");
    let o = nmitrace(&[
        "analyze",
        t.to_str().unwrap(),
        "--kernel",
        "2.6.35",
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for name in ["timeline", "nmi_durations", "mm_out_of_sync"] {
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{name}.svg");
        let png = std::fs::read(plots.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name}.png: {} bytes",
            png.len()
        );
    }
    let tl = std::fs::read_to_string(plots.join("timeline.svg")).unwrap();
    for label in [
        "nmi_vmalloc_fault",
        "cr3_current_mismatch",
        "CPU 0",
        "NMI instance",
        "switch window",
    ] {
        assert!(tl.contains(label), "timeline.svg lacks {label}");
    }
    let d = std::fs::read_to_string(plots.join("nmi_durations.svg")).unwrap();
    assert!(d.contains("perf_event_nmi_handler") && d.contains("1 ms"));
    let mm = std::fs::read_to_string(plots.join("mm_out_of_sync.svg")).unwrap();
    assert!(
        mm.contains("lacking a vmalloc entry"),
        "a per-cpu chunk opened an entry: the chart has data"
    );
}

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|s| s.to_string())
}

fn headless(bin: &str, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Render `html` in headless Chromium: the DOM it built, and a screenshot.
pub fn render_in_chromium(html: &Path, shot: &Path) -> Option<String> {
    let Some(bin) = chromium() else {
        eprintln!("chromium not installed: skipping the headless HTML check (scripts/setup.sh installs it)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let dom = headless(&bin, profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        dom.status.success(),
        "chromium --dump-dom: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let s = headless(&bin, profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2400")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        s.status.success(),
        "chromium --screenshot: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    let png = std::fs::read(shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot {} bytes",
        png.len()
    );
    Some(String::from_utf8_lossy(&dom.stdout).into_owned())
}

#[test]
#[cfg_attr(
    not(chromium),
    ignore = "chromium is absent (scripts/setup.sh installs it)"
)]
fn html_report_renders_with_findings_and_charts() {
    let t = repo().join(SCENARIO);
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let o = nmitrace(&[
        "analyze",
        t.to_str().unwrap(),
        "--kernel",
        "2.6.35",
        "--report",
        html.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("<script") && !text.contains("<link") && !text.contains("src=\"http"),
        "self-contained"
    );
    assert_eq!(
        text.matches("<svg").count(),
        5,
        "three inline charts and a zoom for each of the two findings"
    );
    assert_eq!(text.matches("<figure class=\"zoom\">").count(), 2);
    assert!(
        text.contains("page_fault_kernel: address=0xffffe8ffffe03a40"),
        "evidence lines"
    );
    let Some(dom) = render_in_chromium(&html, &dir.path().join("shot.png")) else {
        return;
    };
    for want in [
        "nmi_vmalloc_fault",
        "cr3_current_mismatch",
        "Findings (2)",
        "perf_event_nmi_handler",
        "Per-CPU timeline",
    ] {
        assert!(dom.contains(want), "rendered DOM lacks {want}");
    }
    assert!(dom.matches("<svg").count() >= 3);
}

/// A real NMI in a switch window: the finding's card holds a zoomed chart of
/// its CPU (the switch, the NMI's handler interval, the flush after it,
/// next's first event, the window drawn from its bounds), in the page and as
/// `--plot` files.
#[test]
#[cfg_attr(
    not(chromium),
    ignore = "chromium is absent (scripts/setup.sh installs it)"
)]
fn html_report_shows_a_zoomed_finding_chart() {
    let t = repo().join("sample-traces/real/nmi-switch-window-before-flush.trace.txt.gz");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let plots = dir.path().join("plots");
    let o = nmitrace(&[
        "analyze",
        t.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "zoom-1-cr3_current_mismatch.svg",
        "zoom-1-cr3_current_mismatch.png",
    ] {
        assert!(plots.join(f).is_file(), "{f}");
    }
    let svg = std::fs::read_to_string(plots.join("zoom-1-cr3_current_mismatch.svg")).unwrap();
    for want in [
        "sched_switch 15781→15783",
        "nmi_handler nmi_cpu_backtrace_handler",
        "tlb_flush flush r0",
        "switch window",
        "µs from the finding",
    ] {
        assert!(svg.contains(want), "the zoom lacks {want}");
    }
    let text = std::fs::read_to_string(&html).unwrap();
    let card = text
        .find("<figure class=\"zoom\">")
        .expect("a zoom in the page");
    assert!(
        text[..card].rfind("cr3_current_mismatch").is_some(),
        "inside the finding's card"
    );
    let Some(dom) = render_in_chromium(&html, &dir.path().join("shot.png")) else {
        return;
    };
    assert!(
        dom.contains("cr3_current_mismatch on CPU 1"),
        "the zoom's caption is rendered"
    );
    assert!(
        dom.contains("interrupted at"),
        "the interrupted RIP is shown"
    );
}

/// `next_pid=N` of every sched_switch line of a text trace, in order (read
/// from the text itself).
fn next_pids(text: &str) -> Vec<i64> {
    text.lines()
        .filter(|l| l.contains(": sched_switch:"))
        .filter_map(|l| {
            l.split("next_pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn split(trace: &Path, dir: &Path) -> DataFrame {
    let o = nmitrace(&[
        "events",
        trace.to_str().unwrap(),
        "--format",
        "parquet",
        "--split",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    read(&dir.join("sched_switch.parquet"))
}

/// `events --format parquet --split`: one table per event, a typed column per
/// field, so `sched_switch.next_pid` filters without parsing JSON.
#[test]
fn split_tables_have_a_typed_column_per_field() {
    let t = repo().join("sample-traces/real/shell-python.trace.txt.gz");
    let tmp = tempfile::tempdir().unwrap();
    let df = split(&t, &tmp.path().join("tables"));
    let want = next_pids(&read_text(&t));
    assert!(want.len() > 100, "{}", want.len());
    let got: Vec<i64> = df
        .column("next_pid")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(got, want);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        &names[..5],
        ["ts_ns", "__cpu", "__pid", "__comm", "__context"]
    );
    assert_eq!(df.column("next_comm").unwrap().dtype(), &DataType::String);
    // Every event is in one table: the rows add up to the trace's events.
    let count = nmitrace(&["events", t.to_str().unwrap(), "--format", "count"]);
    let n: usize = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap();
    let rows: usize = std::fs::read_dir(tmp.path().join("tables"))
        .unwrap()
        .map(|e| read(&e.unwrap().path()).height())
        .sum();
    assert_eq!(rows, n);
    // --split is for parquet only.
    let o = nmitrace(&["events", t.to_str().unwrap(), "--split"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The same from trace.dat: the columns typed by the format files, the values
/// those of the text recorded from the same ring buffer.
#[test]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
fn split_tables_from_trace_dat_match_the_text() {
    let dir = shared().unwrap().join("real/shell-python");
    let tmp = tempfile::tempdir().unwrap();
    let df = split(&dir.join("trace.dat"), &tmp.path().join("dat"));
    let want = next_pids(&read_text(&dir.join("trace.txt.gz")));
    let col = df.column("next_pid").unwrap();
    assert_eq!(
        col.dtype(),
        &DataType::Int64,
        "pid_t is signed in the format file"
    );
    let got: Vec<i64> = col.i64().unwrap().iter().map(|v| v.unwrap()).collect();
    assert_eq!(got, want);
}
