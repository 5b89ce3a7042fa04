"""nmitrace in Python: what goes wrong around NMIs in recorded Linux kernel traces.

The same analyses as the ``nmitrace`` command, in-process (the GIL is
released while Rust works)::

    import nmitrace, polars as pl
    report = nmitrace.analyze("trace.dat")          # the `analyze --format json` document
    report["coverage"]["verdict"]
    ev = pl.from_arrow(nmitrace.events("trace.dat", names=["nmi_handler"]).read_all())
    nmis = nmitrace.nmi_instances("trace.dat")       # a pyarrow.Table
    found = nmitrace.findings("trace.dat")

Every input the command reads is read here: trace.dat (v6, v7), raw tracefs
text, ``trace-cmd report`` and ``perf script`` text, each plain, gzip or
zstd. A trace nmitrace cannot read raises :class:`TraceError`, whose message
names the file and what was wrong. ``python -m nmitrace.fleet`` runs a batch
over a Dask cluster.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

import pyarrow as pa
import pyarrow.ipc

from . import _native
from ._native import TraceError

__all__ = ["TraceError", "analyze", "events", "nmi_instances", "findings", "analyze_tables", "__version__"]
__version__: str = _native.__version__

PathLike = Union[str, "os.PathLike[str]"]

#: Back-to-back NMI threshold (ns): an NMI starting this close to the end of
#: the previous one on the same CPU is back-to-back (``--b2b-threshold-ns``).
DEFAULT_B2B_THRESHOLD_NS = 2000


def _table(ipc: bytes) -> pa.Table:
    return pa.ipc.open_stream(ipc).read_all()


def analyze(
    path: PathLike,
    kernel: Optional[str] = None,
    arch: Optional[str] = None,
    b2b_threshold_ns: int = DEFAULT_B2B_THRESHOLD_NS,
    threads: Optional[int] = None,
) -> Dict[str, Any]:
    """Analyse one trace: the document ``nmitrace analyze --format json`` prints, as a dict.

    ``kernel`` (e.g. ``"2.6.35"``) and ``arch`` (``x86_64``, ``x86_64-5level``,
    ``x86_32``, ``x86_32-pae``) choose the kernel model as ``--kernel`` and
    ``--arch`` do; by default both come from the trace. ``threads``: parser
    threads (default: all cores).
    """
    return json.loads(_native.analyze_json(os.fspath(path), kernel, arch, b2b_threshold_ns, threads))


def analyze_tables(
    path: PathLike,
    kernel: Optional[str] = None,
    arch: Optional[str] = None,
    b2b_threshold_ns: int = DEFAULT_B2B_THRESHOLD_NS,
    threads: Optional[int] = None,
):
    """One analysis, three results: (report dict, NMI instances table, findings table)."""
    doc, nmis, found = _native.analyze_tables(os.fspath(path), kernel, arch, b2b_threshold_ns, threads)
    return json.loads(doc), _table(nmis), _table(found)


def nmi_instances(path: PathLike, **model: Any) -> pa.Table:
    """One row per NMI instance: trace, cpu, start_ns, end_ns, duration_ns, handled,
    handlers, pid, comm, faults, in_switch_window, nested (``--tables``' nmi_instances.parquet)."""
    return analyze_tables(path, **model)[1]


def findings(path: PathLike, **model: Any) -> pa.Table:
    """One row per finding: trace, kind, severity, confidence, ts_ns, cpu, pid, comm,
    message, details (JSON), evidence (``--tables``' findings.parquet)."""
    return analyze_tables(path, **model)[2]


class _Events:
    """Iterates the Arrow record batches of an event stream."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for chunk in self.stream:
                yield from pa.ipc.open_stream(chunk)
        finally:
            self.stream.close()


def events(path: PathLike, names: Optional[Iterable[str]] = None, threads: Optional[int] = None) -> pa.RecordBatchReader:
    """The decoded events as a ``pyarrow.RecordBatchReader``, streamed in batches of
    65,536 rows (decoded ahead on a thread of its own; memory stays flat).

    Columns, as ``events --format parquet`` writes them: ts_ns (uint64), cpu
    (uint32), pid (int32), comm, context, system, name, and fields (a JSON
    object, numbers as numbers, as ``events --format jsonl`` prints it).
    ``names``: only these events (e.g. ``["nmi_handler", "sched_switch"]``).
    ``.read_all()`` gives a Table; ``polars.from_arrow`` takes either.
    """
    wanted: Optional[List[str]] = None if names is None else [str(n) for n in names]
    stream = _native.events_stream(os.fspath(path), wanted, threads)
    schema = pa.ipc.open_stream(_native.events_schema()).schema
    return pa.RecordBatchReader.from_batches(schema, iter(_Events(stream)))
