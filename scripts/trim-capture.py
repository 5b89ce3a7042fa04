#!/usr/bin/env python3
"""Trim a real-NMI capture to the lines around its NMIs, keeping the header.

A flight-recorder capture (../shared/tools/capture-real-nmis.py) holds tens of
thousands of events; the NMI verdicts need only the switch around each NMI.
This keeps the file's header lines as recorded (tracefs `#` lines, trace-cmd
report's `cpus=` and `CPU:N [... EVENTS DROPPED]` lines) and the lines from
BEFORE lines before the first NMI backtrace line to AFTER lines after the last
one; every kept line is byte-identical to the kernel's output, only lines are
dropped. (The header's counts still describe the whole recording.)

usage: trim-capture.py IN.txt[.gz] OUT.txt.gz [--before 1200] [--after 150]
"""
import argparse, gzip, re

EVENT = re.compile(r'^\s*\S.*\[\d+\]\s')


def opener(p, mode):
    return gzip.open(p, mode, compresslevel=9) if p.endswith('.gz') else open(p, mode)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('src')
    ap.add_argument('dst')
    ap.add_argument('--before', type=int, default=1200)
    ap.add_argument('--after', type=int, default=150)
    a = ap.parse_args()
    with opener(a.src, 'rb') as f:
        lines = f.read().split(b'\n')
    if lines and lines[-1] == b'':
        lines.pop()
    header, body = [], []
    for ln in lines:
        t = ln.decode('utf-8', 'replace')
        if not body and (t.startswith('#') or t.startswith('cpus=') or t.startswith('version =') or not EVENT.match(t)):
            header.append(ln)
        else:
            body.append(ln)
    hits = [i for i, ln in enumerate(body) if b'NMI backtrace for cpu' in ln]
    if not hits:
        raise SystemExit(f'{a.src}: no NMI backtrace line')
    lo = max(0, hits[0] - a.before)
    hi = min(len(body), hits[-1] + a.after)
    with gzip.open(a.dst, 'wb', compresslevel=9) as o:
        for ln in header + body[lo:hi]:
            o.write(ln + b'\n')


if __name__ == '__main__':
    main()
