#!/usr/bin/env bash
# Whole-process benchmark: nmitrace against `wc -l` (text) and `trace-cmd report`
# (trace.dat) on the same files, in the same run, with wall-time ratios and
# peak RSS. Needs hyperfine and trace-cmd (installed by scripts/setup.sh).
#
# usage: scripts/bench.sh [SHARED_TRACES_DIR]   (default: ../shared/traces)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/traces}
work=${BENCH_DIR:-/tmp/nmitrace-bench}
mkdir -p "$work"
cargo build --release -q -p nmitrace
bin=$PWD/target/release/nmitrace

big_zst=$shared/real/gcc-large/trace.txt.zst
big_txt=$work/gcc-large.trace.txt
big_dat=$shared/real/gcc-large/trace.dat
if [ ! -s "$big_txt" ]; then
  echo "decompressing $big_zst -> $big_txt"
  zstd -q -d -f "$big_zst" -o "$big_txt"
fi
cat "$big_txt" > /dev/null   # warm the page cache

rss() {  # peak RSS in MiB of one run
  /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1/1024}'
}

echo "== text: $big_txt ($(du -h "$big_txt" | cut -f1))"
hyperfine -N --warmup 1 --runs 7 --export-json "$work/text.json" \
  "wc -l $big_txt" \
  "$bin analyze --format json $big_txt" \
  "$bin analyze --format json --threads 1 $big_txt"
python3 - "$work/text.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
for x in r:
    print(f"  {x['command'][:70]:70s} median {x['median']:.3f}s  ratio to wc -l {x['median']/base:.2f}x")
PY
echo "  peak RSS analyze (text): $(rss "$bin" analyze --format json "$big_txt") MiB"

if [ -s "$big_dat" ]; then
  echo "== trace.dat: $big_dat"
  hyperfine --warmup 1 --runs 3 --export-json "$work/dat.json" \
    "trace-cmd report -i $big_dat > /dev/null" \
    "$bin analyze --format json $big_dat > /dev/null"
  python3 - "$work/dat.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(f"  trace-cmd report median {r[0]['median']:.3f}s, nmitrace analyze median {r[1]['median']:.3f}s, speed-up {r[0]['median']/r[1]['median']:.1f}x")
PY
  echo "  peak RSS analyze (trace.dat): $(rss "$bin" analyze --format json "$big_dat") MiB"
fi
