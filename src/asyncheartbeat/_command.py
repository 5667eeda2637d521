"""A shell command run as a task's job: its output read for progress fields, its process
group stopped (SIGTERM, then SIGKILL after a grace period) when the work must stop."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO

import anyio
import anyio.abc

from ._errors import CancelReason, HeartbeatError
from ._heartbeat import Heartbeat
from ._task import Task

#: A line of the command's standard output that sets a progress field instead of being shown.
FIELD_LINE = re.compile(r"asyncheartbeat: ([^=\s]+)=(.*)")
#: How long, after the command ended, what it printed is still read.
OUTPUT_DRAIN = 1.0
#: How much of the end of the command's standard error a failed task carries.
STDERR_TAIL = 4096

#: The exit status of ``asyncheartbeat run`` when the heartbeat stopped the command.
EXIT_STATUS = {
    CancelReason.REQUESTED: 121,
    CancelReason.TASK_NOT_FOUND: 122,
    CancelReason.PIPELINE_NOT_FOUND: 122,
    CancelReason.PIPELINE_DELETED: 122,
    CancelReason.LEASE_LOST: 123,
    CancelReason.REJECTED: 124,
}
EXIT_OWN_FAILURE, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND = 125, 126, 127


@dataclasses.dataclass(frozen=True, slots=True)
class CommandResult:
    #: The command's exit status, or 128 + N if signal N ended it, as shells report it.
    status: int
    #: The end of what it wrote to standard error ("" unless captured).
    stderr_tail: str


async def run_command(
    argv: Sequence[str],
    heartbeat: Heartbeat,
    *,
    grace: float,
    env: Mapping[str, str] | None = None,
    capture_stderr: bool = False,
    stdin: int | None = None,
    output: IO[bytes] | None = None,
) -> CommandResult:
    """Run ``argv`` in a process group of its own until it exits; if this is cancelled,
    SIGTERM the group, SIGKILL it after ``grace`` seconds, and re-raise.

    Lines of its standard output that match `FIELD_LINE` set the task's progress fields;
    the other lines go to ``output`` (standard output by default). With ``capture_stderr``,
    standard error is passed through too and its last `STDERR_TAIL` characters kept.
    """
    process = await anyio.open_process(
        list(argv),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        env=dict(env) if env is not None else None,
        start_new_session=True,  # its own process group: signals reach its children too
    )
    tail: collections.deque[bytes] = collections.deque()
    # What the command prints while it stops is still read: the readers are shielded from
    # the cancellation that stops it, and end when its pipes close (or OUTPUT_DRAIN later).
    readers = anyio.CancelScope(shield=True)
    readers_done = anyio.Event()

    async def read_output() -> None:
        with readers:
            async with anyio.create_task_group() as tg:
                assert process.stdout is not None
                tg.start_soon(_read_fields, process.stdout, heartbeat, output or sys.stdout.buffer)
                if process.stderr is not None:
                    tg.start_soon(_keep_tail, process.stderr, tail)
        readers_done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_output)
            try:
                await process.wait()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _stop(process, grace)
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(OUTPUT_DRAIN):
                        await readers_done.wait()
                    readers.cancel()  # a child that escaped the group holds the pipes open
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()  # its pipes; the process has ended by now
    code = process.returncode
    assert code is not None
    stderr = b"".join(tail)[-STDERR_TAIL:].decode(errors="replace")
    return CommandResult(128 - code if code < 0 else code, stderr)


async def _stop(process: anyio.abc.Process, grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        if process.returncode is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with anyio.move_on_after(wait if wait is not None else float("inf")):
            await process.wait()


async def _read_fields(stream: anyio.abc.ByteReceiveStream, hb: Heartbeat, out: IO[bytes]) -> None:
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _handle_line(line, hb, out)
    if pending:
        _handle_line(pending, hb, out)


def _handle_line(line: bytes, hb: Heartbeat, out: IO[bytes]) -> None:
    match = FIELD_LINE.fullmatch(line.decode(errors="replace").rstrip("\r"))
    if match is None:
        out.write(line + b"\n")
        out.flush()
        return
    key, value = match.groups()
    try:
        hb.set_field(key, value)
    except (ValueError, HeartbeatError) as problem:
        print(f"asyncheartbeat: field {key!r} not set: {problem}", file=sys.stderr, flush=True)


async def _keep_tail(stream: anyio.abc.ByteReceiveStream, tail: collections.deque[bytes]) -> None:
    kept = 0
    async for chunk in stream:
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail.append(chunk)
        kept += len(chunk)
        while kept - len(tail[0]) >= STDERR_TAIL:
            kept -= len(tail.popleft())


def task_environment(task: Task) -> dict[str, str]:
    """The environment a worker's command gets for ``task``: its ids, the activity's string
    fields one by one, and the whole task object as JSON."""
    env = {
        "ASYNCHEARTBEAT_TASK_ID": task.task_id,
        "ASYNCHEARTBEAT_PIPELINE_ID": task.pipeline_id,
        "ASYNCHEARTBEAT_ATTEMPT_ID": task.attempt_id,
        "ASYNCHEARTBEAT_TASK": json.dumps(
            {
                "taskId": task.task_id,
                "pipelineId": task.pipeline_id,
                "attemptId": task.attempt_id,
                "objects": {
                    object_id: {
                        "name": obj.name,
                        "fields": [{"key": k, kind: v} for k, kind, v in obj.fields],
                    }
                    for object_id, obj in task.objects.items()
                },
            }
        ),
    }
    if task.activity is not None:
        for key, value in task.activity.strings.items():
            env["ASYNCHEARTBEAT_FIELD_" + re.sub(r"[^A-Za-z0-9_]", "_", key)] = value
    return env
