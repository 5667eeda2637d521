"""A fleet: several worker processes, each with its own client, sharing one account's
ReportTaskProgress limit, while workers join and leave.

One emulator process limits ReportTaskProgress with the service's token bucket (10/s,
burst 100); its report timeout (the lease) is the heartbeats' ``lease_timeout``, and so is
its acknowledgement timeout, so that a task not reported within a lease of being handed
out is lost as well. N worker processes (this file in its ``worker`` mode, each with its
own client from ``bench_client``) share tasks = rate x lease / ratio, where ratio is
capacity / need (need = tasks / lease reports/s), split evenly between them. Every worker
process is started (and has imported and made its client) before the run, so that the
imports do not load the cores mid-run; it joins when it is handed its tasks. Workers join
one after another over the first 12 s; at half time a quarter of them (at least one), the
first to join, leave (their heartbeats end cleanly, the process exits) one after another,
each as a fresh worker joins with as many fresh tasks, so the load stays the same. Time is
sped up ``--scale`` times: interval, lease and every time of the run divided by it, the
rate multiplied by it; the burst stays 100 calls.

Each side runs against a fresh emulator (its own account), one after the other:
"asyncheartbeat", ``async with Heartbeat(client, task_id, interval=..., lease_timeout=...)``
around a body that waits until its worker leaves, and "naive", a loop of ``await
client.report_task_progress(taskId=..., fields=[])`` then ``await anyio.sleep(interval)``,
exceptions ignored.

- leases lost: tasks whose attempt the emulator no longer holds as RUNNING, read back
  (``dp.attempt``) while the task's worker still reports (before it leaves, or at the end
  of the run), with, for asyncheartbeat, tasks whose Heartbeat raised `TaskStopped`
  LEASE_LOST; of all the tasks handed out in the run. A task whose worker left is not lost.
- throttled / answered: the emulator's record of ReportTaskProgress calls over the run.
- answered reports per task per lease: a task's answered reports (the emulator's record,
  up to its lease running out) x lease / the time it was held; the least and the median.
- worst lease margin: for each answered report, the lease left when it arrived (the
  previous answer's arrival, or the hand-out, + lease - its arrival), and at the end of the
  task's holding, so that a task gone silent shows; the least over the fleet, in seconds
  of the run and as a share of the lease. Below 0: a lease ran out.

    .venv/bin/python bench/fleet.py [--workers 2 4 8 16] [--ratios 2.0 1.5 1.25] [--scale 1]
        [--interval 4] [--lease 25] [--duration 70] [--sides asyncheartbeat naive]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import anyio
import anyio.abc
from _client import add_tasks, attempt_statuses, bench_client
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.testing import Call, EmulatorProcess, RateLimit

HEARTBEAT, NAIVE = "asyncheartbeat", "naive"
SIDES = (HEARTBEAT, NAIVE)
THROTTLED = "error:ThrottlingException"
#: The service's documented ReportTaskProgress limit, and its burst.
RATE, BURST = 10.0, 100
#: How long a worker process may take to start and make its client, and to leave.
START_TIMEOUT, LEAVE_TIMEOUT = 60.0, 30.0
#: Connections in each worker's client pool.
POOL = 10


# -- a worker process ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    side: str
    url: str
    interval: float
    lease: float
    pool: int = POOL


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def naive(client: Any, task_id: str, interval: float) -> None:
    """What a user writes by hand."""
    while True:
        with contextlib.suppress(Exception):  # ignored, as the naive loop does
            await client.report_task_progress(taskId=task_id, fields=[])
        await anyio.sleep(interval)


async def heartbeat(
    client: Any, task_id: str, config: WorkerConfig, leave: anyio.Event, verdicts: dict[str, str]
) -> None:
    try:
        async with Heartbeat(client, task_id, interval=config.interval, lease_timeout=config.lease):
            await leave.wait()
    except TaskStopped as stopped:
        verdicts[task_id] = stopped.reason.value


async def worker(config: WorkerConfig) -> None:
    """One process of the fleet: ready, then its tasks (a line of JSON on stdin), then a line
    "leave" (or stdin closing: the bench is gone) ends them; it answers with its verdicts."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with bench_client(config.url, config.pool) as client:
        say({"ready": True})
        line = await reader.readline()
        if not line:
            return
        task_ids: list[str] = json.loads(line)["tasks"]
        verdicts: dict[str, str] = {}
        leave = anyio.Event()
        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                if config.side == HEARTBEAT:
                    tg.start_soon(heartbeat, client, task_id, config, leave, verdicts)
                else:
                    tg.start_soon(naive, client, task_id, config.interval)
            await reader.readline()  # "leave", or the end of stdin
            leave.set()  # Heartbeat's bodies return: each heartbeat ends cleanly
            if config.side == NAIVE:
                tg.cancel_scope.cancel()
        say({"verdicts": verdicts})


# -- the fleet -------------------------------------------------------------------------------


@dataclasses.dataclass
class Member:
    """One worker process, as the bench sees it."""

    process: anyio.abc.Process
    lines: BufferedByteReceiveStream
    task_ids: list[str] = dataclasses.field(default_factory=list)
    #: When its tasks were handed out, and when it stopped holding them (monotonic clock,
    #: the emulator's too).
    joined: float = 0.0
    held_until: float = 0.0
    #: Its tasks' attempt status while it still reported.
    statuses: dict[str, str] = dataclasses.field(default_factory=dict)
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)

    async def read(self) -> dict[str, Any]:
        line = await self.lines.receive_until(b"\n", 1 << 24)
        message: dict[str, Any] = json.loads(line)
        return message

    async def send(self, message: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(message.encode() + b"\n")


async def start(config: WorkerConfig, members: list[Member]) -> None:
    """Start a worker process (into ``members`` at once, to be stopped whatever happens) and
    wait until it is ready."""
    command = [sys.executable, __file__, "worker", json.dumps(dataclasses.asdict(config))]
    process = await anyio.open_process(command, stdin=subprocess.PIPE, stderr=None)
    assert process.stdout is not None
    member = Member(process, BufferedByteReceiveStream(process.stdout))
    members.append(member)
    with anyio.fail_after(START_TIMEOUT):
        await member.read()


async def stop(process: anyio.abc.Process) -> None:
    """End a worker process, whatever it is doing."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        await process.aclose()


@dataclasses.dataclass(frozen=True)
class Plan:
    """One side of one cell, its times already sped up."""

    side: str
    workers: int
    tasks: int
    interval: float
    lease: float
    rate: float
    duration: float
    join_span: float

    @property
    def leavers(self) -> int:
        return max(1, self.workers // 4)

    @property
    def spacing(self) -> float:
        return self.join_span / max(self.workers - 1, 1)

    def shares(self) -> list[int]:
        """Tasks per worker, split evenly."""
        each, extra = divmod(self.tasks, self.workers)
        return [each + (i < extra) for i in range(self.workers)]


@dataclasses.dataclass
class Outcome:
    lost: int
    total: int
    throttled: int
    answered: int
    per_lease: list[float]
    margin: float


async def fleet(plan: Plan) -> Outcome:
    """Run one side against an emulator of its own."""
    limits = {"ReportTaskProgress": RateLimit(plan.rate, BURST)}
    async with EmulatorProcess(
        report_timeout=plan.lease, ack_timeout=plan.lease, rate_limits=limits
    ) as dp:
        config = WorkerConfig(plan.side, dp.url, plan.interval, plan.lease)
        members: list[Member] = []
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(plan.workers + plan.leavers):
                    tg.start_soon(start, config, members)
            first, fresh = members[: plan.workers], members[plan.workers :]

            async def join(member: Member, count: int) -> None:
                member.joined = time.monotonic()
                member.task_ids = await add_tasks(dp, count)
                await member.send(json.dumps({"tasks": member.task_ids}))

            async def hold_until_now(member: Member) -> None:
                # Read back while its tasks still report: a lease kept shows RUNNING.
                member.held_until = time.monotonic()
                member.statuses = await attempt_statuses(dp, member.task_ids)

            begin = time.monotonic()
            for i, (member, count) in enumerate(zip(first, plan.shares(), strict=True)):
                await anyio.sleep_until(begin + i * plan.spacing)
                await join(member, count)
            for i, (leaver, joiner) in enumerate(zip(first, fresh, strict=False)):
                await anyio.sleep_until(begin + plan.duration / 2 + i * plan.spacing)
                await hold_until_now(leaver)
                await leaver.send("leave")
                await join(joiner, len(leaver.task_ids))
            await anyio.sleep_until(begin + plan.duration)
            staying = first[plan.leavers :] + fresh
            end = time.monotonic()
            async with anyio.create_task_group() as tg:
                for member in staying:
                    tg.start_soon(hold_until_now, member)
            for member in staying:
                await member.send("leave")
            with anyio.fail_after(LEAVE_TIMEOUT):
                for member in members:
                    member.verdicts = (await member.read())["verdicts"]
                    await member.process.wait()
        finally:
            for member in members:
                await stop(member.process)
        calls = [c for c in await dp.calls() if c.operation == "ReportTaskProgress"]
    return measure(plan, members, calls, begin, end)


def measure(
    plan: Plan, members: list[Member], calls: list[Call], begin: float, end: float
) -> Outcome:
    outcomes = Counter(c.outcome for c in calls if begin <= c.received_at <= end)
    answers: dict[str, list[float]] = {}
    for call in calls:
        if call.outcome == "answered" and call.task_id is not None:
            answers.setdefault(call.task_id, []).append(call.received_at)
    lost, total, per_lease, margins = 0, 0, [], []
    for member in members:
        for task_id in member.task_ids:
            total += 1
            stopped = member.verdicts.get(task_id) == CancelReason.LEASE_LOST.value
            lost += stopped or member.statuses[task_id] != "RUNNING"
            held_from, held_to = member.joined, member.held_until
            previous, count, margin = held_from, 0, 0.0
            for at in sorted(answers.get(task_id, [])):
                if not held_from <= at <= held_to:
                    continue
                margin = previous + plan.lease - at
                margins.append(margin)
                if margin < 0:
                    break  # the lease ran out: later reports were answered TaskNotFound
                previous, count = at, count + 1
            if margin >= 0:
                margins.append(previous + plan.lease - held_to)
            per_lease.append(count * plan.lease / (held_to - held_from))
    return Outcome(
        lost=lost,
        total=total,
        throttled=outcomes.get(THROTTLED, 0),
        answered=outcomes.get("answered", 0),
        per_lease=per_lease,
        margin=min(margins),
    )


# -- the table -------------------------------------------------------------------------------


def cells(outcome: Outcome, lease: float) -> dict[str, str]:
    return {
        "leases lost": f"{outcome.lost}/{outcome.total}",
        "throttled ÷ answered": f"{outcome.throttled / max(outcome.answered, 1):.2f}",
        "answered per task per lease, min / median": (
            f"{min(outcome.per_lease):.2f} / {statistics.median(outcome.per_lease):.2f}"
        ),
        "worst lease margin": f"{outcome.margin:.2f} s ({outcome.margin / lease:.2f})",
    }


METRICS = (
    "leases lost",
    "throttled ÷ answered",
    "answered per task per lease, min / median",
    "worst lease margin",
)


async def main_async(args: argparse.Namespace) -> None:
    # SIGTERM ends the run as Ctrl-C does: the worker processes are stopped on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    scale = args.scale
    interval, lease, rate = args.interval / scale, args.lease / scale, args.rate * scale
    duration, join_span = args.duration / scale, args.join / scale
    print(
        f"Worker processes sharing one account's token bucket ({args.rate:g} reports/s, burst "
        f"{BURST}), interval {args.interval:g} s, lease {args.lease:g} s, runs of "
        f"{args.duration:g} s; workers join over {args.join:g} s, at half time a quarter of "
        f"them leave while as many fresh ones join; sped up {scale:g} x (interval {interval:g} s, "
        f"lease {lease:g} s, {rate:g} reports/s, runs of {duration:g} s); each side against "
        f"its own emulator, one after the other; margins in the run's seconds\n"
    )
    header = ["workers", "capacity ÷ need (tasks)"]
    header += [f"{metric}: {side}" for metric in METRICS for side in args.sides]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header), flush=True)
    for workers in args.workers:
        for ratio in args.ratios:
            tasks = round(args.rate * args.lease / ratio)
            row: dict[str, dict[str, str]] = {}
            for side in args.sides:
                plan = Plan(side, workers, tasks, interval, lease, rate, duration, join_span)
                row[side] = cells(await fleet(plan), lease)
            values = [str(workers), f"{ratio:g} ({tasks})"]
            values += [row[side][metric] for metric in METRICS for side in args.sides]
            print("| " + " | ".join(values) + " |", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        # Ctrl-C reaches the whole fleet; a bench gone closes stdout.
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            asyncio.run(worker(WorkerConfig(**json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--ratios", type=float, nargs="+", default=[2.0, 1.5, 1.25])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--scale", type=float, default=1.0, help="time sped up this many times")
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between reports")
    parser.add_argument(
        "--lease", type=float, default=25.0, help="lease_timeout, and the emulator's"
    )
    parser.add_argument("--duration", type=float, default=70.0, help="seconds of each run")
    parser.add_argument("--join", type=float, default=12.0, help="seconds over which workers join")
    parser.add_argument("--rate", type=float, default=RATE, help="the account's reports/s")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
