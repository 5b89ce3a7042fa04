#!/usr/bin/env bash
# The whole test suite: Rust tests of every crate, and the scenario
# generator's own tests. scripts/setup.sh first installs what the tests use
# (Debian packages trace-cmd, hyperfine, zstd, chromium). Tests that need
# ../shared/traces, chromium or root run when those are present and are
# reported as ignored otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The release profile, as the README's "Try it" command builds it: the
# dependencies (polars above all) are compiled once, not again in a second
# profile.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --exclude nmitrace-python --release --no-fail-fast
  cargo test --workspace --exclude nmitrace-python --release --doc
else
  cargo test --workspace --exclude nmitrace-python --release --no-fail-fast
fi
# The Python package (built by maturin, not cargo test) and its fleet driver.
scripts/python-tests.sh
python3 -m unittest discover -s sample-traces/scenarios -p 'test_*.py' -v
