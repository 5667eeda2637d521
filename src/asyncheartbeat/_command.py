"""A shell command run as a task's job: its output read for progress fields, its process
group stopped (SIGTERM, then SIGKILL after a grace period) when the work must stop."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import json
import logging
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from ._errors import CancelReason, HeartbeatError
from ._heartbeat import Heartbeat
from ._log import fields
from ._runner import FailTask
from ._task import Task

logger = logging.getLogger("asyncheartbeat")

#: A line of the command's standard output that sets a progress field instead of being shown.
FIELD_LINE = re.compile(r"asyncheartbeat: ([^=\s]+)=(.*)")
#: How long, after the command ended, what it printed is still read.
OUTPUT_DRAIN = 1.0
#: After SIGKILL, how long the rest of the command is waited for.
GROUP_GONE_AFTER_KILL = 5.0
#: The script that starts a command and stops all of it (`_command_supervisor`).
SUPERVISOR = Path(__file__).with_name("_command_supervisor.py")
#: An orphaned command is gone this long (at most a tenth of the lease) before the lease
#: ends, when the service may hand its task out again.
LEASE_END_MARGIN = 1.0
#: The longest line of the command's output read for a progress field; a longer one passes
#: through in pieces, unread.
MAX_LINE = 64 * 1024
#: Chunks of the command's output held while our own reader does not read.
OUTPUT_BUFFER = 64
#: How much of the end of the command's standard error a failed task carries.
STDERR_TAIL = 4096
#: The largest task object (as JSON) passed in ``ASYNCHEARTBEAT_TASK`` beside its file:
#: Linux refuses to start a command with a variable over 128 KiB (E2BIG).
TASK_VARIABLE_LIMIT = 64 * 1024

#: The exit status of ``asyncheartbeat run`` when the heartbeat stopped the command.
EXIT_STATUS = {
    CancelReason.STALLED: 120,
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
    """Run ``argv`` in a process group of its own, under a supervisor, until it exits; if
    this is cancelled, SIGTERM it and everything it started, SIGKILL them after ``grace``
    seconds, and re-raise. What it leaves behind when it exits by itself is stopped the
    same way; if this process dies, the supervisor stops all of it on its own.

    Lines of its standard output that match `FIELD_LINE` set the task's progress fields;
    the other lines go to ``output`` (standard output by default). With ``capture_stderr``,
    standard error is passed through too and its last `STDERR_TAIL` characters kept. Each
    line read (on standard output, and on standard error if captured) counts as progress
    for the heartbeat's stall watchdog.
    """
    supervisor = await _Supervisor.start(argv, grace, env=env, stdin=stdin,
                                         capture_stderr=capture_stderr)  # fmt: skip
    process = supervisor.process
    tail: collections.deque[bytes] = collections.deque()
    # What the command prints while it stops is still read: the readers are shielded from
    # the cancellation that stops it, and end when its pipes close (or OUTPUT_DRAIN later).
    readers = anyio.CancelScope(shield=True)
    readers_done = anyio.Event()

    async def read_output() -> None:
        with readers:
            async with anyio.create_task_group() as tg:
                assert process.stdout is not None
                shown = _pass_through(tg, output or sys.stdout.buffer)
                tg.start_soon(_read_fields, process.stdout, heartbeat, shown)
                if process.stderr is not None:
                    tg.start_soon(
                        _keep_tail,
                        process.stderr,
                        tail,
                        _pass_through(tg, sys.stderr.buffer),
                        heartbeat,
                    )
        readers_done.set()

    status: int | None = None
    try:
        started = await supervisor.line()
        if started is None or not started.startswith("started "):
            number = int(started.split()[1]) if started else errno.EIO
            raise OSError(number, os.strerror(number), argv[0])
        supervisor.command_pid = int(started.split()[1])
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_output)
            telling = anyio.CancelScope()
            tg.start_soon(supervisor.tell_lease_end, heartbeat, telling)
            try:
                exited = await supervisor.line()
                status = int(exited.split()[1]) if exited else None
            finally:
                telling.cancel()
                # Cancelled, or ended by itself: what is left of it goes too, so that a
                # child it left behind (`sleep 60 &`, `setsid sleep 60 &`) does not
                # outlive the task.
                with anyio.CancelScope(shield=True):
                    await supervisor.stop(grace)
                    with anyio.move_on_after(OUTPUT_DRAIN):
                        await readers_done.wait()
                    readers.cancel()  # a child that escaped us holds the pipes open
    finally:
        with anyio.CancelScope(shield=True):
            await supervisor.stop(grace)
            await process.aclose()  # its pipes; the process has ended by now
            supervisor.close()
    if status is None:  # the supervisor itself was killed
        code = process.returncode
        assert code is not None
        status = 128 - code if code < 0 else code
    stderr = b"".join(tail)[-STDERR_TAIL:].decode(errors="replace")
    return CommandResult(status, stderr)


class _Supervisor:
    """Our end of the socket to a command's supervisor (`_command_supervisor`)."""

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        grace: float,
        *,
        env: Mapping[str, str] | None,
        stdin: int | None,
        capture_stderr: bool,
    ) -> _Supervisor:
        ours, theirs = socket.socketpair()
        try:
            process = await anyio.open_process(
                [sys.executable, "-I", "-S", str(SUPERVISOR), str(theirs.fileno()),
                 repr(grace), str(os.getpid()), "--", *argv],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if capture_stderr else None,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # out of reach of the signals our own group gets
                pass_fds=(theirs.fileno(),),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours)

    def __init__(self, process: anyio.abc.Process, sock: socket.socket) -> None:
        self.process = process
        self._sock = sock
        sock.setblocking(False)
        self._buffer = b""
        #: The command's pid, which is its process group's id too, once it started.
        self.command_pid = 0

    async def line(self) -> str | None:
        """The next line it says; None once it has closed its end (it has exited)."""
        while b"\n" not in self._buffer:
            await anyio.wait_readable(self._sock)
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def tell_lease_end(self, heartbeat: Heartbeat, scope: anyio.CancelScope) -> None:
        """Keep the supervisor told when the task's lease ends (less a margin for its
        processes to be gone), until ``scope`` is cancelled: if this process dies, it stops
        the command by then, since the service hands the task out again and its work must
        not run twice at once."""
        lease, told = heartbeat._lease, None
        timing = lease.timing
        margin = min(LEASE_END_MARGIN, timing.lease_timeout / 10)
        with scope:
            while True:
                if lease.last_success is not None and lease.last_success != told:
                    told = lease.last_success
                    # Our clock is time.monotonic() (asyncio's, and a ReportingThread's).
                    self._tell(f"E{lease.lease_end() - margin!r}\n".encode())
                await anyio.sleep(timing.interval)

    def _tell(self, move: bytes) -> None:
        with contextlib.suppress(OSError):  # it has exited already
            self._sock.send(move)

    def close(self) -> None:
        self._sock.close()

    async def stop(self, grace: float) -> None:
        """SIGTERM the command and everything it left, then SIGKILL them after ``grace``
        seconds, until none of it runs: the supervisor exits once all of it is gone."""
        process = self.process
        if process.returncode is not None:
            return
        self._tell(b"T")
        with anyio.move_on_after(grace):
            await process.wait()
        if process.returncode is not None:
            return
        logger.warning(
            "the command's process group %d still runs %g s after SIGTERM: SIGKILL",
            self.command_pid, grace,
            extra=fields("command_sigkill", pid=self.command_pid, delay=grace),
        )  # fmt: skip
        self._tell(b"K")
        with anyio.move_on_after(GROUP_GONE_AFTER_KILL):
            await process.wait()
        if process.returncode is None:  # never seen: leave nothing waiting on it
            process.kill()
            await process.wait()


def _pass_through(tg: anyio.abc.TaskGroup, out: IO[bytes]) -> MemoryObjectSendStream[bytes]:
    """A stream whose chunks are written to ``out`` from a thread of its own, in order.

    A reader of ours that stops reading then blocks neither the event loop nor the
    heartbeat: the chunks wait (up to `OUTPUT_BUFFER`), then reading the command's output
    waits, and the command blocks on its own pipe, as it would writing to a terminal. The
    thread is a daemon: a write that never ends (nobody will ever read) is given up at exit
    instead of keeping the process alive.
    """
    send, receive = anyio.create_memory_object_stream[bytes](OUTPUT_BUFFER)
    token = anyio.lowlevel.current_token()
    chunks: queue.SimpleQueue[tuple[bytes, anyio.Event] | None] = queue.SimpleQueue()

    def write_in_order() -> None:
        while (item := chunks.get()) is not None:
            data, written = item
            try:
                out.write(data)
                out.flush()
            except (OSError, ValueError):  # our reader went away: nothing more will be read
                pass
            try:
                anyio.from_thread.run_sync(written.set, token=token)
            except RuntimeError:  # the event loop has ended
                return

    threading.Thread(target=write_in_order, name="asyncheartbeat:output", daemon=True).start()

    async def write_all() -> None:
        try:
            with receive:
                async for data in receive:
                    written = anyio.Event()
                    chunks.put((data, written))
                    await written.wait()
        finally:
            chunks.put(None)

    tg.start_soon(write_all)
    return send


async def _read_fields(
    stream: anyio.abc.ByteReceiveStream, hb: Heartbeat, shown: MemoryObjectSendStream[bytes]
) -> None:
    """Set a field for each `FIELD_LINE`, pass the other lines on to ``shown``. A line
    longer than `MAX_LINE` passes on in pieces, and is not read for a field."""
    with shown:
        pending = bytearray()  # the start of a line, up to MAX_LINE
        in_long_line = False
        async for chunk in stream:
            pieces: list[bytes | bytearray] = []
            *lines, rest = chunk.split(b"\n")
            if lines:
                hb.progress()
            for line in lines:
                if in_long_line or len(pending) + len(line) > MAX_LINE:
                    pieces += (pending, line, b"\n")
                    in_long_line = False
                elif (text := _field_or_text(bytes(pending + line), hb)) is not None:
                    pieces.append(text)
                pending = bytearray()
            if in_long_line:
                pieces.append(rest)
            else:
                pending += rest
                if len(pending) > MAX_LINE:
                    pieces.append(pending)
                    pending = bytearray()
                    in_long_line = True
            if pieces:
                await shown.send(b"".join(pieces))
        if pending and (text := _field_or_text(bytes(pending), hb)) is not None:
            await shown.send(text)
        elif in_long_line:
            await shown.send(b"\n")


def _field_or_text(line: bytes, hb: Heartbeat) -> bytes | None:
    """Set the field ``line`` names, or return the line to show."""
    match = FIELD_LINE.fullmatch(line.decode(errors="replace").rstrip("\r"))
    if match is None:
        return line + b"\n"
    key, value = match.groups()
    try:
        hb.set_field(key, value)
    except (ValueError, HeartbeatError) as problem:
        print(f"asyncheartbeat: field {key!r} not set: {problem}", file=sys.stderr, flush=True)
    return None


async def _keep_tail(
    stream: anyio.abc.ByteReceiveStream,
    tail: collections.deque[bytes],
    shown: MemoryObjectSendStream[bytes],
    hb: Heartbeat,
) -> None:
    with shown:
        kept = 0
        async for chunk in stream:
            if b"\n" in chunk:
                hb.progress()
            await shown.send(chunk)
            tail.append(chunk)
            kept += len(chunk)
            while kept - len(tail[0]) >= STDERR_TAIL:
                kept -= len(tail.popleft())


#: ShellCommandActivity fields this runner cannot honour: a task that sets one fails,
#: naming it, rather than running something other than what its pipeline says.
UNSUPPORTED_ACTIVITY_FIELDS = {
    "scriptUri": "a script in S3 (give the script as command instead)",
    "stage": "staging of input and output data nodes",
    "stdout": "standard output sent to S3 (it goes to the worker's own output)",
    "stderr": "standard error sent to S3 (it goes to the worker's own error output)",
}


def activity_command(task: Task) -> list[str]:
    """The argv that runs ``task``'s own ShellCommandActivity: ``sh -c COMMAND`` with its
    ``scriptArgument`` values as ``$1``, ``$2`` …; raises `FailTask` for an activity
    this runner cannot run as its pipeline says."""
    activity = task.activity
    if activity is None:
        raise FailTask("the task object has no activity to run", error_id="UnsupportedActivity")
    for key, what in UNSUPPORTED_ACTIVITY_FIELDS.items():
        value = activity.strings.get(key)
        if value is not None and not (key == "stage" and value == "false"):
            raise FailTask(
                f"activity {activity.id!r} sets {key}: {what} is not supported by "
                f"asyncheartbeat worker --run-task-command",
                error_id="UnsupportedActivity",
            )
    command = activity.strings.get("command")
    if not command:
        raise FailTask(
            f"activity {activity.id!r} has no command to run", error_id="UnsupportedActivity"
        )
    return ["sh", "-c", command, "sh", *activity.values("scriptArgument")]


@contextlib.contextmanager
def task_environment(task: Task) -> Iterator[dict[str, str]]:
    """The environment a worker's command gets for ``task``, for as long as it runs: its
    ids, the activity's string fields one by one, and the whole task object as JSON in a
    file (``ASYNCHEARTBEAT_TASK_FILE``, removed afterwards) and, up to `TASK_VARIABLE_LIMIT`,
    in ``ASYNCHEARTBEAT_TASK`` too."""
    document = json.dumps(
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
    )
    fd, path = tempfile.mkstemp(prefix="asyncheartbeat-task-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(document)
        env = {
            "ASYNCHEARTBEAT_TASK_ID": task.task_id,
            "ASYNCHEARTBEAT_PIPELINE_ID": task.pipeline_id,
            "ASYNCHEARTBEAT_ATTEMPT_ID": task.attempt_id,
            "ASYNCHEARTBEAT_TASK_FILE": path,
        }
        if len(document) <= TASK_VARIABLE_LIMIT:  # ASCII: json.dumps escapes the rest
            env["ASYNCHEARTBEAT_TASK"] = document
        if task.activity is not None:
            for key, value in task.activity.strings.items():
                env["ASYNCHEARTBEAT_FIELD_" + re.sub(r"[^A-Za-z0-9_]", "_", key)] = value
        yield env
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
