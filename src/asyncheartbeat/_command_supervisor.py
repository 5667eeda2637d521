"""The supervisor between ``asyncheartbeat run``/``worker`` and a task's command, so that no
process of the task outlives the task or the worker.

Run as a script by its path (``python -I -S _command_supervisor.py FD GRACE PARENT -- CMD``),
not imported: it starts in milliseconds and needs only the standard library. It starts
CMD in a process group of its own and stays its parent. On Linux it is a child subreaper
(``PR_SET_CHILD_SUBREAPER``): every process CMD leaves behind, even one that left its
process group or session (``setsid sleep 300 &``), becomes its child when orphaned, so it
can find and stop them all. It gets SIGTERM when the worker dies (``PR_SET_PDEATHSIG``),
and everywhere it watches its end of a socket shared with the worker, which the kernel
closes when the worker dies, even by SIGKILL.

What it says on the socket (one line each): ``started PID`` or ``error ERRNO``, then
``exited STATUS`` (128 + N for signal N) when CMD ended. What it reads: ``T``: SIGTERM
everything of the task now; ``K``: SIGKILL everything, again until nothing is left;
``E<seconds>`` (a line): the ``time.monotonic()`` time by which all of it must be gone if
the worker dies, as the task's lease ends then and the service hands the task out again
(``CLOCK_MONOTONIC`` is one clock for every process of the host). At end of file, or on
SIGTERM, SIGHUP or SIGINT, it does both on its own, ``GRACE`` seconds apart, or sooner if
the lease ends sooner: the task's work must never run twice at once. It exits, with CMD's
status, once CMD and everything it left are gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: While stopping, how often what is left is looked for again.
SWEEP = 0.05


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> set[int]:
    """Every live process under ``root``, from /proc (Linux); empty elsewhere."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state, ppid = stat.read().rsplit(b")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != b"Z":
            children.setdefault(int(ppid), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


class Supervisor:
    def __init__(self, control: int, grace: float, parent: int, argv: Sequence[str]) -> None:
        self.control = control
        self.grace = grace
        self.parent = parent
        self.argv = list(argv)
        self.reaper = sys.platform == "linux" and _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.group = 0  # the command's process group
        self.status: int | None = None  # the command's, once it ended
        self.parent_gone = False
        self.kill_at: float | None = None  # when SIGKILL is due, once the parent is gone
        self.killing = False
        #: When all of it must be gone if the worker dies (its lease ends): None if untold.
        self.end_by: float | None = None
        self._unread = b""

    def say(self, line: str) -> None:
        if self.parent_gone:
            return
        try:
            os.write(self.control, line.encode() + b"\n")
        except OSError:
            self.orphaned()

    def signal_all(self, sig: int) -> None:
        if self.group:
            with contextlib.suppress(OSError):
                os.killpg(self.group, sig)
        for pid in _descendants(os.getpid()):
            # Only what left the group: the group's own got the signal once already, and a
            # second SIGTERM runs a command's trap twice.
            with contextlib.suppress(OSError):
                if not self.group or os.getpgid(pid) != self.group:
                    os.kill(pid, sig)

    def orphaned(self) -> None:
        """The worker is gone: stop everything on our own, SIGTERM then SIGKILL."""
        if self.parent_gone:
            return
        self.parent_gone = True
        self.signal_all(signal.SIGTERM)
        self.kill_at = time.monotonic() + self.grace
        if self.end_by is not None:
            self.kill_at = min(self.kill_at, self.end_by)

    def reap(self) -> bool:
        """Reap what ended; whether we have no children left."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if pid == self.group and self.status is None:
                code = os.waitstatus_to_exitcode(wait_status)
                self.status = 128 - code if code < 0 else code
                self.say(f"exited {self.status}")

    def group_gone(self) -> bool:
        if self.reaper:  # every process of the group is a descendant, and none is left
            return True
        try:
            os.killpg(self.group, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        if sys.platform == "linux":
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        try:
            process = subprocess.Popen(self.argv, process_group=0)
        except OSError as error:
            self.say(f"error {error.errno or errno.EIO}")
            return 127 if isinstance(error, FileNotFoundError) else 126
        self.group = process.pid
        self.say(f"started {process.pid} {int(self.reaper)}")
        # What the command reads and writes is its own: ours would hold its pipes open.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
        if os.getppid() != self.parent:  # it died before the parent-death signal was set
            self.orphaned()
        while True:
            none_left = self.reap()
            if self.status is not None and none_left and self.group_gone():
                process.returncode = self.status  # reaped here, not by Popen
                return self.status
            now = time.monotonic()
            if self.kill_at is not None and now >= self.kill_at:
                self.killing = True
            if self.killing:
                self.signal_all(signal.SIGKILL)
            stopping = self.killing or self.kill_at is not None or self.status is not None
            timeout = SWEEP if stopping else None
            if self.kill_at is not None and not self.killing:
                timeout = max(0.0, min(SWEEP, self.kill_at - now))
            watched = [wake_r] if self.parent_gone else [self.control, wake_r]
            readable, _, _ = select.select(watched, [], [], timeout)
            if wake_r in readable:
                signals = os.read(wake_r, 512)
                if {signal.SIGTERM, signal.SIGHUP, signal.SIGINT} & set(signals):
                    self.orphaned()
            if self.control in readable:
                self.read_control()

    def read_control(self) -> None:
        try:
            data = os.read(self.control, 512)
        except OSError:
            data = b""
        if not data:
            self.orphaned()
            return
        # T and K are single bytes; an E line may come in pieces.
        lines = (self._unread + data.replace(b"T", b"").replace(b"K", b"")).split(b"\n")
        self._unread = lines.pop()
        for line in lines:
            with contextlib.suppress(ValueError):
                self.end_by = float(line.removeprefix(b"E"))
        if b"T" in data:
            self.signal_all(signal.SIGTERM)
        if b"K" in data:
            self.killing = True


def main(argv: Sequence[str]) -> int:
    control, grace, parent, separator, *command = argv
    assert separator == "--"
    return Supervisor(int(control), float(grace), int(parent), command).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
