#!/usr/bin/env python3
"""Tests for the scenario traces (stdlib unittest, no cargo needed).

    python3 -m unittest sample-traces/scenarios/test_generate.py -v

1. generate.py regenerates byte-identical files (into a temp dir).
2. The three formats of every scenario hold the same events: same count per
   event name, same (cpu, timestamp, name) sequence -- parsed here with
   regexes written independently of the generator's renderers.
3. expected*.json files are well formed.
"""

import collections
import filecmp
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ("trace.txt", "report.txt", "perf.txt")
KINDS = {"nmi_vmalloc_fault", "nmi_page_fault", "vmalloc_exposure", "cr3_current_mismatch",
         "unknown_nmi", "swallowed_nmi", "lost_nmi", "nested_nmi", "slow_nmi_handler",
         "trace_data_loss"}

# tracefs: "  comm-pid  [cpu] flags  sec.usec: name: payload"
RAW = re.compile(r"^ *.+-\d+ +\[(\d{3})\] [.dDbX][.nNpLlBb][.zZHhs][.0-9a-f][.0-9a-f] +"
                 r"(\d+\.\d{6}): ([a-z_0-9]+): ")
# trace-cmd report: "  comm-pid [cpu]   sec.usec: name:<pad> payload"
REP = re.compile(r"^ *.+-\d+ +\[(\d{3})\] +(\d+\.\d{6}): ([a-z_0-9]+): +")
# perf script: "  comm  pid [cpu]   sec.usec:  system:name: payload"
PERF = re.compile(r"^ *.+ +\d+ \[(\d{3})\] +(\d+\.\d{6}): +([a-z_0-9]+):([a-z_0-9]+): ")


def scenarios(root=HERE):
    return sorted(d for d in os.listdir(root)
                  if os.path.isfile(os.path.join(root, d, "expected.json")))


def parse(path, rx, fmt):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if fmt == "trace" and line.startswith("#"):
                continue
            if fmt == "report" and n == 1:
                assert line == "cpus=2", line
                continue
            m = rx.match(line)
            assert m, "%s:%d unparsed: %r" % (path, n, line)
            name = m.group(4) if fmt == "perf" else m.group(3)
            out.append((int(m.group(1)), m.group(2), name))
    return out


class ScenarioTest(unittest.TestCase):
    def test_regenerate_byte_identical(self):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, os.path.join(HERE, "generate.py"), "--out", tmp],
                           check=True)
            names = scenarios(tmp)
            self.assertEqual(names, scenarios())
            for d in names:
                produced = sorted(os.listdir(os.path.join(tmp, d)))
                self.assertEqual(produced, sorted(os.listdir(os.path.join(HERE, d))), d)
                for fn in produced:
                    self.assertTrue(filecmp.cmp(os.path.join(tmp, d, fn),
                                                os.path.join(HERE, d, fn), shallow=False),
                                    "%s/%s differs from a fresh generate.py run" % (d, fn))

    def test_three_formats_same_events(self):
        self.assertGreaterEqual(len(scenarios()), 7)
        for d in scenarios():
            evs = {fmt: parse(os.path.join(HERE, d, fn), rx, fmt) for fmt, fn, rx in
                   (("trace", "trace.txt", RAW), ("report", "report.txt", REP),
                    ("perf", "perf.txt", PERF))}
            counts = {k: collections.Counter(n for _, _, n in v) for k, v in evs.items()}
            self.assertEqual(counts["trace"], counts["report"], d)
            self.assertEqual(counts["trace"], counts["perf"], d)
            self.assertEqual(evs["trace"], evs["report"], d)
            self.assertEqual(evs["trace"], evs["perf"], d)
            self.assertGreater(counts["trace"]["nmi_handler"], 0, d)
            # raw header count matches
            with open(os.path.join(HERE, d, "trace.txt")) as f:
                hdr = f.read(400)
            n = len(evs["trace"])
            self.assertIn("entries-in-buffer/entries-written: %d/%d" % (n, n), hdr, d)

    def test_nmi_events_carry_nmi_flag_in_raw(self):
        for d in scenarios():
            with open(os.path.join(HERE, d, "trace.txt")) as f:
                for line in f:
                    if ": nmi_handler: " in line:
                        self.assertRegex(line, r"\] [dD]\.Z", d)

    def test_expected_files(self):
        for d in scenarios():
            for fn in os.listdir(os.path.join(HERE, d)):
                if not (fn.startswith("expected") and fn.endswith(".json")):
                    continue
                with open(os.path.join(HERE, d, fn)) as f:
                    doc = json.load(f)
                self.assertIn("--kernel", doc["args"], (d, fn))
                self.assertTrue(doc["description"])
                self.assertTrue(doc["findings"], (d, fn))
                for x in doc["findings"]:
                    self.assertIn(x["kind"], KINDS)
                    self.assertIn(x["severity"], ("info", "warning", "error"))
                    self.assertIn(x["confidence"], ("observed", "inferred"))
                    self.assertIsInstance(x["cpu"], int)
                    self.assertGreaterEqual(x["count"], 1)
                    self.assertTrue(x["why"])


if __name__ == "__main__":
    unittest.main()
