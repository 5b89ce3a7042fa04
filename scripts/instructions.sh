#!/usr/bin/env bash
# Instruction counts of whole nmitrace runs: deterministic (callgrind's Ir,
# one parser thread), so each optimisation is measured, not felt, whatever
# the host's load. Prints a Markdown table row per run; the README's
# "Performance" table keeps them with the change they measured.
#
#   scripts/instructions.sh [BIN] [TRACE_DIR]
#
# BIN defaults to target/release/nmitrace, TRACE_DIR to
# ../shared/traces/real/gcc-medium (trace.dat, trace.txt.gz, report.txt.gz).
# Needs valgrind (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/nmitrace}
dir=${2:-../shared/traces/real/gcc-medium}
command -v valgrind >/dev/null || { echo "instructions: valgrind is not installed (scripts/setup.sh)" >&2; exit 2; }
[ -x "$bin" ] || { echo "instructions: $bin: build it first (cargo build --release -p nmitrace)" >&2; exit 2; }
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| run | input | instructions (Ir) |"
echo "|---|---|---|"
for f in trace.dat trace.txt.gz report.txt.gz perf-script.txt.gz; do
  [ -f "$dir/$f" ] || continue
  a=$(ir "$bin" analyze "$dir/$f" --format json --threads 1)
  e=$(ir "$bin" events "$dir/$f" --format jsonl --threads 1)
  printf '| analyze --format json | %s | %s |\n' "$f" "$a"
  printf '| events --format jsonl | %s | %s |\n' "$f" "$e"
done
