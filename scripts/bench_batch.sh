#!/usr/bin/env bash
# Batch throughput: `nmitrace batch` over the same N traces with 1 job and
# with 2 jobs (one parser thread per trace in both, so the only difference is
# how many traces run at once), with hyperfine. The traces: the sample traces
# and ../shared/traces without gcc-large (whose one 500 MB trace would
# dominate either run).
#
# usage: scripts/bench_batch.sh [SHARED_TRACES_DIR]   (default: ../shared/traces)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/traces}
work=${BENCH_DIR:-/tmp/nmitrace-bench-batch}
mkdir -p "$work"
cargo build --release -q -p nmitrace
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/nmitrace
inputs=(sample-traces)
if [ -d "$shared" ]; then
  inputs+=("$shared/public" "$shared/real/shell-python" "$shared/real/gcc-medium")
fi
"$bin" batch "${inputs[@]}" --out "$work/warm" --jobs 2 --threads 1 | head -1
n=$(python3 -c "import sys; print(sys.argv[1].split()[0])" "$("$bin" batch "${inputs[@]}" --out "$work/count" --jobs 2 --threads 1 | head -1)")
echo "== batch over $n traces (${inputs[*]})"
hyperfine -N --warmup 1 --runs 5 --export-json "$work/batch.json" \
  "$bin batch ${inputs[*]} --out $work/j1 --jobs 1 --threads 1" \
  "$bin batch ${inputs[*]} --out $work/j2 --jobs 2 --threads 1"
python3 - "$work/batch.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
n = int(sys.argv[2])
for x, label in zip(r, ["--jobs 1 --threads 1", "--jobs 2 --threads 1"]):
    print(f"  {label:22s} median {x['median']:.3f}s  {n / x['median']:.1f} traces/s")
print(f"  speed-up 2 jobs vs 1: {r[0]['median'] / r[1]['median']:.2f}x")
PY
