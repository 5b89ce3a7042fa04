#!/usr/bin/env bash
# The Python package: build and install it from this checkout into a virtual
# environment (target/py-venv; pip fetches maturin and the test packages
# from the package index), then run its tests against the release CLI
# (target/release/nmitrace, which scripts/test.sh has built).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install --quiet "./python[test]"
[ -x target/release/nmitrace ] || cargo build --release -p nmitrace
"$venv/bin/python" -m pytest -q python/tests "$@"
