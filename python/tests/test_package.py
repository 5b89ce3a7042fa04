"""The Python package against the CLI: same documents, same events, typed tables."""

import json
import threading

import pyarrow as pa
import pytest

import nmitrace
from nmitrace import _native
from conftest import SAMPLES, cli


def sample_traces():
    files, _ = _native.walk([str(SAMPLES)])
    traces = [f for f in files if not f.endswith((".md", ".py", ".json", ".pyc"))]
    return [f for f in traces if cli("analyze", "--format", "json", f, check=False).returncode == 0]


def test_analyze_equals_cli_json_on_every_sample_trace():
    traces = sample_traces()
    assert len(traces) >= 30, traces
    for t in traces:
        want = json.loads(cli("analyze", "--format", "json", t).stdout)
        assert nmitrace.analyze(t) == want, t


def test_analyze_model_options_as_the_cli():
    t = str(SAMPLES / "real" / "nmi-page-fault-copy-from-user.trace.txt.gz")
    want = json.loads(cli("analyze", "--format", "json", "--kernel", "2.6.35", "--arch", "x86_64", t).stdout)
    got = nmitrace.analyze(t, kernel="2.6.35", arch="x86_64")
    assert got == want
    assert got["input"]["model"] != nmitrace.analyze(t)["input"]["model"]
    with pytest.raises(ValueError, match="arch"):
        nmitrace.analyze(t, arch="sparc")


def jsonl_rows(trace):
    return [json.loads(l) for l in cli("events", "--format", "jsonl", trace).stdout.splitlines()]


def arrow_rows(trace, **kw):
    rows = []
    for b in nmitrace.events(trace, **kw):
        for r in b.to_pylist():
            r["fields"] = json.loads(r["fields"])
            if r["system"] is None:
                del r["system"]
            rows.append(r)
    return rows


@pytest.mark.parametrize("trace", ["text", "tracedat"])
def test_events_equal_jsonl_row_for_row(trace, shared, tmp_path):
    if trace == "text":
        path = str(SAMPLES / "real" / "shell-python.trace.txt.gz")
    else:
        path = str(shared / "real" / "gcc-medium" / "trace.dat")
    want = jsonl_rows(path)
    got = arrow_rows(path)
    assert len(want) > 1000
    assert got == want


def test_events_stream_in_batches_and_filter_by_name(shared):
    path = str(shared / "real" / "gcc-medium" / "trace.dat")
    reader = nmitrace.events(path)
    assert isinstance(reader, pa.RecordBatchReader)
    sizes = [b.num_rows for b in reader]
    assert len(sizes) > 1 and max(sizes) == 65536
    names = ["sched_switch", "nmi_handler"]
    want = [r for r in jsonl_rows(path) if r["name"] in names]
    got = arrow_rows(path, names=names)
    assert got == want and len(got) > 0
    # Stopping early is fine: the decoding thread ends.
    r = nmitrace.events(path)
    first = r.read_next_batch()
    assert first.num_rows == 65536
    r.close()


def test_nmi_instances_and_findings_tables_equal_the_cli_tables(tmp_path):
    import pyarrow.parquet as pq

    t = str(SAMPLES / "scenarios")
    files, _ = _native.walk([t])
    checked = 0
    for f in files:
        if cli("analyze", "--format", "json", f, check=False).returncode != 0:
            continue
        out = tmp_path / str(checked)
        cli("analyze", f, "--tables", out)
        doc, nmis, found = nmitrace.analyze_tables(f)
        # Same columns and values (Parquet stores strings as views, the stream as large_utf8).
        for got, name in ((nmis, "nmi_instances"), (found, "findings")):
            want = pq.read_table(out / f"{name}.parquet")
            assert got.column_names == want.column_names, (f, name)
            assert got.to_pylist() == want.to_pylist(), (f, name)
        assert found.num_rows == len(doc["findings"])
        checked += 1
    assert checked >= 5


def test_typed_event_tables_load_in_duckdb_and_polars(shared, tmp_path):
    import duckdb
    import polars as pl

    path = shared / "real" / "gcc-medium" / "trace.dat"
    cli("events", path, "--format", "parquet", "--split", "-o", tmp_path / "t")
    ss = pl.read_parquet(tmp_path / "t" / "sched_switch.parquet")
    assert ss.schema["next_pid"] in (pl.Int32, pl.Int64)
    assert ss.schema["prev_comm"] == pl.String
    assert ss.schema["ts_ns"] == pl.UInt64
    n_text = sum(1 for r in jsonl_rows(str(path)) if r["name"] == "sched_switch")
    assert ss.height == n_text
    con = duckdb.connect()
    q = f"select count(*), typeof(any_value(next_pid)) from '{tmp_path / 't' / 'sched_switch.parquet'}' where next_pid > 0"
    n, ty = con.execute(q).fetchone()
    assert ty in ("INTEGER", "BIGINT") and 0 < n <= ss.height


def test_bad_trace_raises_trace_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x17\x08\x44tracing6\x00" + b"\xff" * 40)
    with pytest.raises(nmitrace.TraceError, match="bad.dat"):
        nmitrace.analyze(bad)
    with pytest.raises(nmitrace.TraceError, match="missing.txt"):
        nmitrace.events(tmp_path / "missing.txt")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(nmitrace.TraceError, match="notes.txt"):
        nmitrace.findings(text)


def test_the_gil_is_released_while_rust_works(shared):
    """A second Python thread runs while analyze works. With a switch interval
    of 2 s the waiting thread cannot take the GIL from a thread that holds it
    (the call is much shorter): only a call that lets go of the GIL lets it run."""
    import sys

    path = str(shared / "real" / "gcc-medium" / "trace.dat")
    count = [0]
    go, stop = threading.Event(), threading.Event()

    def spin():
        go.wait()
        while not stop.is_set():
            count[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(2.0)
    th = threading.Thread(target=spin)
    th.start()
    try:
        go.set()
        _native.analyze_json(path, None, None, 2000, 1)
        during = count[0]
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    assert during > 0, during
