"""``python -m nmitrace.fleet``: ``nmitrace batch`` over a Dask cluster.

Lists the traces as ``nmitrace batch`` walks them, ships contiguous shards
to the workers (each analyses its shard in-process with the threads Dask
gave it and writes a part: the batch's tables), then merges the parts in
order and applies the batch's regression gate, so the result equals one
``nmitrace batch`` over the same files (timing columns aside) and the exit
status is the same (1: a regression against ``--baseline``).

A worker that dies is survived: Dask runs its shard again elsewhere; a shard
that still fails is split into single traces, and a trace that fails alone
gets its failed row. Nothing is lost.

Examples::

    python -m nmitrace.fleet /srv/traces --out today --local-workers 2
    python -m nmitrace.fleet /srv/traces --out today --baseline yesterday --scheduler tcp://sched:8786
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _native

__all__ = ["run", "main", "FleetResult"]


@dataclass
class FleetResult:
    """What a fleet run did: the exit status (0, or 1 on a regression), the
    merged summary as ``nmitrace batch`` prints it, and the run's figures."""

    code: int
    summary: str
    traces: int = 0
    failed: int = 0
    events: int = 0
    seconds: float = 0.0
    shards: int = 0
    lost_shards: List[int] = field(default_factory=list)


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except Exception:
        return 1


def analyse_shard(files: Sequence[str], part: str, model: Dict[str, Any]) -> Tuple[int, int, int, int]:
    """A worker's task: analyse ``files`` in-process (as many at once as the
    worker has threads) and write the part. (traces, failed, skipped, events)."""
    return _native.batch_part(list(files), part, jobs=_worker_threads(), threads=1, **model)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.events = total, 0, 0
        self.t0 = time.monotonic()
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.last = -1.0

    def add(self, traces: int, events: int) -> None:
        self.done += traces
        self.events += events
        if not self.enabled:
            return
        now = time.monotonic()
        dt = max(now - self.t0, 1e-9)
        line = f"{self.done}/{self.total} traces  {self.done / dt:.1f} traces/s  {self.events / dt / 1e6:.2f} M events/s"
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line)
            sys.stderr.flush()
        elif now - self.last >= 5 or self.done == self.total:
            # Not a terminal (a CI log): a line every 5 s at most.
            sys.stderr.write(line + "\n")
            self.last = now

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _shards(files: List[str], size: int) -> List[List[str]]:
    return [files[i : i + size] for i in range(0, len(files), size)]


def run(
    paths: Sequence[str],
    out: str,
    baseline: Optional[str] = None,
    client: Any = None,
    scheduler: Optional[str] = None,
    local_workers: Optional[int] = None,
    shard_size: Optional[int] = None,
    retries: int = 2,
    progress: bool = True,
    kernel: Optional[str] = None,
    arch: Optional[str] = None,
    b2b_threshold_ns: int = 2000,
    timeout: Optional[float] = None,
) -> FleetResult:
    """Run the fleet batch (see the module's doc). ``client``: a
    ``distributed.Client`` to use; else one to ``scheduler``, else a
    ``LocalCluster`` of ``local_workers`` workers (default: one per core)."""
    from distributed import Client, LocalCluster, as_completed

    t0 = time.monotonic()
    files, walk_skipped = _native.walk([os.fspath(p) for p in paths])
    own_client = client is None
    cluster = None
    if own_client:
        if scheduler:
            client = Client(scheduler)
        else:
            n = local_workers or os.cpu_count() or 1
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
            client = Client(cluster)
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = shard_size or max(1, math.ceil(len(files) / (workers * 4)))
        shards = _shards(files, size)
        model = {"kernel": kernel, "arch": arch, "b2b_threshold_ns": b2b_threshold_ns, "timeout": timeout}
        out_abs = os.path.abspath(out)
        parts_dir = f"{out_abs}.parts-{os.getpid()}"
        os.makedirs(parts_dir, exist_ok=True)
        bar = _Progress(len(files), progress)
        # parts[i]: the part directories of shard i, in file order.
        parts: Dict[int, List[str]] = {}
        lost: List[int] = []
        pending = {}
        for i, shard in enumerate(shards):
            part = os.path.join(parts_dir, f"{i:06d}")
            fut = client.submit(analyse_shard, shard, part, model, key=f"nmitrace-shard-{os.getpid()}-{i}", retries=retries, pure=False)
            pending[fut] = (i, shard, part)
        traces = failed = events = 0
        queue = as_completed(list(pending))
        for fut in queue:
            i, shard, part = pending.pop(fut)
            try:
                n, nf, _skipped, ev = fut.result()
                parts.setdefault(i, []).append(part)
            except Exception as e:  # a worker died each time, or the task itself failed
                if len(shard) > 1:
                    # Split: one trace per task, so that one bad trace costs only its row.
                    lost.append(i)
                    for j, f in enumerate(shard):
                        sub = f"{part}-{j:06d}"
                        g = client.submit(analyse_shard, [f], sub, model, key=f"nmitrace-trace-{os.getpid()}-{i}-{j}", retries=retries, pure=False)
                        pending[g] = (i, [f], sub)
                        queue.add(g)
                    continue
                n, nf, _skipped, ev = _native.failed_part(shard, part, f"lost on the cluster: {type(e).__name__}: {e}")
                parts.setdefault(i, []).append(part)
            traces += n
            failed += nf
            events += ev
            bar.add(n, ev)
        bar.close()
        ordered = [p for i in sorted(parts) for p in sorted(parts[i])]
        summary, code = _native.merge(ordered, out_abs, baseline, walk_skipped)
        shutil.rmtree(parts_dir, ignore_errors=True)
        return FleetResult(code, summary, traces, failed, events, time.monotonic() - t0, len(shards), lost)
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m nmitrace.fleet",
        description="nmitrace batch over a Dask cluster: shards the traces over the workers, merges their parts, gates on regressions.",
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="trace files or directories (walked recursively, as nmitrace batch does)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (what nmitrace batch --out writes)")
    p.add_argument("--baseline", metavar="OLD_DIR", help="an earlier batch's output to compare with (exit 1 on regression)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--local-workers", type=int, metavar="N", help="start a LocalCluster of N worker processes (default: one per core)")
    p.add_argument("--shard-size", type=int, metavar="K", help="traces per task (default: about four tasks per worker)")
    p.add_argument("--kernel", metavar="VERSION", help="kernel release to model (default: from each trace)")
    p.add_argument("--arch", metavar="ARCH", choices=["x86_64", "x86_64-5level", "x86_32", "x86_32-pae"])
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="give up on a trace after this long (it gets a failed row)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on standard error")
    a = p.parse_args(argv)
    try:
        r = run(
            a.paths,
            a.out,
            baseline=a.baseline,
            scheduler=a.scheduler,
            local_workers=a.local_workers,
            shard_size=a.shard_size,
            progress=not a.no_progress,
            kernel=a.kernel,
            arch=a.arch,
            timeout=a.timeout,
        )
    except (_native.TraceError, ValueError, OSError) as e:
        print(f"nmitrace.fleet: error: {e}", file=sys.stderr)
        return 2
    print(r.summary.rstrip())
    secs = max(r.seconds, 1e-9)
    print(f"fleet: {r.shards} shards, {r.traces / secs:.1f} traces/s, {r.events / secs / 1e6:.2f} M events/s in {r.seconds:.1f} s")
    return r.code


if __name__ == "__main__":
    sys.exit(main())
