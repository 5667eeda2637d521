"""Heartbeat against the loop a user writes by hand, where something is short: the
service's answers, the service's rate limit, or the client's CPU.

The naive loop, per task: ``await client.report_task_progress(taskId=..., fields=[])``,
then ``await anyio.sleep(interval)``; no timeout, no retries, an exception ignored (the
loop goes on after the sleep). The Heartbeat side: ``async with Heartbeat(client, task_id,
interval=..., lease_timeout=...)`` around a body that waits. Both sides call through a
client made with ``client_config(max_pool_connections=...)`` (botocore's retries off).

Each run is a process of its own, with an emulator process of its own whose lease (its
report timeout) is the heartbeats' ``lease_timeout``. A lease is lost when the emulator
says so, the same test for both sides: at the end of the run, while every task still
reports, each task's attempt is read back (``dp.attempt``), and one no longer RUNNING
(TIMEDOUT: it went a lease without a report, and was handed out again) is lost. Beside it,
for Heartbeat, its own verdicts (`TaskStopped`, LEASE_LOST or another reason).

- ``slow``: every answer 1.5 intervals late, then answers 1.2 intervals late on 20, 35 and
  50 % of the calls (``Fault.delay`` for every task, ``times=None``). Both sides at once,
  each against its own emulator.
- ``throttled``: the emulator limits ReportTaskProgress as the service does, with a token
  bucket (10/s, burst 100), to capacity ÷ need of 2.5, 1.5 and 1.25, where need = tasks ÷
  lease_timeout reports/s. Time is sped up ``--scale`` times: intervals divided by it, the
  rate multiplied by it; the burst stays 100 calls (a bucket sped up keeps its burst in
  calls). Both sides at once, each against its own emulator (its own account). Throttled
  answers and answered reports are read from the emulator's record of calls; the gaps
  between a task's answered reports (up to the end of the run, so that a task gone silent
  shows) from the client's.
- ``cpu``: N tasks at a sub-second interval, asking far more than one client process can
  send, on pools from 10 to N, with a fresh client (no call before) and a warm one (one
  call before, on another task). One run at a time, the sides alternating, so that the
  emulator has the second core to itself.

    .venv/bin/python bench/contention.py slow [--tasks 20] [--interval 0.6] [--lease 3]
    .venv/bin/python bench/contention.py throttled [--tasks 100] [--interval 4] [--lease 25]
    .venv/bin/python bench/contention.py cpu [--tasks 400] [--interval 0.1] [--pools ...]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
from _client import add_tasks, attempt_statuses, percentile
from aiobotocore.session import get_session

from asyncheartbeat import Heartbeat, Reporter, TaskStopped, client_config
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.testing import EmulatorProcess, Fault, RateLimit

HEARTBEAT, NAIVE = "Heartbeat", "naive loop"
SIDES = (HEARTBEAT, NAIVE)
THROTTLED = "error:ThrottlingException"


@dataclasses.dataclass(frozen=True)
class Run:
    """One side of one scenario: what a child process runs."""

    side: str
    tasks: int
    interval: float
    lease: float
    seconds: float
    pool: int = 10
    warm: bool = False
    #: Every ReportTaskProgress answered this late, with this probability (the emulator's
    #: ``seed`` draws).
    delay: float = 0.0
    probability: float = 1.0
    #: The emulator's limit on ReportTaskProgress, calls/s (None: no limit), and its burst.
    rate: float | None = None
    burst: int = 100
    seed: int = 1


@dataclasses.dataclass
class Outcome:
    """What one run measured."""

    #: Tasks the emulator no longer held as RUNNING at the end of the run.
    lost: int
    #: Heartbeat's own verdicts, reason → tasks (none for the naive loop).
    verdicts: dict[str, int]
    #: Tasks the emulator lost that Heartbeat had not stopped.
    unnoticed: int
    #: Reports the client saw answered within the run, and the run's length.
    answered: int
    seconds: float
    #: This process's CPU time over the run.
    cpu: float
    #: Errors the naive loop met (and ignored), by code; Heartbeat's events, by kind.
    errors: dict[str, int]
    events: dict[str, int]
    #: The emulator's record of ReportTaskProgress calls within the run: outcome → calls.
    outcomes: dict[str, int]
    #: Seconds between a task's answered reports (the last one to the end of the run too).
    gap_p50: float
    gap_max: float
    #: Heartbeat's reporter, sampled through the run: calls in flight, the limit it has
    #: learned (capacity), and calls waiting for their turn (means).
    in_flight: float = 0.0
    capacity: float = 0.0
    waiting: float = 0.0

    @property
    def rate(self) -> float:
        return self.answered / self.seconds

    @property
    def cpu_per_report_us(self) -> float:
        return self.cpu / max(self.answered, 1) * 1e6


class Answers:
    """When each task's reports were answered, as the client saw it."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def add(self, task_id: str) -> None:
        self.times.setdefault(task_id, []).append(time.monotonic())

    def hook(self, events: Counter[str]) -> Callable[[Event], None]:
        """A Reporter hook counting events by kind and noting answered reports."""

        def hook(event: Event) -> None:
            events[event.kind.value] += 1
            if event.kind is EventKind.ANSWERED and event.operation == "ReportTaskProgress":
                assert event.task_id is not None
                self.add(event.task_id)

        return hook

    def count(self, start: float, end: float) -> int:
        return sum(start <= t <= end for times in self.times.values() for t in times)

    def gaps(self, task_ids: list[str], start: float, end: float) -> list[float]:
        gaps = []
        for task_id in task_ids:
            times = [t for t in self.times.get(task_id, []) if start <= t <= end]
            times.append(end)  # a task gone silent shows as one long gap
            gaps += [b - a for a, b in itertools.pairwise(times)]
        return gaps


async def naive(
    client: Any, task_id: str, interval: float, answers: Answers, errors: Counter[str]
) -> None:
    """What a user writes by hand."""
    while True:
        try:
            await client.report_task_progress(taskId=task_id, fields=[])
            answers.add(task_id)
        except Exception as error:  # ignored, as the naive loop does
            response = getattr(error, "response", None)
            code = response["Error"]["Code"] if isinstance(response, dict) else None
            errors[code or type(error).__name__] += 1
        await anyio.sleep(interval)


async def heartbeat(layer: Reporter, task_id: str, run: Run, verdicts: dict[str, str]) -> None:
    try:
        async with Heartbeat(layer, task_id, interval=run.interval, lease_timeout=run.lease):
            await anyio.sleep_forever()
    except TaskStopped as stopped:
        verdicts[task_id] = stopped.reason.value


async def sample(layer: Reporter, samples: list[tuple[int, int, int]]) -> None:
    """Note the layer's calls in flight, its limit and its line, ten times a second."""
    while True:
        await anyio.sleep(0.1)
        admission = layer.calls.admission
        samples.append((admission.in_flight, admission.capacity, len(admission.queue)))


async def one(run: Run) -> Outcome:
    """Run one side of one scenario against an emulator of its own."""
    limits = None if run.rate is None else {"ReportTaskProgress": RateLimit(run.rate, run.burst)}
    async with EmulatorProcess(report_timeout=run.lease, seed=run.seed, rate_limits=limits) as dp:
        spare, *task_ids = await add_tasks(dp, run.tasks + 1)
        client_context = get_session().create_client(
            "datapipeline", region_name="us-east-1", endpoint_url=dp.url,
            aws_access_key_id="bench", aws_secret_access_key="bench",
            config=client_config(max_pool_connections=run.pool),
        )  # fmt: skip
        answers, errors, events = Answers(), Counter[str](), Counter[str]()
        verdicts: dict[str, str] = {}
        samples: list[tuple[int, int, int]] = []
        async with client_context as client:
            if run.warm:
                await client.report_task_progress(taskId=spare, fields=[])
            if run.delay:
                fault = Fault.delay(run.delay)
                await dp.inject(fault, task_id=None, times=None, probability=run.probability)
            layer = Reporter(client, hooks=[answers.hook(events)])
            cpu_before, start = time.process_time(), time.monotonic()
            async with anyio.create_task_group() as tg:
                for task_id in task_ids:
                    if run.side == HEARTBEAT:
                        tg.start_soon(heartbeat, layer, task_id, run, verdicts)
                    else:
                        tg.start_soon(naive, client, task_id, run.interval, answers, errors)
                if run.side == HEARTBEAT:
                    tg.start_soon(sample, layer, samples)
                await anyio.sleep_until(start + run.seconds)
                end, cpu = time.monotonic(), time.process_time() - cpu_before
                stopped = dict(verdicts)
                # Read back while every task still reports: a lease the run kept stays held.
                statuses = await attempt_statuses(dp, task_ids)
                tg.cancel_scope.cancel()
        outcomes = Counter(
            call.outcome
            for call in await dp.calls()
            if call.operation == "ReportTaskProgress" and start <= call.received_at <= end
        )
    lost = {task_id for task_id, status in statuses.items() if status != "RUNNING"}
    gaps = answers.gaps(task_ids, start, end)
    return Outcome(
        lost=len(lost),
        verdicts=dict(Counter(stopped.values())),
        unnoticed=len(lost - set(stopped)),
        answered=answers.count(start, end),
        seconds=end - start,
        cpu=cpu,
        errors=dict(errors),
        events=dict(events),
        outcomes=dict(outcomes),
        gap_p50=percentile(gaps, 0.5),
        gap_max=max(gaps),
        in_flight=statistics.fmean(s[0] for s in samples) if samples else 0.0,
        capacity=statistics.fmean(s[1] for s in samples) if samples else 0.0,
        waiting=statistics.fmean(s[2] for s in samples) if samples else 0.0,
    )


async def spawn(run: Run) -> Outcome:
    """Run ``run`` in a child process and read its outcome."""
    command = [sys.executable, __file__, "--one", json.dumps(dataclasses.asdict(run))]
    done = await anyio.run_process(command, stderr=subprocess.DEVNULL)
    return Outcome(**json.loads(done.stdout))


async def at_once(runs: list[Run]) -> list[Outcome]:
    """Run each of ``runs`` in a process of its own, all at the same time."""
    outcomes: dict[int, Outcome] = {}

    async def spawn_into(index: int, run: Run) -> None:
        outcomes[index] = await spawn(run)

    async with anyio.create_task_group() as tg:
        for index, run in enumerate(runs):
            tg.start_soon(spawn_into, index, run)
    return [outcomes[index] for index in range(len(runs))]


def lost_cell(side: str, outcomes: list[Outcome]) -> str:
    """Leases the emulator took back; for Heartbeat, with what it said itself."""
    lost = sum(o.lost for o in outcomes)
    if side != HEARTBEAT:
        return f"{lost}"
    verdicts: Counter[str] = Counter()
    for outcome in outcomes:
        verdicts.update(outcome.verdicts)
    said = ", ".join(f"{reason}: {n}" for reason, n in sorted(verdicts.items())) or "none"
    unnoticed = sum(o.unnoticed for o in outcomes)
    return f"{lost} (stopped: {said}" + (f"; {unnoticed} unnoticed)" if unnoticed else ")")


# -- the scenarios ---------------------------------------------------------------------------


def slow(args: argparse.Namespace) -> None:
    interval, lease, tasks = args.interval, args.lease, args.tasks
    print(
        f"{tasks} tasks, interval {interval:g} s, lease {lease:g} s, pool {args.pool}, runs of "
        f"{args.seconds:g} s; both sides at once, each against its own emulator\n"
    )
    print(
        "| answers late | leases lost: Heartbeat | leases lost: naive loop "
        "| reports answered / s: Heartbeat, naive | calls the emulator received: Heartbeat, naive |"
    )
    print("| --- | --- | --- | --- | --- |")
    for lateness, share in ((1.5, 1.0), (1.2, 0.2), (1.2, 0.35), (1.2, 0.5)):
        runs = [
            Run(
                side, tasks, interval, lease, args.seconds, pool=args.pool,
                delay=lateness * interval, probability=share, seed=args.seed,
            )
            for side in SIDES
        ]  # fmt: skip
        ours, theirs = asyncio.run(at_once(runs))
        which = "every answer" if share == 1 else f"{share:.0%} of answers"
        print(
            f"| {which}, {lateness:g} x interval ({lateness * interval:g} s) "
            f"| {lost_cell(HEARTBEAT, [ours])} | {lost_cell(NAIVE, [theirs])} "
            f"| {ours.rate:.1f}, {theirs.rate:.1f} "
            f"| {sum(ours.outcomes.values())}, {sum(theirs.outcomes.values())} |",
            flush=True,
        )


def throttled(args: argparse.Namespace) -> None:
    scale, tasks = args.scale, args.tasks
    interval, lease = args.interval / scale, args.lease / scale
    need = tasks / lease
    print(
        f"{tasks} tasks, interval {args.interval:g} s, lease {args.lease:g} s, against the "
        f"service's token bucket (10 reports/s, burst 100), sped up {scale:g} x: interval "
        f"{interval:g} s, lease {lease:g} s, burst 100, need {need:g} reports/s, asked "
        f"{tasks / interval:g}/s; pool {args.pool}, runs of {args.seconds:g} s "
        f"({args.seconds / lease:g} leases); both sides at once, each against its own emulator\n"
    )
    print(
        "| capacity ÷ need | side | leases lost | throttled ÷ answered (emulator) "
        "| gap between a task's answered reports, p50 / max | reports answered / s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for ratio in (2.5, 1.5, 1.25):
        rate = ratio * need
        runs = [Run(side, tasks, interval, lease, args.seconds, pool=args.pool, rate=rate)
                for side in SIDES]  # fmt: skip
        for side, outcome in zip(SIDES, asyncio.run(at_once(runs)), strict=True):
            throttles = outcome.outcomes.get(THROTTLED, 0)
            took = outcome.outcomes.get("answered", 0)
            refused = outcome.errors.get("TaskNotFoundException", 0)
            note = f", {refused:,} of them TaskNotFoundException" if refused else ""
            print(
                f"| {ratio:g} ({rate:g}/s) | {side} | {lost_cell(side, [outcome])} "
                f"| {throttles / max(took, 1):.2f} ({throttles:,} / {took:,}{note}) "
                f"| {outcome.gap_p50:.2f} / {outcome.gap_max:.2f} s | {outcome.rate:.1f} |",
                flush=True,
            )


def cpu(args: argparse.Namespace) -> None:
    tasks, interval, lease = args.tasks, args.interval, args.lease
    print(
        f"{tasks} tasks, interval {interval:g} s (asking {tasks / interval:,.0f} reports/s), "
        f"lease {lease:g} s, runs of {args.seconds:g} s, {args.rounds} per side and client "
        f"(medians); one run at a time, the sides alternating; Heartbeat's reporter "
        f"sampled every 0.1 s (means)\n"
    )
    print(
        "| pool | client | answered / s: Heartbeat | answered / s: naive loop "
        "| Heartbeat ÷ naive | client CPU per report: Heartbeat, naive "
        "| Heartbeat's calls in flight / limit / waiting "
        "| leases lost: Heartbeat | leases lost: naive loop |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for pool in args.pools or [10, 100, tasks]:
        for warm in (False, True):
            results: dict[str, list[Outcome]] = {side: [] for side in SIDES}
            for _ in range(args.rounds):
                for side in SIDES:
                    run = Run(side, tasks, interval, lease, args.seconds, pool=pool, warm=warm)
                    results[side].append(asyncio.run(spawn(run)))
            rate = {side: statistics.median(o.rate for o in results[side]) for side in SIDES}
            us = {
                side: statistics.median(o.cpu_per_report_us for o in results[side])
                for side in SIDES
            }
            layer = {
                key: statistics.median(getattr(o, key) for o in results[HEARTBEAT])
                for key in ("in_flight", "capacity", "waiting")
            }
            print(
                f"| {pool} | {'warm' if warm else 'fresh'} | {rate[HEARTBEAT]:,.0f} "
                f"| {rate[NAIVE]:,.0f} | {rate[HEARTBEAT] / rate[NAIVE]:.2f} "
                f"| {us[HEARTBEAT]:,.0f}, {us[NAIVE]:,.0f} µs "
                f"| {layer['in_flight']:.1f} / {layer['capacity']:.1f} / {layer['waiting']:.0f} "
                f"| {lost_cell(HEARTBEAT, results[HEARTBEAT])} "
                f"| {lost_cell(NAIVE, results[NAIVE])} |",
                flush=True,
            )


SCENARIOS: dict[str, Callable[[argparse.Namespace], None]] = {
    "slow": slow,
    "throttled": throttled,
    "cpu": cpu,
}
DEFAULTS: dict[str, dict[str, float]] = {
    "slow": {"tasks": 20, "interval": 0.6, "lease": 3.0, "seconds": 15.0},
    "throttled": {"tasks": 100, "interval": 4.0, "lease": 25.0, "seconds": 25.0},
    "cpu": {"tasks": 400, "interval": 0.1, "lease": 10.0, "seconds": 12.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", choices=SCENARIOS)
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--interval", type=float, help="seconds between reports")
    parser.add_argument("--lease", type=float, help="lease_timeout, and the emulator's")
    parser.add_argument("--seconds", type=float, help="the length of each run")
    parser.add_argument("--pool", type=int, default=10, help="max_pool_connections")
    parser.add_argument("--pools", type=int, nargs="+", help="cpu: the pools (10 100 N)")
    parser.add_argument("--scale", type=float, default=5.0, help="throttled: time sped up")
    parser.add_argument("--rounds", type=int, default=1, help="cpu: runs per side and client")
    parser.add_argument("--seed", type=int, default=1, help="slow: the emulators' seed")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(dataclasses.asdict(asyncio.run(one(Run(**json.loads(args.one)))))))
        return
    if args.scenario is None:
        parser.error("name a scenario: " + ", ".join(SCENARIOS))
    for key, value in DEFAULTS[args.scenario].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    SCENARIOS[args.scenario](args)


if __name__ == "__main__":
    main()
