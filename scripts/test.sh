#!/usr/bin/env bash
# The whole test suite: Rust tests of every crate, and the scenario
# generator's own tests. Tests that need ../shared/traces or trace-cmd run
# when those are present and skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi
python3 -m unittest discover -s sample-traces/scenarios -p 'test_*.py' -v
