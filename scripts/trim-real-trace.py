#!/usr/bin/env python3
"""Trim a long real recording (tracefs text) to the events the replay uses.

A `scripts/qemu` recording holds millions of events (338 MB of text for the
5.4 i386 one); the page-directory replay needs the task, switch and cr3
events, the kernel-mode faults, the vmalloc and per-cpu events and the NMIs.
This keeps the file's header lines as recorded (`#` lines, before the first
event), then, from the first event to the last one at or before --until
seconds, every line whose event name is in --events (the default list below);
every kept line is byte-identical to the kernel's output, only lines are
dropped (the header's counts still describe the whole recording). The lines
that continue a kept multi-line message (a console show_mem report) stay.
`tlb_flush` is kept only for reason 0 (`flush on task switch`, the cr3 write
of switch_mm_irqs_off and leave_mm) unless --all-flushes.

usage: trim-real-trace.py IN.txt[.gz] OUT.txt.gz [--until SECONDS] [--events a,b,...] [--all-flushes]
"""
import argparse, gzip, re

EVENTS = (
    'sched_switch tlb_flush task_newtask sched_process_fork sched_process_exec '
    'sched_process_exit sched_process_free page_fault_kernel alloc_vmap_area '
    'alloc_vmap_area_ret pcpu_get_vm_areas_ret percpu_create_chunk percpu_destroy_chunk '
    'vmalloc_sync_mappings vmalloc_sync_unmappings nmi_handler console module_load module_free'
)
# COMM-PID [CPU] FLAGS TIMESTAMP: EVENT:
LINE = re.compile(rb'^.*?\[\d+\]\s+(?:\S+\s+)?(\d+\.\d+):\s+([A-Za-z0-9_]+):')


def opener(p, mode):
    return gzip.open(p, mode, compresslevel=9) if p.endswith('.gz') else open(p, mode)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('src')
    ap.add_argument('dst')
    ap.add_argument('--until', type=float, default=None, help='last timestamp kept, seconds')
    ap.add_argument('--events', default=','.join(EVENTS.split()))
    ap.add_argument('--all-flushes', action='store_true')
    a = ap.parse_args()
    keep = set(a.events.encode().split(b','))
    kept = dropped = 0
    body = last_kept = False
    with opener(a.src, 'rb') as f, gzip.open(a.dst, 'wb', compresslevel=9) as o:
        for ln in f:
            m = LINE.match(ln)
            if not body:
                if m is None:
                    o.write(ln)
                    continue
                body = True
            if m is None:
                # the rest of a multi-line message (console: a show_mem report)
                if last_kept:
                    o.write(ln)
                continue
            if a.until is not None and float(m.group(1)) > a.until:
                break
            name = m.group(2)
            if name in keep and (a.all_flushes or name != b'tlb_flush' or ln.rstrip().endswith(b'(0)')):
                o.write(ln)
                kept += 1
                last_kept = True
            else:
                dropped += 1
                last_kept = False
    print(f'{a.dst}: {kept} event lines kept, {dropped} dropped')


if __name__ == '__main__':
    main()
