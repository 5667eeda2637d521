"""Every python block of README.md and docs/*.md runs, as a user who copies it would run it.

A page says how a block is run with an HTML comment on the line just above it:

- ``<!-- not run: REASON -->``: a fragment that cannot run alone (it uses an ``hb`` or a
  ``client`` of the block before it). Kept few, and each says why.
- ``<!-- test module: tests/NAME.py -->``: the block is, verbatim, that module of this
  suite, which pytest runs with the rest.
- ``<!-- continues the block above -->``: the block adds to the one before it; the chain
  runs as one program.
- ``<!-- output of the program above -->`` (on a ``text`` block): what that program
  prints, times of day and row counts aside.

Every other block is a program, run as ``python PROGRAM`` in a process of its own. Its
AWS settings come from the environment, as a user's would: ``AWS_ENDPOINT_URL`` names a
local Data Pipeline, the credentials are fake, the region is us-east-1, and no AWS config
file is read. The local Data Pipeline's polls wait `POLL_TIMEOUT` instead of 90 s, and its
worker group ``wg`` is empty until the program has polled twice (its first poll came back
with no task); then one task is made ready there. A program passes when it exits 0 by
itself, or when it reported a status for that task (a worker polls forever; it is then
stopped). A FAILED status whose errorId is a Python error (``KeyError``,
``UnboundLocalError`` …) is a bug of the example's own and fails the test, and so does a
Python warning on its standard error (a coroutine never awaited).

The polls here are short, so the client's read timeout is checked apart: a
``sitecustomize`` module beside the program notes the read timeout of each client it makes,
and a program that polls must make clients whose reads outlast the service's 90 s long poll
(botocore's default of 60 s cuts it).
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from asyncheartbeat.testing import AttemptStatus, Call, LocalDataPipeline

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WORKER_GROUP = "wg"
POLL_TIMEOUT = 0.5
#: Generous: the programs' own work takes a few seconds, on a machine busy with others.
TIME_LIMIT = 90
MARK = re.compile(r"<!-- (not run|test module|continues the block above)(?:: (.*))? -->")
OUTPUT_MARK = "<!-- output of the program above -->"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: PollForTask holds a call this long on the real service.
LONG_POLL = 90
PROBE = """\
# Written by tests/test_doc_examples.py: notes the read timeout of each client made
# (aiobotocore's and botocore's).
import functools
import os

import aiobotocore.session

_create_client = aiobotocore.session.AioSession._create_client


@functools.wraps(_create_client)
async def _noted(self, *args, **kwargs):
    client = await _create_client(self, *args, **kwargs)
    with open(os.environ["EXAMPLE_READ_TIMEOUTS"], "a") as notes:
        notes.write(f"{client.meta.config.read_timeout}\\n")
    return client


aiobotocore.session.AioSession._create_client = _noted

import botocore.session  # boto3's clients (ThreadedClient, on trio) come from here

_create_sync_client = botocore.session.Session.create_client


@functools.wraps(_create_sync_client)
def _noted_sync(self, *args, **kwargs):
    client = _create_sync_client(self, *args, **kwargs)
    with open(os.environ["EXAMPLE_READ_TIMEOUTS"], "a") as notes:
        notes.write(f"{client.meta.config.read_timeout}\\n")
    return client


botocore.session.Session.create_client = _noted_sync
"""


@dataclasses.dataclass
class Example:
    page: Path
    line: int
    kind: str  # "program", "not run", "test module"
    code: str
    note: str = ""
    output: str | None = None  # what the page says the program prints

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    """The python blocks of every page, chains joined, as the conventions above say."""
    found: list[Example] = []
    for page in PAGES:
        text = page.read_text()
        last_program: Example | None = None
        for match in BLOCK.finditer(text):
            language, code = match.groups()
            above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            line = text.count("\n", 0, match.start()) + 1
            if language == "text" and above == OUTPUT_MARK:
                assert last_program is not None, f"{page.name}:{line}: no program above"
                last_program.output = code
            if language != "python":
                continue
            mark = MARK.fullmatch(above)
            kind, note = (mark.group(1), mark.group(2) or "") if mark else ("program", "")
            if kind == "continues the block above":
                assert last_program is not None, f"{page.name}:{line}: nothing to continue"
                last_program.code += "\n\n" + code
                continue
            example = Example(page, line, kind, code, note)
            found.append(example)
            if kind == "program":
                last_program = example
    return found


PROGRAMS = [example for example in examples() if example.kind == "program"]


def test_every_python_block_is_run_or_says_why_not() -> None:
    """A block not run says why (and such blocks stay few); a test module block is that module."""
    blocks = examples()
    not_run = [b for b in blocks if b.kind == "not run"]
    assert all(b.note.strip() for b in not_run), [b.name for b in not_run if not b.note]
    assert len(not_run) <= 8, [b.name for b in not_run]
    for block in blocks:
        if block.kind == "test module":
            assert block.code == (ROOT / block.note).read_text(), block.name
    assert len(PROGRAMS) >= 5  # README, getting started, task runner, tutorial, client config


@dataclasses.dataclass
class Run:
    returncode: int | None  # None: stopped by the test after it reported its task
    stdout: str
    stderr: str
    status: AttemptStatus | None  # of the task made ready, if it took it
    error_id: str | None
    polls: int
    read_timeouts: list[float]  # of each aiobotocore client the program made


async def run_program(code: str, directory: Path) -> Run:
    """Run ``code`` against a local Data Pipeline, in the scenario the module docstring says."""
    script = directory / "example.py"
    script.write_text(code)
    (directory / "sitecustomize.py").write_text(PROBE)
    notes = directory / "read-timeouts"
    async with LocalDataPipeline(poll_timeout=POLL_TIMEOUT) as dp:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(directory),
            "AWS_ENDPOINT_URL": dp.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(directory / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(directory / "no-aws-credentials"),
            "PYTHONPATH": str(directory),  # for the sitecustomize probe only
            "EXAMPLE_READ_TIMEOUTS": str(notes),
        }
        out: list[bytes] = []
        err: list[bytes] = []

        def statuses_sent(calls: list[Call]) -> bool:
            return any(call.operation == "SetTaskStatus" for call in calls)

        def polls() -> int:
            return sum(call.operation == "PollForTask" for call in dp.calls)

        async def read(stream: anyio.abc.ByteReceiveStream, into: list[bytes]) -> None:
            async for chunk in stream:
                into.append(chunk)

        async def make_a_task_ready_after_an_empty_poll() -> None:
            await dp.wait_for_calls(lambda calls: polls() >= 2)
            dp.add_pipeline(worker_group=WORKER_GROUP)

        async def stop_once_its_status_landed(process: anyio.abc.Process) -> None:
            await dp.wait_for_calls(statuses_sent)
            # The server changed the attempt before it woke this waiter: the status landed.
            process.terminate()

        with anyio.fail_after(TIME_LIMIT):
            process = await anyio.open_process(
                [sys.executable, str(script)],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
            )
            async with process, anyio.create_task_group() as tg:
                assert process.stdout is not None
                assert process.stderr is not None
                tg.start_soon(read, process.stdout, out)
                tg.start_soon(read, process.stderr, err)
                tg.start_soon(make_a_task_ready_after_an_empty_poll)
                tg.start_soon(stop_once_its_status_landed, process)
                returncode = await process.wait()
                tg.cancel_scope.cancel()
        statuses = [c for c in dp.calls if c.operation == "SetTaskStatus"]
        attempt = dp.attempt(statuses[0].params["taskId"]) if statuses else None
        return Run(
            returncode=None if statuses and returncode < 0 else returncode,
            stdout=b"".join(out).decode(),
            stderr=b"".join(err).decode(),
            status=attempt.status if attempt else None,
            error_id=attempt.error_id if attempt else None,
            polls=polls(),
            read_timeouts=[float(t) for t in notes.read_text().split()] if notes.exists() else [],
        )


def normalized(output: str) -> str:
    """Output with what varies from run to run (times of day, rows counted) taken out."""
    output = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "<time>", output)
    return re.sub(r"\d+ rows", "<n> rows", output).strip()


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize("example", PROGRAMS, ids=[example.name for example in PROGRAMS])
async def test_the_example_runs(example: Example, tmp_path: Path) -> None:
    """The program runs to its end, or, as a worker, takes the task and reports it."""
    run = await run_program(example.code, tmp_path)
    assert run.returncode in (0, None), run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert not re.search(r"\w+Warning: ", run.stderr), run.stderr
    if run.polls:
        assert run.read_timeouts, "the probe saw no client made"
        assert min(run.read_timeouts) > LONG_POLL, "a read timeout that cuts the long poll"
        assert run.status in (AttemptStatus.FINISHED, AttemptStatus.FAILED, AttemptStatus.FALSE)
    if run.status is AttemptStatus.FAILED:
        assert run.error_id not in dir(builtins), f"the example's own bug: {run.error_id}"
    if example.output is not None:
        assert normalized(run.stdout) == normalized(example.output)
