#!/usr/bin/env bash
# Whole-process benchmark on ../shared/traces/real/gcc-large (4,112,662
# events), nmitrace against its references on the same files in the same
# run: `wc -l` (text), `trace-cmd report` (trace.dat analyze) and
# `trace-cmd report -R -t` (events --format jsonl). Prints each median, the
# ratio of medians with its spread (the ratio's range over the fastest and
# slowest runs of both), and peak RSS for every input form. Needs hyperfine,
# trace-cmd and zstd (scripts/setup.sh installs them). The perf script form is
# made from the raw text by sed (about a minute, once).
#
# usage: scripts/bench.sh [SHARED_TRACES_DIR]   (default: ../shared/traces)
#        RUNS=N (default 5) BENCH_DIR=DIR (default /tmp/nmitrace-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/traces}
work=${BENCH_DIR:-/tmp/nmitrace-bench}
runs=${RUNS:-5}
mkdir -p "$work"
cargo build --release -q -p nmitrace
bin=$PWD/target/release/nmitrace

large=$shared/real/gcc-large
dat=$large/trace.dat
txt=$work/gcc-large.trace.txt
report=$work/gcc-large.report.txt
perf=$work/gcc-large.perf-script.txt
v7none=$work/gcc-large.v7-none.dat
v6=$work/gcc-large.v6.dat
[ -s "$txt" ] || zstd -q -d -f "$large/trace.txt.zst" -o "$txt"
[ -s "$report" ] || trace-cmd report -i "$dat" > "$report" 2>/dev/null
# perf script text of the same events: each raw line rewritten to perf's
# `comm pid [cpu] ts: system:event: payload` (system `ev`; perf prints no flags)
[ -s "$perf" ] || sed -E 's/^( *.*)-([0-9]+) +\[([0-9]+)\] [^ ]+ +([0-9]+\.[0-9]+): ([a-z_0-9]+): /\1 \2 [\3] \4: ev:\5: /' "$txt" | grep -v '^#' > "$perf"
[ -s "$v7none" ] || "$bin" convert "$dat" --compression none -o "$v7none" 2>/dev/null
[ -s "$v6" ] || "$bin" convert "$dat" --file-version 6 -o "$v6" 2>/dev/null
cat "$txt" "$report" "$perf" "$v7none" "$v6" "$dat" > /dev/null   # warm the page cache

# bench NAME COMMAND... : hyperfine over the commands (the first is the reference)
bench() {
  local name=$1; shift
  hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/$name.json" "$@" > /dev/null
  python3 - "$work/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
def short(c):  # paths by their last two parts
    return " ".join("/".join(w.split("/")[-2:]) if "/" in w else w for w in c.split())
for x in r:
    x["command"] = short(x["command"])
ref = r[0]
print(f"  {ref['command'][:78]:78s} median {ref['median']:.3f} s  [{ref['min']:.3f}-{ref['max']:.3f}]")
for x in r[1:]:
    m = ref["median"] / x["median"]
    lo, hi = ref["min"] / x["max"], ref["max"] / x["min"]
    rel = "faster" if m >= 1 else "slower"
    m, lo, hi = (m, lo, hi) if m >= 1 else (1 / m, 1 / hi, 1 / lo)
    print(f"  {x['command'][:78]:78s} median {x['median']:.3f} s  [{x['min']:.3f}-{x['max']:.3f}]  {m:.1f}x {rel} [{lo:.1f}-{hi:.1f}]")
PY
}

rss() {  # peak RSS in MiB of one run
  /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1/1024}'
}

echo "== text, per byte: raw tracefs $(du -h "$txt" | cut -f1), trace-cmd report $(du -h "$report" | cut -f1), perf script $(du -h "$perf" | cut -f1)"
bench text "wc -l $txt" "$bin analyze --format json $txt" "$bin analyze --format json --threads 1 $txt"
bench report "wc -l $report" "$bin analyze --format json $report"
bench perf "wc -l $perf" "$bin analyze --format json $perf"
# analyze's median per MiB of each text form (the second command of each run above)
python3 - "$work" "$(stat -c %s "$txt")" "$(stat -c %s "$report")" "$(stat -c %s "$perf")" <<'PY'
import json, sys
work, sizes = sys.argv[1], [int(x) / 2**20 for x in sys.argv[2:]]
per = []
for name, mib in zip(["text", "report", "perf"], sizes):
    m = json.load(open(f"{work}/{name}.json"))["results"][1]["median"]
    per.append(m * 1000 / mib)
    print(f"  per byte, {name:6s} analyze {per[-1]:.3f} ms/MiB ({per[-1] / per[0]:.2f}x raw text's)")
PY
echo "== trace.dat against trace-cmd report: v7 zstd $(du -h "$dat" | cut -f1), v7 uncompressed and v6 $(du -h "$v6" | cut -f1)"
bench dat "trace-cmd report -i $dat" "$bin analyze --format json $dat" "$bin analyze --format json $v7none" "$bin analyze --format json $v6"
echo "== events --format jsonl against trace-cmd report -R -t"
bench jsonl "trace-cmd report -R -t -i $dat" "$bin events --format jsonl $dat"
echo "== peak RSS (MiB)"
for f in "$dat" "$v7none" "$v6" "$txt" "$report" "$perf"; do
  printf '  %-60s analyze %6s  events jsonl %6s\n' "$(basename "$f")" "$(rss "$bin" analyze --format json "$f")" "$(rss "$bin" events --format jsonl "$f")"
done
echo "  binary: $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"
