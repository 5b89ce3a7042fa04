#!/usr/bin/env bash
# Install what the test suite and benchmarks need beyond the Rust toolchain:
# trace-cmd (the trace.dat oracle), hyperfine and valgrind (benchmarks) and chromium (headless
# rendering of the HTML reports). Idempotent;
# needs root (or sudo) for apt. Without apt the tests that need trace-cmd skip.
set -euo pipefail
need=()
command -v trace-cmd >/dev/null 2>&1 || need+=(trace-cmd)
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
# Instruction counts (scripts/instructions.sh).
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
# Headless check of the HTML reports (cli/tests/html_report.rs skips without it).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not available; missing: ${need[*]} (tests that need them will skip)" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
