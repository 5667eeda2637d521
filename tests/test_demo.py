"""The README's demo runs, in under 15 seconds, and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

DEMO = Path(__file__).parent.parent / "examples" / "demo.py"


@pytest.mark.slow  # a whole run of the README's demo: seconds, in the slow checks
def test_the_demo_cancels_one_job_and_finishes_the_other() -> None:
    """Part 1: one job is stopped with REQUESTED, the other finishes with its last progress
    reported. Part 2: the TaskRunner's tasks end FINISHED, FAILED and CANCELED."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-W", "error", str(DEMO)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert time.monotonic() - started < 15
    out = result.stdout
    assert "copy-users   stopped: REQUESTED" in out
    assert "copy-orders  finished" in out
    assert "copy-orders: 8 reports, fields {'rowsCopied': '8000'}" in out
    assert "nightly-copy: FINISHED, fields {'step': '4'}" in out
    assert "bad-input: FAILED, fields {}, error ValueError: row 17" in out
    assert "long-export: CANCELED" in out
    assert "runner       info: task runner" in out
    assert result.stderr == ""
