"""The Dask fleet driver against `nmitrace batch` on the same files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from nmitrace import fleet
from conftest import ROOT, SAMPLES, cli

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def corpus(shared, tmp_path_factory):
    """Every trace of sample-traces and ../shared/traces, twice more as real
    copies (the walk counts a link once), so there are far more traces than workers."""
    d = tmp_path_factory.mktemp("corpus")
    for i in range(2):
        shutil.copytree(SAMPLES, d / f"copy{i}" / "sample-traces")
        shutil.copytree(shared, d / f"copy{i}" / "shared-traces")
    return [str(SAMPLES), str(shared), str(d)]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        with distributed.Client(c) as client:
            yield client


@pytest.fixture(scope="module")
def batch_out(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    cli("batch", *corpus, "--out", out, "--jobs", "2")
    return out


def table(d, name):
    t = pq.read_table(os.path.join(d, f"{name}.parquet"))
    if "seconds" in t.column_names:  # wall time of each trace
        t = t.drop(["seconds"])
    return t


def assert_same(a, b):
    for name in ("traces", "findings", "nmi_durations", "skipped"):
        ta, tb = table(a, name), table(b, name)
        assert ta.column_names == tb.column_names, name
        assert ta.num_rows == tb.num_rows, name
        assert ta.equals(tb), name


def test_fleet_equals_batch(corpus, cluster, batch_out, tmp_path):
    out = tmp_path / "fleet"
    r = fleet.run(corpus, str(out), client=cluster, progress=False)
    assert r.code == 0
    traces = table(batch_out, "traces")
    assert traces.num_rows > 600, traces.num_rows
    assert r.traces == traces.num_rows and r.shards > 2
    assert_same(batch_out, out)
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "plots" / "fleet_nmi_latency.svg").exists()


def regressions(d):
    return json.loads((d / "regressions.json").read_text())


def test_baseline_gate_fires_as_batch_does(corpus, cluster, tmp_path):
    # The baseline: the real traces only, where the scenarios' kinds
    # (nmi_vmalloc_fault, lost_nmi, …) never occur: an injected regression.
    base = tmp_path / "base"
    cli("batch", SAMPLES / "real", "--out", base)
    b = subprocess.run([str(ROOT / "target/release/nmitrace"), "batch", *corpus, "--out", tmp_path / "b", "--baseline", base], capture_output=True, text=True)
    assert b.returncode == 1, b.stdout + b.stderr
    f = fleet.run(corpus, str(tmp_path / "f"), baseline=str(base), client=cluster, progress=False)
    assert f.code == 1
    assert regressions(tmp_path / "f") == regressions(tmp_path / "b")
    assert any(r["kind_or_handler"] == "nmi_vmalloc_fault" for r in regressions(tmp_path / "f"))
    # And against itself, nothing fires.
    g = fleet.run(corpus, str(tmp_path / "g"), baseline=str(tmp_path / "b"), client=cluster, progress=False)
    assert g.code == 0 and regressions(tmp_path / "g") == []


def test_command_line(corpus, tmp_path):
    out = tmp_path / "cmd"
    p = subprocess.run(
        [sys.executable, "-m", "nmitrace.fleet", str(SAMPLES), "--out", str(out), "--local-workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "traces:" in p.stdout and "traces/s" in p.stdout
    assert "traces/s" in p.stderr  # the progress lines
    assert (out / "traces.parquet").exists()
    bad = subprocess.run([sys.executable, "-m", "nmitrace.fleet", "/nonexistent", "--out", str(tmp_path / "x"), "--local-workers", "1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "/nonexistent" in bad.stderr


def test_a_killed_worker_loses_nothing(corpus, batch_out, tmp_path):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, distributed.Client(c) as client:
        pids = client.run(os.getpid)
        out = tmp_path / "killed"
        parts = f"{out}.parts-{os.getpid()}"
        killed = []

        def killer():
            # Once the first shards are done, kill one worker mid-run.
            while not killed:
                if os.path.isdir(parts) and len([p for p in os.listdir(parts) if not p.startswith(".")]) >= 3:
                    pid = sorted(pids.values())[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.append((pid, len(os.listdir(parts))))
                    return
                time.sleep(0.005)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        r = fleet.run(corpus, str(out), client=client, shard_size=2, progress=False)
        th.join(timeout=5)
        assert killed, "the run ended before a worker could be killed"
        assert killed[0][1] < r.shards, (killed, r.shards)
        assert r.code == 0
        assert_same(batch_out, out)
        assert table(out, "traces").column("status").to_pylist().count("failed") == table(batch_out, "traces").column("status").to_pylist().count("failed")
