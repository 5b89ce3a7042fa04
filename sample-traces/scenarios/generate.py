#!/usr/bin/env python3
"""Deterministic generator for the nmitrace scenario traces.

Real background (two windows cut from ../../shared/traces/real/shell-python,
committed under background/) + injected NMI stories, rendered from ONE
structured event list into the three text formats the kernel tools print:

  trace.txt   raw tracefs text (/sys/kernel/tracing/trace, 5-char flags column)
  report.txt  `trace-cmd report` text (cpus=N header, padded names, plugins)
  perf.txt    `perf script` text (comm pid [cpu] ts: system:event: payload)

Same events, same timestamps, same order in all three.  Python 3.11 stdlib
only.  Running it twice gives byte-identical files (fixed seed, no clocks).

    python3 sample-traces/scenarios/generate.py            # rewrite in place
    python3 sample-traces/scenarios/generate.py --out DIR  # write elsewhere

Untouched background lines are re-rendered from their parsed fields and
asserted byte-identical to the original tracefs / trace-cmd lines.
"""

import argparse
import gzip
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BG = os.path.join(HERE, "background")
SEED = 4  # seed 004: the NMI latch thread

# --------------------------------------------------------------------------
# event model

SYSTEM = {
    "sched_switch": "sched", "sched_wakeup": "sched", "sched_process_exit": "sched",
    "sched_process_exec": "sched", "sched_process_fork": "sched",
    "sched_process_free": "sched", "task_newtask": "task",
    "page_fault_user": "exceptions", "page_fault_kernel": "exceptions",
    "tlb_flush": "tlb", "percpu_alloc_percpu": "percpu",
    "percpu_free_percpu": "percpu", "percpu_create_chunk": "percpu",
    "alloc_vmap_area": "vmalloc", "free_vmap_area_noflush": "vmalloc",
    "local_timer_entry": "irq_vectors", "local_timer_exit": "irq_vectors",
    "call_function_single_entry": "irq_vectors",
    "call_function_single_exit": "irq_vectors",
    "reschedule_entry": "irq_vectors", "reschedule_exit": "irq_vectors",
    "nmi_handler": "nmi", "console": "printk",
}
# trace-cmd report prints these through its plugins; perf script (plain
# libtraceevent, no plugins) prints the kernel's own print fmt for them.
PLUGIN_EVENTS = {"sched_switch", "sched_wakeup", "tlb_flush"}


class Ev:
    __slots__ = ("ts", "cpu", "pid", "comm", "flags", "name", "raw", "rep",
                 "perf", "bg_raw", "bg_rep", "pcomm")

    def __init__(self, ts, cpu, pid, comm, flags, name, raw, rep=None,
                 perf=None, pcomm=None):
        self.ts = ts            # integer microseconds (all three formats print us)
        self.cpu = cpu
        self.pid = pid
        self.comm = comm        # comm column of tracefs / trace-cmd (cmdline cache)
        self.flags = flags      # 5-char tracefs flags
        self.name = name
        self.raw = raw          # tracefs payload (%p hashed)
        self.rep = raw if rep is None else rep      # trace-cmd payload
        if perf is None:
            perf = self.raw if name in PLUGIN_EVENTS else self.rep
        self.perf = perf        # perf script payload
        self.bg_raw = None
        self.bg_rep = None
        self.pcomm = pcomm      # perf comm (comm at that time; pid 0 = swapper)


def ts_str(us):
    return "%5d.%06d" % (us // 1000000, us % 1000000)


def render_raw(e):
    return "%16s-%-7d [%03d] %s %s: %s: %s" % (
        e.comm, e.pid, e.cpu, e.flags, ts_str(e.ts), e.name, e.raw)


def render_rep(e):
    return "%16s-%-5d [%03d] %s: %-21s %s" % (
        e.comm, e.pid, e.cpu, ts_str(e.ts), e.name + ":", e.rep)


def render_perf(e, width):
    return "%16s %5d [%03d] %s: %*s: %s" % (
        e.pcomm, e.pid, e.cpu, ts_str(e.ts), width,
        SYSTEM[e.name] + ":" + e.name, e.perf)


RAW_RX = re.compile(r"^\s*(.*)-(\d+)\s+\[(\d{3})\] (\S{5})\s+(\d+)\.(\d{6}): (\w+): (.*)$")
REP_RX = re.compile(r"^\s*(.*)-(\d+)\s+\[(\d{3})\]\s+(\d+)\.(\d{6}): (\w+):\s+(.*)$")


def load_window(tag):
    def rd(kind):
        with gzip.open(os.path.join(BG, "window-%s.%s.txt.gz" % (tag, kind)), "rt") as f:
            return f.read().splitlines()
    raws, reps = rd("trace"), rd("report")
    assert len(raws) == len(reps)
    out = []
    for a, b in zip(raws, reps):
        m, n = RAW_RX.match(a), REP_RX.match(b)
        assert m and n, (a, b)
        comm, pid, cpu, flags, s, us, name, payload = m.groups()
        assert (n.group(1), n.group(2), n.group(3), n.group(4), n.group(5), n.group(6)) == \
            (comm, pid, cpu, s, us, name), (a, b)
        e = Ev(int(s) * 1000000 + int(us), int(cpu), int(pid), comm, flags, name,
               payload, n.group(7))
        e.bg_raw, e.bg_rep = a, b
        # the renderers must reproduce the original lines byte for byte
        assert render_raw(e) == a, (render_raw(e), a)
        assert render_rep(e) == b, (render_rep(e), b)
        out.append(e)
    return out


# comm at the start of a window for tasks that exec inside it (perf shows the
# pre-exec comm until the exec): from the fork lines of the full real trace,
# e.g. "sh-12897 ... sched_process_fork: ... child_comm=sh child_pid=12910"
# at 608.704152, before window A.
PRE_WINDOW_COMM = {12910: "sh"}


def fix_perf_comms(evs):
    """perf tracks comm over time (COMM events at exec); tracefs and
    trace-cmd print the cmdline cache, i.e. the latest comm.  Derive the comm
    at each moment from the sched payloads; pid 0 is 'swapper' in perf."""
    known = dict(PRE_WINDOW_COMM)
    first = {}
    for e in evs:  # first comm mentioned for each pid by a sched payload
        for pid, comm in payload_comms(e):
            first.setdefault(pid, comm)
    for e in evs:
        if e.pcomm is None:
            if e.pid == 0:
                e.pcomm = "swapper"
            else:
                e.pcomm = known.get(e.pid) or first.get(e.pid) or e.comm
        for pid, comm in payload_comms(e):
            known[pid] = comm
        if e.name == "sched_process_exec":
            known[e.pid] = os.path.basename(re.search(r"filename=(\S+)", e.raw).group(1))[:15]


def payload_comms(e):
    if e.name == "sched_switch":
        m = re.search(r"prev_comm=(.*) prev_pid=(\d+) .* next_comm=(.*) next_pid=(\d+)", e.raw)
        return [(int(m.group(2)), m.group(1)), (int(m.group(4)), m.group(3))]
    if e.name == "sched_wakeup":
        m = re.search(r"comm=(.*) pid=(\d+) prio", e.raw)
        return [(int(m.group(2)), m.group(1))]
    if e.name == "sched_process_fork":
        m = re.search(r"child_comm=(.*) child_pid=(\d+)", e.raw)
        return [(int(m.group(2)), m.group(1))]
    return []


# --------------------------------------------------------------------------
# injected event constructors (payloads in the kernel's / tools' formats)

REPORT_STATE = {"R": "R", "R+": "R", "S": "S", "D": "D", "I": "W", "Z": "X"}  # seen in real report


def sched_switch(ts, cpu, flags, prev, next_, prev_state):
    (pc, pp, ppr), (nc, np_, npr) = prev, next_
    raw = ("prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s ==> next_comm=%s "
           "next_pid=%d next_prio=%d" % (pc, pp, ppr, prev_state, nc, np_, npr))
    rep = "%s:%d [%d] %s ==> %s:%d [%d]" % (pc, pp, ppr, REPORT_STATE[prev_state], nc, np_, npr)
    return Ev(ts, cpu, pp, "<idle>" if pp == 0 else pc, flags, "sched_switch", raw, rep)


def sched_wakeup(ts, cpu, pid, comm, flags, target, target_cpu):
    tc, tp, tpr = target
    raw = "comm=%s pid=%d prio=%d target_cpu=%03d" % (tc, tp, tpr, target_cpu)
    rep = "%s:%d [%d] CPU:%03d" % (tc, tp, tpr, target_cpu)
    return Ev(ts, cpu, pid, comm, flags, "sched_wakeup", raw, rep)


def nmi_handler(ts, cpu, pid, comm, flags, handler, delta_ns, handled):
    return Ev(ts, cpu, pid, comm, flags, "nmi_handler",
              "%s() delta_ns: %d handled: %d" % (handler, delta_ns, handled))


def page_fault_kernel(ts, cpu, pid, comm, flags, address, ip, error_code):
    return Ev(ts, cpu, pid, comm, flags, "page_fault_kernel",
              "address=0x%x ip=%s error_code=0x%x" % (address, ip, error_code))


def console(ts, cpu, pid, comm, flags, msg):
    return Ev(ts, cpu, pid, comm, flags, "console", msg)


def hashed_ptr(rng):
    # tracefs prints %p hashed: 32 zero bits + 32 hash bits, as in the real trace
    return "%016x" % rng.getrandbits(32)


# --------------------------------------------------------------------------
# NMI instance builder: timing consistent with SPEC 3.6 at us resolution

class NmiBuilder:
    """Builds one NMI instance on a CPU.  Handler k starts (ts - delta_ns)
    `gap` ns after handler k-1's printed timestamp; all arithmetic is done on
    the printed (microsecond) timestamps so that a reader computing
    start = ts*1000 - delta_ns gets exactly the intended chain."""

    def __init__(self, rng, bg, cpu, start_ns, pid, comm, flags):
        self.rng, self.bg, self.cpu = rng, bg, cpu
        self.start_ns = start_ns
        self.cursor = start_ns          # ns: where the next handler starts
        self.pid, self.comm, self.flags = pid, comm, flags
        self.events = []
        self.handlers = []              # (name, start_ns, end_us, delta, handled)

    def handler(self, name, handled, dur_ns, inner=()):
        """inner: list of (offset_ns_from_handler_start, factory(ts_us)) events
        emitted while this handler runs (faults, printk)."""
        start = self.cursor
        for off, fac in inner:
            t = start + off
            self.events.append(fac(t // 1000 if t % 1000 else t // 1000))
        end_us = -(-(start + dur_ns) // 1000)     # ceil to the printed us
        delta = end_us * 1000 - start
        self.events.append(nmi_handler(end_us, self.cpu, self.pid, self.comm,
                                       self.flags, name, delta, handled))
        self.handlers.append((name, start, end_us, delta, handled))
        self.cursor = end_us * 1000 + self.rng.randrange(150, 650)
        return self

    def after(self, fac_list):
        """events after the last handler returned, still in NMI (printk)."""
        t = self.handlers[-1][2]
        for i, fac in enumerate(fac_list):
            self.events.append(fac(t + 1 + i))
        return self

    @property
    def end_us(self):
        return max(e.ts for e in self.events)

    def check_free(self):
        """No background event of this CPU may fall inside the NMI: the CPU
        cannot trace anything else while it is in NMI."""
        lo, hi = self.start_ns // 1000, self.end_us
        for e in self.bg:
            if e.cpu == self.cpu and lo <= e.ts <= hi:
                raise AssertionError("bg event inside NMI on cpu %d: %s" % (self.cpu, e.bg_raw))
        return self


def free_slot(bg, cpu, t_us, need_us, not_before=None):
    """earliest time >= t_us where [t, t+need] on cpu holds no bg event
    (with 1 us guard on each side)."""
    ts = sorted(e.ts for e in bg if e.cpu == cpu)
    t = t_us
    while True:
        clash = [x for x in ts if t - 1 <= x <= t + need_us + 1]
        if not clash:
            return t
        t = max(clash) + 2


def current_on(bg, cpu, t_us):
    """(pid, comm) of the task running on cpu at t_us: the pid of the last
    background event there, or the next task of a sched_switch (only used
    where no switch window is open: next is a kernel thread or has run)."""
    last = None
    for e in bg:
        if e.cpu == cpu and e.ts < t_us:
            last = e
    if last.name == "sched_switch":
        m = re.search(r"next_comm=(.*) next_pid=(\d+)", last.raw)
        pid = int(m.group(2))
        return pid, "<idle>" if pid == 0 else m.group(1), last
    return last.pid, last.comm, last


def merge(bg, inj):
    keyed = [((e.ts, 0, i), e) for i, e in enumerate(bg)] + \
            [((e.ts, 1, i), e) for i, e in enumerate(inj)]
    keyed.sort(key=lambda k: k[0])
    return [e for _, e in keyed]


# --------------------------------------------------------------------------
# scenarios

AMD_HANDLERS = ["perf_event_nmi_handler", "nmi_cpu_backtrace_handler", "perf_ibs_nmi_handler"]
DUR = {"perf_event_nmi_handler": (2100, 4800), "nmi_cpu_backtrace_handler": (1050, 1400),
       "perf_ibs_nmi_handler": (1200, 2600)}

VMALLOC_START, VMALLOC_END = 0xffffc90000000000, 0xffffe8ffffffffff
CHUNK_BASE = 0xffffe8ffffe00000     # top 2 MiB of the vmalloc range: PGD entry 465
CHUNK_SIZE = 2 * 1024 * 1024        # 2 units (2 CPUs) x 1 MiB
PERF_BUF = CHUNK_BASE + 0x0 * 0x100000 + 0x3a40   # CPU 0's unit + offset


def pgd_index(addr):
    return (addr >> 39) & 0x1ff


def dur(rng, h):
    a, b = DUR[h]
    return rng.randrange(a, b)


def plain_nmi(rng, bg, cpu, t_us, handled, flags=None, handlers=AMD_HANDLERS,
              start_ns=None):
    """one NMI on cpu interrupting whatever runs there; handled: dict."""
    pid, comm, last = current_on(bg, cpu, t_us)
    if flags is None:
        flags = "d.Z.."
    s = start_ns if start_ns is not None else t_us * 1000 + rng.randrange(100, 900)
    nb = NmiBuilder(rng, bg, cpu, s, pid, comm, flags)
    for h in handlers:
        nb.handler(h, handled.get(h, 0), dur(rng, h))
    return nb


def sc_perf_vmalloc(rng, A):
    inj = []
    # CPU 1 is idle from 608.705240; the per-cpu balance worker creates a chunk
    # in vmalloc space, top-down from vend, opening PGD entry 465.
    t = 608705301
    inj.append(Ev(t, 1, 0, "<idle>", "d.h1.", "call_function_single_entry", "vector=251"))
    inj.append(sched_wakeup(t + 3, 1, 0, "<idle>", "dNh2.", ("kworker/1:2", 127, 120), 1))
    inj.append(Ev(t + 3, 1, 0, "<idle>", "dNh1.", "call_function_single_exit", "vector=251"))
    inj.append(sched_switch(t + 8, 1, "d..2.", ("swapper/1", 0, 120), ("kworker/1:2", 127, 120), "R"))
    inj.append(Ev(t + 30, 1, 127, "kworker/1:2", ".....", "alloc_vmap_area",
                  "va_start: %d size=%d align=%d vstart=0x%x vend=0x%x failed=0"
                  % (CHUNK_BASE, CHUNK_SIZE, CHUNK_SIZE, VMALLOC_START, VMALLOC_END)))
    inj.append(Ev(t + 41, 1, 127, "kworker/1:2", ".....", "percpu_create_chunk",
                  "base_addr=%s" % hashed_ptr(rng), "base_addr=0x%x" % CHUNK_BASE))
    inj.append(sched_switch(t + 67, 1, "d..2.", ("kworker/1:2", 127, 120), ("swapper/1", 0, 120), "I"))
    # CPU 0: uniq-12910 switches to cat-12908 (608.705844), cr3 <- cat's mm
    # (tlb_flush reason 0 at 608.705845, still uniq's pid); cat's first event
    # is at 608.705940.  The PMU NMI lands in between, stamped with uniq's pid.
    flush = [e for e in A if e.cpu == 0 and e.name == "tlb_flush" and e.ts == 608705845]
    assert flush and "flush on task switch (0)" in flush[0].raw and flush[0].pid == 12910
    nb = NmiBuilder(rng, A, 0, 608705846183, 12910, "uniq", "d.Z2.")
    nb.handler("perf_event_nmi_handler", 1, 6817, inner=[
        (2900, lambda ts: page_fault_kernel(ts, 0, 12910, "uniq", "d.Z2.", PERF_BUF,
                                            "perf_callchain", 0x2))])
    nb.check_free()
    first_cat = min(e.ts for e in A if e.cpu == 0 and e.ts > 608705845)
    assert nb.end_us < first_cat
    inj += nb.events
    return inj


def sc_two_sources(rng, A):
    # CPU 0, uniq-12910 running in user space (no event for 556 us).  NMI 1:
    # PMI + IBS both claimed (handled 2 -> swallow_nmi set); the second edge
    # was latched and fires back-to-back with nothing left: swallowed.
    nb = plain_nmi(rng, A, 0, 608705100, {"perf_event_nmi_handler": 1, "perf_ibs_nmi_handler": 1})
    nb2 = NmiBuilder(rng, A, 0, nb.cursor + 200, nb.pid, nb.comm, nb.flags)
    for h in AMD_HANDLERS:
        nb2.handler(h, 0, dur(rng, h))
    nb.check_free(); nb2.check_free()
    # plus two ordinary PMIs (one per CPU) so the stream is not all latch
    n3 = plain_nmi(rng, A, 0, 608705300, {"perf_event_nmi_handler": 1}).check_free()
    n4 = plain_nmi(rng, A, 1, 608705600, {"perf_event_nmi_handler": 1}, flags="d.Z1.").check_free()
    return nb.events + nb2.events + n3.events + n4.events


def sc_unknown(rng, A):
    # CPU 1 idle (sort switched to swapper/1 at 608.705240): two ordinary
    # PMIs, then an NMI nobody claims, not back-to-back with anything -> the
    # kernel prints Uhhuh (printk:console, in NMI context, after the handlers).
    evs = plain_nmi(rng, A, 0, 608705050, {"perf_event_nmi_handler": 1}).check_free().events
    for want in (608705400, 608705450):
        evs += plain_nmi(rng, A, 1, want, {"perf_event_nmi_handler": 1}, flags="d.Z1.").check_free().events
    nb = plain_nmi(rng, A, 1, 608705500, {}, flags="d.Z1.")
    p, c, f = nb.pid, nb.comm, nb.flags
    nb.after([lambda ts: console(ts, 1, p, c, f, "Uhhuh. NMI received for unknown reason 3d on CPU 1."),
              lambda ts: console(ts, 1, p, c, f, "Dazed and confused, but trying to continue")])
    nb.check_free()
    return evs + nb.events


def sc_lost(rng, A):
    # CPU 0 (uniq-12910): one NMI services three sources (a PMU counter
    # overflow, an all-CPU backtrace IPI, an IBS sample: each handler
    # handled 1), the one latched edge comes back-to-back and is swallowed.
    # 3 sources, 2 NMIs delivered: 1 lost.  (Sources, not `handled`: one PMI
    # that services two counters reports handled 2 for one edge.)
    nb = plain_nmi(rng, A, 0, 608705150, {"perf_event_nmi_handler": 1, "nmi_cpu_backtrace_handler": 1,
                                          "perf_ibs_nmi_handler": 1})
    nb2 = NmiBuilder(rng, A, 0, nb.cursor + 250, nb.pid, nb.comm, nb.flags)
    for h in AMD_HANDLERS:
        nb2.handler(h, 0, dur(rng, h))
    nb.check_free(); nb2.check_free()
    n3 = plain_nmi(rng, A, 1, 608705700, {"perf_event_nmi_handler": 1}, flags="d.Z1.").check_free()
    return nb.events + nb2.events + n3.events


PERIOD_US = 50


def sc_periodic(rng, B):
    # CPU 1: python3-13019 runs without a break from 608.956840 (switched in
    # from rcu_preempt) to the end of the window; fixed-period PMU sampling
    # (perf record -c: a constant cycle count at a constant clock = 50 us)
    # fires perf_event_nmi_handler every 50 us from 608.9574 on (the counter
    # is armed there).  One beat in the middle is missing.  The window is cut
    # less than one period after the last beat, so no beat is due after it.
    intel = ["perf_event_nmi_handler", "nmi_cpu_backtrace_handler"]
    last_ts = max(e.ts for e in B)
    cpu1 = sorted(e.ts for e in B if e.cpu == 1)
    n = (last_ts - 608957376) // PERIOD_US
    durs = [(dur(rng, intel[0]), dur(rng, intel[1]), rng.randrange(50, 400)) for _ in range(n)]

    def fits(phase):
        for k, (d0, d1, off) in enumerate(durs):
            b = phase + k * PERIOD_US
            need = (off + d0 + 650 + d1) // 1000 + 2
            if b + need > last_ts or any(b - 1 <= x <= b + need + 1 for x in cpu1):
                return False
        return True
    phase = next(p for p in range(608957376, 608957376 + PERIOD_US) if fits(p))
    beats = [phase + k * PERIOD_US for k in range(n)]
    missing = beats[n // 2]
    evs = []
    for b, (d0, d1, off) in zip(beats, durs):
        if b == missing:
            continue
        pid, comm, _ = current_on(B, 1, b)
        nb = NmiBuilder(rng, B, 1, b * 1000 + off, pid, comm, "d.Z..")
        nb.handler(intel[0], 1, d0).handler(intel[1], 0, d1)
        nb.check_free()
        evs += nb.events
    return evs, beats, missing


def sc_nested(rng, A):
    # CPU 0 (uniq-12910, user mode).  NMI A: perf handler touches a vmalloc'd
    # per-cpu buffer, takes a kernel-mode fault; the fault's IRET re-enables
    # NMIs (pre-3.3), the next PMI nests inside NMI A and completes first.
    t = 608705250
    s = t * 1000 + 417
    addr = CHUNK_BASE + 0x3a40
    pid, comm, _ = current_on(A, 0, t)
    flags = "d.Z.."
    f_us = (s + 2300) // 1000
    fault = page_fault_kernel(f_us, 0, pid, comm, flags, addr, "perf_callchain", 0x2)
    # nested NMI B: starts after the fault returned, one handler run
    b_start = f_us * 1000 + 1400
    b_end = -(-(b_start + 2231) // 1000)
    b_ev = nmi_handler(b_end, 0, pid, comm, flags, "perf_event_nmi_handler", b_end * 1000 - b_start, 1)
    a_end = b_end + 5
    a_ev = nmi_handler(a_end, 0, pid, comm, flags, "perf_event_nmi_handler", a_end * 1000 - s, 1)
    for e in A:
        assert not (e.cpu == 0 and s // 1000 <= e.ts <= a_end), e.bg_raw
    return [fault, b_ev, a_ev], (s, a_end, b_start, b_end)


def sc_slow(rng, B):
    # CPU 0 idle (<idle>-0, preempt depth 1 in the idle loop) for ms in window
    # B.  An all-CPU backtrace NMI: nmi_cpu_backtrace_handler prints the
    # backtrace to a slow console from NMI and runs 1.84 ms; nmi_check_duration()
    # then prints the INFO line.
    intel = ["perf_event_nmi_handler", "nmi_cpu_backtrace_handler"]
    t = free_slot(B, 0, 608957020, 1900)
    pid, comm, _ = current_on(B, 0, t)
    flags = "d.Z1."
    nb = NmiBuilder(rng, B, 0, t * 1000 + 311, pid, comm, flags)
    nb.handler("perf_event_nmi_handler", 0, dur(rng, "perf_event_nmi_handler"))
    bt_dur = 1843211
    nb.handler("nmi_cpu_backtrace_handler", 1, bt_dur, inner=[
        (900, lambda ts: console(ts, 0, pid, comm, flags, "NMI backtrace for cpu 0")),
        (2100, lambda ts: console(ts, 0, pid, comm, flags,
                                  "CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted 6.18.0 #1 PREEMPT(voluntary)")),
    ])
    bt = nb.handlers[-1]
    ms, rem = divmod(bt[3], 1000000)
    p, c = pid, comm
    msg = "INFO: NMI handler (nmi_cpu_backtrace_handler) took too long to run: %d.%03d msecs" % (ms, rem // 1000)
    # printed by nmi_check_duration() right after the handler's tracepoint
    nb.events.append(console(bt[2], 0, p, c, flags, msg))
    nb.check_free()
    return nb.events, bt


# --------------------------------------------------------------------------
# output

def write_scenario(outdir, name, bg, inj, expected, extra_expected=None, period_us=None):
    evs = merge(bg, inj)
    check_expected(evs, expected, period_us)
    fix_perf_comms(evs)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    with gzip.open(os.path.join(BG, "trace-header.txt.gz"), "rt") as f:
        hdr = f.read().splitlines()
    hdr = [re.sub(r"entries-written: \d+/\d+   #P:2", "entries-written: %d/%d   #P:2"
                  % (len(evs), len(evs)), h) for h in hdr]
    raw_lines, rep_lines = list(hdr), ["cpus=2"]
    width = max(len(SYSTEM[e.name] + ":" + e.name) for e in evs)
    perf_lines = []
    for e in evs:
        r, p = render_raw(e), render_rep(e)
        if e.bg_raw is not None:
            assert r == e.bg_raw and p == e.bg_rep
        raw_lines.append(r)
        rep_lines.append(p)
        perf_lines.append(render_perf(e, width))
    for fn, lines in (("trace.txt", raw_lines), ("report.txt", rep_lines), ("perf.txt", perf_lines)):
        with open(os.path.join(d, fn), "w", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
    dump_json(os.path.join(d, "expected.json"), expected)
    for fn, doc in (extra_expected or {}).items():
        dump_json(os.path.join(d, fn), doc)
    return evs


B2B_NS = 2000
LATCH_KINDS = {"swallowed_nmi", "unknown_nmi", "lost_nmi", "nested_nmi", "slow_nmi_handler"}


def nmi_instances(evs):
    """SPEC 3.6 instances per CPU from the nmi_handler events, using only
    what a reader of the text sees (printed us timestamps, delta_ns)."""
    per_cpu = {}
    for e in evs:
        if e.name != "nmi_handler":
            continue
        m = re.match(r"(\w+)\(\) delta_ns: (\d+) handled: (\d+)$", e.raw)
        h, d, hd = m.group(1), int(m.group(2)), int(m.group(3))
        end = e.ts * 1000
        per_cpu.setdefault(e.cpu, []).append((end - d, end, h, hd))
    out = {}
    for cpu, hs in per_cpu.items():
        insts = []
        for start, end, h, hd in hs:
            cur = insts[-1] if insts else None
            if cur and h not in cur["handlers"] and 0 <= start - cur["end"] < B2B_NS:
                cur["handlers"].append(h); cur["end"] = end; cur["handled"] += hd
                cur["sources"] += hd > 0
                cur["max"] = max(cur["max"], end - start)
            else:
                insts.append({"start": start, "end": end, "handlers": [h],
                              "handled": hd, "sources": int(hd > 0), "max": end - start})
        out[cpu] = insts
    return out


def reference_findings(evs, period_us=None):
    """An independent mini-replay of the latch rules, used to cross-check
    the hand-written expected.json (latch kinds only)."""
    found = []
    for cpu, insts in sorted(nmi_instances(evs).items()):
        insts.sort(key=lambda i: i["start"])
        swallow = False
        prev = None
        for k, i in enumerate(insts):
            if prev and i["start"] < prev["end"]:
                found.append(("nested_nmi", "observed", cpu))
            b2b = prev is not None and 0 <= i["start"] - prev["end"] < B2B_NS
            if i["max"] > 1000000:
                found.append(("slow_nmi_handler", "observed", cpu))
            if i["handled"] == 0:
                if b2b and swallow:
                    found.append(("swallowed_nmi", "observed", cpu))
                else:
                    found.append(("unknown_nmi", "observed", cpu))
            else:
                if not b2b:
                    swallow = False
                if i["handled"] > 1:
                    swallow = True
                    nxt = insts[k + 1] if k + 1 < len(insts) else None
                    delivered = 1 + (1 if nxt and 0 <= nxt["start"] - i["end"] < B2B_NS
                                     and nxt["handled"] == 0 else 0)
                    # one edge per source that claimed work, not per `handled`
                    for _ in range(i["sources"] - delivered):
                        found.append(("lost_nmi", "observed", cpu))
            prev = i if not prev or i["end"] > prev["end"] else prev
        if period_us:
            starts = [i["start"] for i in insts if i["handled"] > 0]
            for a, b in zip(starts, starts[1:]):
                missed = round((b - a) / (period_us * 1000)) - 1
                for _ in range(missed):
                    found.append(("lost_nmi", "inferred", cpu))
    return sorted(found)


def check_expected(evs, expected, period_us=None):
    want = []
    for f in expected["findings"]:
        if f["kind"] in LATCH_KINDS:
            want += [(f["kind"], f["confidence"], f["cpu"])] * f["count"]
    got = reference_findings(evs, period_us)
    assert sorted(want) == got, (expected["description"][:40], sorted(want), got)


def dump_json(path, doc):
    with open(path, "w", newline="\n") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def F(kind, severity, confidence, cpu, count, why):
    return {"kind": kind, "severity": severity, "confidence": confidence,
            "cpu": cpu, "count": count, "why": why}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE, help="output root (default: this directory)")
    args = ap.parse_args()
    rng = random.Random(SEED)
    A = load_window("A")
    B = load_window("B")

    k2635 = ["--kernel", "2.6.35", "--arch", "x86_64"]
    k618 = ["--kernel", "6.18", "--arch", "x86_64"]

    # 1 ------------------------------------------------------------------
    inj = sc_perf_vmalloc(rng, A)
    exp = {
        "description": "Seeds 000/001 on x86_64 2.6.35: a per-cpu chunk is created in vmalloc "
                       "space (alloc_vmap_area at the top of the vmalloc range, PGD entry %d, "
                       "percpu_create_chunk) while cat-12908's mm already exists; uniq-12910 "
                       "switches to cat on CPU 0, and a PMU NMI lands after the reason-0 "
                       "tlb_flush (cr3 = cat's mm, current = uniq) and takes a kernel-mode "
                       "fault on the new per-cpu buffer." % pgd_index(CHUNK_BASE),
        "args": k2635,
        "findings": [
            F("nmi_vmalloc_fault", "error", "observed", 0, 1,
              "page_fault_kernel address=0x%x (vmalloc range, PGD entry %d opened by the "
              "alloc_vmap_area at 608.705331) error_code=0x2 (kernel-mode write, not present) "
              "inside the perf_event_nmi_handler instance [608.705846183, 608.705853] (flags "
              "d.Z2.): a lazy vmalloc sync in NMI, observed. cat's mm predates the chunk so "
              "it lacks the entry. On x86_64 < 3.3 the fault's IRET re-enables NMIs inside the "
              "NMI, so a nested NMI can corrupt the NMI stack: error." % (PERF_BUF, pgd_index(CHUNK_BASE))),
            F("cr3_current_mismatch", "error", "observed", 0, 1,
              "the NMI's events are stamped uniq-12910 (prev) after uniq's tlb_flush reason 0 "
              "at 608.705845 and before cat-12908's first event at 608.705940: cr3 holds cat's "
              "mm, current is still uniq. 2.6.35's vmalloc_fault() syncs "
              "current->active_mm (uniq's pgd), not the pgd in cr3, so the fault taken in "
              "this NMI fills the wrong page directory: error (a plain NMI in the window "
              "without a fault would be a warning)."),
        ],
    }
    exp58 = {
        "description": "What-if: the same trace files replayed under a 5.8 x86_64 model "
                       "(vmalloc PGD entries preallocated, no lazy vmalloc faults).",
        "args": ["--kernel", "5.8", "--arch", "x86_64"],
        "findings": [
            F("nmi_vmalloc_fault", "error", "observed", 0, 1,
              "same fault as under 2.6.35, but from 5.8 every vmalloc top-level entry is "
              "preallocated in every page directory, so a vmalloc fault seen in NMI is a "
              "bug (SPEC 3.4): error."),
            F("cr3_current_mismatch", "warning", "observed", 0, 1,
              "same NMI stamped with prev's pid after the reason-0 flush: observed. 5.8 has "
              "no vmalloc_fault() that resolves through current, so the mismatch does not "
              "make the fault worse; it stays the plain NMI-in-switch-window hazard "
              "(current->mm is not the loaded mm): warning."),
        ],
    }
    write_scenario(args.out, "perf-vmalloc-fault-in-switch-window", A, inj, exp,
                   {"expected-5.8.json": exp58})

    # 2 ------------------------------------------------------------------
    inj = sc_two_sources(rng, A)
    exp = {
        "description": "Seed 004, AMD x86_64 6.18 (handlers PMI, arch_bt, IBS in registration "
                       "order): on CPU 0 (uniq-12910 in user space) one NMI where perf_event_nmi_handler and "
                       "perf_ibs_nmi_handler each report handled: 1, then a back-to-back NMI "
                       "in which every handler reports handled: 0; plus two ordinary PMIs.",
        "args": k618,
        "findings": [
            F("swallowed_nmi", "info", "observed", 0, 1,
              "the first CPU-0 latch NMI has handled = 1 + 0 + 1 = 2 > 1, so default_do_nmi "
              "sets swallow_nmi; the next instance starts < 2000 ns after it ended (b2b) and "
              "is empty: swallowed, as designed. Sources serviced 2 = NMIs delivered 2 "
              "(instance + b2b follower): no lost NMI. The ordinary PMIs are non-b2b with "
              "handled 1: nothing."),
        ],
    }
    write_scenario(args.out, "nmi-two-sources-then-swallowed", A, inj, exp)

    # 3 ------------------------------------------------------------------
    inj = sc_unknown(rng, A)
    exp = {
        "description": "Seed 004, AMD x86_64 6.18: CPU 1 idle; two ordinary PMIs there (and one on CPU 0), then an NMI that "
                       "no handler claims, not back-to-back with anything; the kernel prints "
                       "'Uhhuh. NMI received for unknown reason 3d on CPU 1.' (printk:console, "
                       "emitted inside the NMI).",
        "args": k618,
        "findings": [
            F("unknown_nmi", "warning", "observed", 1, 1,
              "all three handlers report handled: 0, the previous NMI on CPU 1 ended tens "
              "of us earlier (not b2b) and swallow_nmi is clear (previous NMIs handled 1), "
              "reason 0x3d has neither SERR (0x80) nor IOCHK (0x40): unknown_nmi_error(); "
              "the console line confirms it. The kernel continues ('Dazed and confused') "
              "unless unknown_nmi_panic: warning."),
        ],
    }
    write_scenario(args.out, "unknown-nmi", A, inj, exp)

    # 4 ------------------------------------------------------------------
    inj = sc_lost(rng, A)
    exp = {
        "description": "Seed 004, AMD x86_64 6.18: on CPU 0 one NMI services three sources (a "
                       "PMU counter overflow, an all-CPU backtrace IPI and an IBS sample: "
                       "perf_event_nmi_handler, nmi_cpu_backtrace_handler and "
                       "perf_ibs_nmi_handler each handled: 1), the single latched edge arrives "
                       "back-to-back and is swallowed; an ordinary PMI on CPU 1.",
        "args": k618,
        "findings": [
            F("swallowed_nmi", "info", "observed", 0, 1,
              "handled 3 > 1 sets swallow_nmi; the follower starts < 2000 ns after the "
              "instance ended and is empty: swallowed."),
            F("lost_nmi", "info", "observed", 0, 1,
              "3 sources serviced (3 handlers claimed work: one edge each; handled is not "
              "an edge count, one PMI services every overflowed counter), 2 NMIs delivered "
              "(the instance and its b2b follower): one edge collapsed in the latch "
              "(SPEC 3.6). Every source was serviced by polling, so nothing was left "
              "undone: info (a measure of NMI pressure)."),
        ],
    }
    write_scenario(args.out, "lost-nmis", A, inj, exp)

    # 5 ------------------------------------------------------------------
    B5 = [e for e in B if e.ts <= 608958510]
    inj, beats, missing = sc_periodic(rng, B5)
    exp = {
        "description": "A periodic NMI source (fixed-period PMU sampling, perf record -c, standing in "
                       "for the hard-lockup watchdog's fixed-period counter) on Intel x86_64 6.18 "
                       "(handlers PMI, arch_bt): "
                       "while python3-13019 runs on CPU 1 without a break, "
                       "perf_event_nmi_handler fires every %d us (%d beats expected from "
                       "%s), and the beat due at %s is missing." % (
                           PERIOD_US, len(beats), ts_str(beats[0]).strip(), ts_str(missing).strip()),
        "args": k618,
        "findings": [
            F("lost_nmi", "warning", "inferred", 1, 1,
              "%d perf_event_nmi_handler instances, handled 1 each, starts %d us apart "
              "(start jitter < 0.4 us); one interval is ~%d us while CPU 1 stays busy in "
              "python3 (switched back in at 608.956840, it never leaves CPU 1 afterwards; "
              "its own events surround the gap): one beat "
              "missing, inferred. No instance has handled > 1 and none is b2b, so the "
              "source's work was not done by polling either: warning." % (
                  len(beats) - 1, PERIOD_US, 2 * PERIOD_US)),
        ],
    }
    write_scenario(args.out, "periodic-watchdog-missing-beats", B5, inj, exp, period_us=PERIOD_US)

    # 6 ------------------------------------------------------------------
    inj, (a_s, a_e, b_s, b_e) = sc_nested(rng, A)
    exp = {
        "description": "x86_64 3.2 (before the 3.3 nested-NMI rework): on CPU 0 "
                       "perf_event_nmi_handler takes a kernel-mode vmalloc fault inside NMI A; "
                       "the fault's IRET re-enables NMIs and the next PMI (NMI B) runs inside "
                       "NMI A. B's nmi_handler event is printed first (it returns first).",
        "args": ["--kernel", "3.2", "--arch", "x86_64"],
        "findings": [
            F("nmi_vmalloc_fault", "error", "observed", 0, 1,
              "page_fault_kernel address=0x%x (vmalloc) error_code=0x2 inside NMI A "
              "[%d ns, %s]: kernel-mode fault in NMI on x86_64 < 3.3, whose IRET unmasks "
              "NMIs: error." % (CHUNK_BASE + 0x3a40, a_s, ts_str(a_e).strip())),
            F("nested_nmi", "error", "observed", 0, 1,
              "NMI B's interval [%d ns, %s] lies inside NMI A's [%d ns, %s] on the same "
              "CPU (a handler seen again starts a new instance, and the two overlap): a "
              "nested NMI. Before 3.3 it reuses the IST NMI stack and corrupts NMI A's "
              "frame: error." % (b_s, ts_str(b_e).strip(), a_s, ts_str(a_e).strip())),
        ],
    }
    write_scenario(args.out, "nested-nmi-pre-3.3", A, inj, exp)

    # 8 (optional in the issue) ------------------------------------------
    inj, bt = sc_slow(rng, B)
    exp = {
        "description": "Intel x86_64 6.18: an all-CPU backtrace NMI on idle CPU 0; "
                       "nmi_cpu_backtrace_handler prints through a slow console and runs "
                       "%d ns; the kernel prints 'INFO: NMI handler (nmi_cpu_backtrace_handler) "
                       "took too long to run'." % bt[3],
        "args": k618,
        "findings": [
            F("slow_nmi_handler", "warning", "observed", 0, 1,
              "nmi_cpu_backtrace_handler delta_ns: %d > 1 ms (nmi_longest_ns default), "
              "confirmed by the INFO console line; CPU 0 was unavailable that long: warning. "
              "handled = 0 + 1 = 1: no swallow, not unknown." % bt[3]),
        ],
    }
    write_scenario(args.out, "slow-nmi-handler", B, inj, exp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
