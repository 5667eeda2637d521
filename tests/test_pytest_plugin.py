"""The pytest plugin: cheap to load in every run, and clear when pytest-asyncio is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TEST_USING_THE_FIXTURE = """
def test_uses_the_fixture(local_datapipeline):
    pass
"""


def run_pytest(directory: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """pytest in a process of its own, on ``directory``'s test_job.py."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options, "test_job.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_loading_the_plugin_imports_nothing_of_the_library() -> None:
    """pytest loads the plugin in every run: it must import neither the HTTP stack nor the
    library's own modules (the two packages' names are imported on first use)."""
    code = (
        "import sys, asyncheartbeat.testing.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncheartbeat', 'aiohttp', 'botocore', 'aiobotocore')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(
        [
            "asyncheartbeat",
            "asyncheartbeat._lazy",
            "asyncheartbeat.testing",
            "asyncheartbeat.testing.pytest_plugin",
        ]
    )


@pytest.mark.slow
def test_a_fixture_without_pytest_asyncio_fails_naming_the_fix(tmp_path: Path) -> None:
    """Without pytest-asyncio the fixture exists, and its error says what to install."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_job.py").write_text(TEST_USING_THE_FIXTURE)
    result = run_pytest(tmp_path, "-p", "no:asyncio")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pip install 'asyncheartbeat[testing]'" in result.stdout
    assert "fixture 'local_datapipeline' not found" not in result.stdout


@pytest.mark.slow
def test_the_fixture_serves_with_pytest_asyncio(tmp_path: Path) -> None:
    """With pytest-asyncio loaded, the same fixture gives a running local Data Pipeline."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_job.py").write_text(
        "async def test_uses_the_fixture(local_datapipeline):\n"
        "    assert local_datapipeline.url.startswith('http://127.0.0.1:')\n"
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
