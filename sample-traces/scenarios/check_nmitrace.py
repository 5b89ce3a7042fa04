#!/usr/bin/env python3
"""Run an nmitrace binary over every scenario and compare its findings with
the expected*.json files (multiset of kind, severity, confidence, cpu).

    python3 sample-traces/scenarios/check_nmitrace.py target/release/nmitrace

Exit status 1 when any scenario/format differs.  Python 3.11 stdlib only;
builds nothing.
"""

import collections
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    binary = sys.argv[1]
    bad = 0
    for exp in sorted(glob.glob(os.path.join(HERE, "*", "expected*.json"))):
        d = os.path.dirname(exp)
        with open(exp) as f:
            doc = json.load(f)
        want = collections.Counter()
        for x in doc["findings"]:
            want[(x["kind"], x["severity"], x["confidence"], x["cpu"])] += x["count"]
        for fn in ("trace.txt", "report.txt", "perf.txt"):
            p = subprocess.run([binary, "analyze", os.path.join(d, fn), "--format", "json"]
                               + doc["args"], capture_output=True, text=True)
            label = "%s/%s [%s]" % (os.path.basename(d), fn, os.path.basename(exp))
            try:
                out = json.loads(p.stdout)
            except ValueError:
                print("FAIL %s: no JSON (exit %d): %s" % (label, p.returncode, p.stderr.strip()[:300]))
                bad += 1
                continue
            got = collections.Counter((x["kind"], x["severity"], x["confidence"], x.get("cpu"))
                                      for x in out["findings"])
            if got == want:
                print("ok   %s" % label)
            else:
                bad += 1
                print("FAIL %s\n     missing:    %s\n     unexpected: %s"
                      % (label, dict(want - got), dict(got - want)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
