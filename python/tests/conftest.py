"""Shared fixtures: the CLI built by scripts/test.sh (target/release) and
the traces (sample-traces always; ../shared/traces when present)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample-traces"
SHARED = ROOT.parent / "shared" / "traces"


def nmitrace_bin() -> Path:
    b = Path(os.environ.get("NMITRACE_BIN", ROOT / "target" / "release" / "nmitrace"))
    if not b.exists():
        pytest.skip(f"{b} not built (cargo build --release -p nmitrace)")
    return b


def cli(*args, check=True):
    return subprocess.run([str(nmitrace_bin()), *map(str, args)], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def bin_path():
    return nmitrace_bin()


@pytest.fixture(scope="session")
def shared():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    return SHARED
