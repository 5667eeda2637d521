"""The AWS CLI transcript in the docs is true: the test suite runs it and compares."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.testing import EmulatorProcess, MockClient

HERE = Path(__file__).parent
DOC = HERE.parent / "docs" / "local-data-pipeline.md"
TESTING_GUIDE = HERE.parent / "docs" / "testing.md"
TIMING_PAGE = HERE.parent / "docs" / "timing-and-reasons.md"
DOC_PORT = "4599"
# What differs from run to run: when the pipeline was made, and the task ids.
VARYING = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"task '[A-Za-z0-9_-]{43}'"), "task '<task id>'"),
    (re.compile(r"df-[A-Z0-9]{20}"), "df-<pipeline id>"),
]


def code_block(text: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert match, f"no {language} block in {DOC.name}"
    return match.group(1)


def transcript(block: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs from a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in steps]


def normalized(text: str, port: str) -> str:
    text = text.replace(port, DOC_PORT)
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text.strip()


def labelled_block(text: str, label: str) -> str:
    """The console block after ``<!-- transcript: label -->``."""
    match = re.search(rf"<!-- transcript: {label} -->\n```console\n(.*?)```", text, re.DOTALL)
    assert match, f"no transcript {label!r} in {DOC.name}"
    return match.group(1)


async def check_transcript(block: str, directory: Path) -> None:
    """Run each command of ``block`` in one bash, against an emulator of its own, and
    compare what each prints with what the block shows."""
    steps = transcript(block)
    bin_dir = Path(sys.executable).parent
    assert shutil.which("aws", path=str(bin_dir)), "the AWS CLI comes with the dev group"

    async with EmulatorProcess() as dp:
        port = dp.url.rsplit(":", 1)[1]
        marker = "@@@ step {} @@@"
        script = "\n".join(
            f"echo '{marker.format(n)}'\n{command.replace(DOC_PORT, port)} 2>&1"
            for n, (command, _) in enumerate(steps)
        )
        result = subprocess.run(  # noqa: ASYNC221 - the emulator serves from its own process
            ["bash", "-c", script],
            cwd=directory,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(directory)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    outputs = re.split(r"@@@ step \d+ @@@\n?", result.stdout)[1:]
    assert len(outputs) == len(steps), result.stdout + result.stderr
    for (command, expected), actual in zip(steps, outputs, strict=True):
        assert normalized(actual, port) == normalized(expected, DOC_PORT), command


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_aws_cli_transcript_is_true(tmp_path: Path) -> None:
    """Each command of the transcript, run by the real AWS CLI, prints what the docs show."""
    text = DOC.read_text()
    (tmp_path / "nightly.json").write_text(code_block(text, "json"))
    await check_transcript(code_block(text, "console"), tmp_path)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_shell_control_transcript_is_true(tmp_path: Path) -> None:
    """`asyncheartbeat emulator ctl` beside the AWS CLI, both found through
    AWS_ENDPOINT_URL_DATA_PIPELINE, print what the docs show."""
    await check_transcript(labelled_block(DOC.read_text(), "ctl"), tmp_path)


def test_the_testing_guide_shows_tests_that_run() -> None:
    """Each example in the testing guide is, verbatim, a test module of this suite."""
    blocks = re.findall(r"```python\n(.*?)```", TESTING_GUIDE.read_text(), re.DOTALL)
    modules = [HERE / "test_testing_guide.py", HERE / "test_testing_guide_virtual_time.py"]
    assert blocks == [module.read_text() for module in modules]


def test_every_benchmark_writes_a_block_of_the_performance_page() -> None:
    """bench/run.py and docs/performance.md name the same benchmarks, each once."""
    run = (HERE.parent / "bench" / "run.py").read_text()
    names = re.findall(r'^    "(\w+)": \[', run, re.MULTILINE)
    page = (HERE.parent / "docs" / "performance.md").read_text()
    assert names
    assert sorted(re.findall(r"<!-- bench:(\w+) -->", page)) == sorted(names)
    assert sorted(re.findall(r"<!-- /bench:(\w+) -->", page)) == sorted(names)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_bodys_cancellation_message_is_as_the_docs_say() -> None:
    """The body's cancellation message contains "asyncheartbeat: " and TaskStopped's text."""
    page = " ".join(TIMING_PAGE.read_text().split())
    assert "whose message contains `asyncheartbeat: ` followed by the `TaskStopped` message" in (
        page
    )
    client = MockClient(lambda task_id, fields: {"canceled": len(client.calls) > 1})
    seen: list[str] = []
    with anyio.fail_after(5), pytest.raises(TaskStopped) as stopped:
        async with Heartbeat(client, "task-1", interval=0.05, lease_timeout=1):
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class() as cancelled:
                seen.append(str(cancelled))
                raise
    assert stopped.value.reason is CancelReason.REQUESTED
    assert f"asyncheartbeat: {stopped.value}" in seen[0]
    assert str(stopped.value).startswith("task 'task-1' cancelled (requested)")
