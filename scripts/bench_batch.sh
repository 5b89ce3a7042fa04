#!/usr/bin/env bash
# Batch throughput: `nmitrace batch` over the same N traces with 1 job and
# with 2 jobs (one parser thread per trace in both, so the only difference is
# how many traces run at once), with hyperfine.
#
# The fleet: 4 copies (symlinks) of each real trace of shell-python (5 files,
# 47k events each) and gcc-medium (3 files, 206k events each) from
# ../shared/traces = 32 traces, 3.4M events; without ../shared, the sample
# traces.
#
# usage: scripts/bench_batch.sh [SHARED_TRACES_DIR]   (default: ../shared/traces)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/traces}
work=${BENCH_DIR:-/tmp/nmitrace-bench-batch}
mkdir -p "$work"
cargo build --release -q -p nmitrace
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/nmitrace
fleet=$work/fleet
rm -rf "$fleet"
mkdir -p "$fleet"
if [ -d "$shared/real/gcc-medium" ]; then
  for i in 1 2 3 4; do
    for f in "$shared"/real/shell-python/* "$shared"/real/gcc-medium/*; do
      ln -s "$(realpath "$f")" "$fleet/$i-$(basename "$(dirname "$f")")-$(basename "$f")"
    done
  done
else
  cp -r sample-traces "$fleet/"
fi
out=$("$bin" batch "$fleet" --out "$work/warm" --jobs 2 --threads 1)
line=${out%%$'\n'*}
n=${line%% *}
echo "== batch over $n traces: $line"
hyperfine -N --warmup 1 --runs 5 --export-json "$work/batch.json" \
  "$bin batch $fleet --out $work/j1 --jobs 1 --threads 1" \
  "$bin batch $fleet --out $work/j2 --jobs 2 --threads 1"
python3 - "$work/batch.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
n = int(sys.argv[2])
for x, label in zip(r, ["--jobs 1 --threads 1", "--jobs 2 --threads 1"]):
    print(f"  {label:22s} median {x['median']:.3f}s  {n / x['median']:.1f} traces/s")
print(f"  speed-up 2 jobs vs 1: {r[0]['median'] / r[1]['median']:.2f}x")
PY
