"""Metrics: Prometheus scraped over HTTP and OpenTelemetry read through the SDK, while the
local Data Pipeline cancels, throttles and takes tasks away."""

from __future__ import annotations

import enum
import importlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import pytest_asyncio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from asyncheartbeat import (
    CancelReason,
    FailTask,
    Heartbeat,
    Reporter,
    Task,
    TaskEvent,
    TaskRunner,
    TaskStopped,
)
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.metrics import METRICS
from asyncheartbeat.metrics.opentelemetry import OpenTelemetryMetrics
from asyncheartbeat.metrics.prometheus import PrometheusMetrics, serve
from asyncheartbeat.testing import Fault, LocalDataPipeline

from .conftest import EventLog, TaskEvents, make_client

# Long polls and leases short enough for a test.
pytestmark = pytest.mark.local_datapipeline(poll_timeout=0.2, ack_timeout=5, report_timeout=3)

WORKER_GROUP = "fleet"
PAGE = Path(__file__).parent.parent / "docs" / "operating-a-fleet.md"
#: (metric name, sorted labels) → value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest_asyncio.fixture
async def client(dp: LocalDataPipeline) -> AsyncIterator[Any]:
    async with make_client(dp, TaskRunner.client_config()) as datapipeline:
        yield datapipeline


async def scrape_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str) -> Samples:
    return parse(await scrape_text(url))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


#: The tasks of the fleet's troubled minute, by their activity's command.
TROUBLES = ("finish", "fail", "cancel", "delete")


async def troubled_fleet(
    dp: LocalDataPipeline,
    client: Any,
    metrics: PrometheusMetrics | OpenTelemetryMetrics,
    while_finishing: Callable[[], Awaitable[None]] | None = None,
) -> list[TaskEvent]:
    """One runner, one task after another: one throttled twice and failed once on its way
    to FINISHED, one FAILED, one cancelled by the service, one whose pipeline is deleted.
    Returns the runner's task events."""
    for command in TROUBLES:
        dp.add_pipeline(worker_group=WORKER_GROUP, command=command, maximum_retries=0)

    async def handle(task: Task, hb: Heartbeat) -> None:
        assert task.activity is not None
        match task.activity.strings["command"]:
            case "finish":
                dp.inject(Fault.error("ThrottlingException"), task_id=task.task_id, times=2)
                await hb.beat()
                dp.inject(Fault.error("InternalServiceError"), task_id=task.task_id, times=1)
                await hb.beat()
                if while_finishing is not None:
                    await while_finishing()
            case "fail":
                raise FailTask("bad input")
            case "cancel":
                dp.cancel_task(task.task_id)
                await anyio.sleep_forever()
            case "delete":
                dp.delete_pipeline(task.pipeline_id)
                await anyio.sleep_forever()

    ended = TaskEvents()

    def on_event(event: TaskEvent) -> None:
        metrics(event)
        ended(event)

    # call_timeout well above the emulator's answers: no second attempt takes a fault.
    runner = TaskRunner(
        Reporter(client, hooks=[metrics]), worker_group=WORKER_GROUP, handler=handle,
        interval=0.1, lease_timeout=2, call_timeout=0.5, on_event=on_event,
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await ended.wait_for_ends(len(TROUBLES))
        runner.stop()
    return ended.ended()


@pytest.mark.asyncio
async def test_a_scrape_counts_reports_stops_leases_and_tasks_by_outcome(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Over HTTP, after a throttled, failed, cancelled and deleted task: each counter says
    exactly what happened, a lease is held while a task runs and not after, and no task id
    is a label."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with serve(registry) as url:
        held_while_running: list[float] = []

        async def look() -> None:
            held_while_running.append(value(await scrape(url), "asyncheartbeat_leases_held"))

        events = await troubled_fleet(dp, client, metrics, while_finishing=look)
        text = await scrape_text(url)
        samples = parse(text)
    assert not [e.task.task_id for e in events if e.task.task_id in text], "a task id as a label"
    assert sorted(e.kind for e in events) == ["cancelled", "cancelled", "failed", "finished"]
    assert held_while_running == [1]
    assert value(samples, "asyncheartbeat_leases_held") == 0
    stops = {r.value: value(samples, "asyncheartbeat_stops_total", reason=r.value)
             for r in CancelReason}  # fmt: skip
    assert stops == {r.value: 0 for r in CancelReason} | {"requested": 1, "pipeline-deleted": 1}
    tasks = {o: value(samples, "asyncheartbeat_tasks_total", outcome=o)
             for o in ("finished", "false", "failed", "cancelled", "unreported")}  # fmt: skip
    assert tasks == {"finished": 1, "false": 0, "failed": 1, "cancelled": 2, "unreported": 0}
    assert value(samples, "asyncheartbeat_task_duration_seconds_count", outcome="cancelled") == 2
    assert value(samples, "asyncheartbeat_reports_total", outcome="throttled") == 2
    # The 500, and the answer that the pipeline was deleted.
    assert value(samples, "asyncheartbeat_reports_total", outcome="failed") == 2
    answered = value(samples, "asyncheartbeat_reports_total", outcome="answered")
    assert answered >= 7  # four acknowledgements, two beats, one `canceled: true`
    assert value(samples, "asyncheartbeat_report_duration_seconds_count") == answered
    assert value(samples, "asyncheartbeat_report_lateness_seconds_count") >= 1
    # Every answered report of a lease held (not the acknowledgements) tells its margin.
    assert 1 <= value(samples, "asyncheartbeat_report_lease_left_ratio_count") <= answered - 4
    with anyio.fail_after(5), pytest.raises(aiohttp.ClientConnectionError):
        await scrape(url)  # the block ended: nothing listens any more


@pytest.mark.asyncio
async def test_a_stall_replaced_by_a_cancel_counts_one_stop(
    dp: LocalDataPipeline, client: Any
) -> None:
    """One heartbeat stalls and its final report finds the task cancelled (one stop:
    requested); another just stalls (one stop: stalled)."""
    registry = CollectorRegistry()
    layer = Reporter(client, hooks=[PrometheusMetrics(registry)])

    def stops(reason: str) -> float | None:
        return registry.get_sample_value("asyncheartbeat_stops_total", {"reason": reason})

    for cancel_during_cleanup in (True, False):
        task_id = dp.add_task()
        with anyio.fail_after(10), pytest.raises(TaskStopped):
            async with Heartbeat(layer, task_id, interval=5, lease_timeout=20, stall_timeout=0.2):
                try:
                    await anyio.sleep_forever()
                finally:
                    if cancel_during_cleanup:
                        dp.cancel_task(task_id)
    assert (stops("requested"), stops("stalled")) == (1, 1)


@pytest.mark.asyncio
async def test_leases_held_come_back_to_zero_by_every_way_out_of_a_heartbeat(
    dp: LocalDataPipeline, client: Any, events: EventLog
) -> None:
    """Body returns, raises, is cancelled from outside or by a verdict; the acknowledgement
    is refused or cancelled: the gauge is 1 inside each body and 0 after all, and every
    ACKNOWLEDGED has its ENDED."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    layer = Reporter(client, hooks=[metrics])
    inside: list[float | None] = []

    def held() -> float | None:
        return registry.get_sample_value("asyncheartbeat_leases_held")

    async def body(way_out: str, task_id: str, outside: anyio.CancelScope) -> None:
        inside.append(held())
        if way_out == "raises":
            raise KeyError(task_id)
        if way_out == "cancelled-from-outside":
            outside.cancel()
            await anyio.sleep_forever()
        if way_out == "verdict":
            dp.forget_task(task_id)
            await anyio.sleep_forever()

    for way_out in ("returns", "raises", "cancelled-from-outside", "verdict"):
        task_id = dp.add_task()
        with anyio.fail_after(10), anyio.CancelScope() as outside:
            try:
                async with Heartbeat(layer, task_id, interval=0.1, lease_timeout=2):
                    await body(way_out, task_id, outside)
            except (KeyError, TaskStopped):
                pass
    refused = dp.add_task()
    dp.inject(Fault.error("AccessDeniedException"), task_id=refused, times=None)
    with pytest.raises(TaskStopped):
        async with Heartbeat(layer, refused, interval=0.1, lease_timeout=2):
            pytest.fail("the body ran")
    hung = dp.add_task()
    dp.inject(Fault.hang(), task_id=hung, times=None)  # hedges too
    with anyio.move_on_after(0.3):
        async with Heartbeat(layer, hung, interval=0.1, lease_timeout=2):
            pytest.fail("the body ran")
    assert inside == [1, 1, 1, 1]
    assert held() == 0
    assert len(events.of(EventKind.ACKNOWLEDGED)) == len(events.of(EventKind.ENDED)) == 4
    reasons = [e.reason for e in events.of(EventKind.ENDED)]
    assert reasons == [None, None, None, CancelReason.TASK_NOT_FOUND]


@pytest.mark.asyncio
async def test_a_reason_added_later_is_counted_under_its_value() -> None:
    """The stop's label is the reason's value: a CancelReason this object never heard of
    (another branch adds one) is counted under it, beside the known ones."""

    class Later(enum.Enum):
        STALLED = "stalled"

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    stalled = Event(EventKind.VERDICT, "ReportTaskProgress", "t", reason=Later.STALLED)  # type: ignore[arg-type]
    metrics(stalled)
    metrics(stalled)
    assert registry.get_sample_value("asyncheartbeat_stops_total", {"reason": "stalled"}) == 2
    assert registry.get_sample_value("asyncheartbeat_stops_total", {"reason": "requested"}) == 0


@pytest.mark.asyncio
async def test_a_metrics_hook_that_raises_breaks_no_call(
    dp: LocalDataPipeline, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend failing on every event is logged; the heartbeat acknowledges, reports
    and ends as if it were not there, and the runner's task still finishes."""

    class Broken(PrometheusMetrics):
        def _record_report(self, outcome: str) -> None:
            raise RuntimeError("metrics backend down")

        def _record_task(self, outcome: str, seconds: float) -> None:
            raise RuntimeError("metrics backend down")

    broken = Broken(CollectorRegistry())
    task_id = dp.add_task()
    async with Heartbeat(Reporter(client, hooks=[broken]), task_id, interval=0.1,
                         lease_timeout=2) as hb:  # fmt: skip
        await hb.beat()
    assert hb.beats >= 2
    assert hb.cancel_reason is None
    failures = [r for r in caplog.records if getattr(r, "hb_event", None) == "hook_failed"]
    assert failures
    assert all(r.exc_info and str(r.exc_info[1]) == "metrics backend down" for r in failures)


@pytest.mark.asyncio
async def test_one_registry_takes_one_metrics_object_and_two_runners_count_apart(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A second PrometheusMetrics on a registry is refused, naming the fix; two runners in
    one process, each with a registry of its own, count only their own tasks."""
    first, second = CollectorRegistry(), CollectorRegistry()
    metrics = PrometheusMetrics(first)
    with pytest.raises(ValueError, match=r"share the PrometheusMetrics.*CollectorRegistry\(\)"):
        PrometheusMetrics(first)
    assert first.get_sample_value("asyncheartbeat_leases_held") == 0  # the first is untouched
    other = PrometheusMetrics(second)
    for group in ("blue", "green", "green"):
        dp.add_pipeline(worker_group=group)

    async def run(group: str, metrics: PrometheusMetrics, tasks: int) -> None:
        ended = TaskEvents()

        def on_event(event: TaskEvent) -> None:
            metrics(event)
            ended(event)

        runner = TaskRunner(
            Reporter(client, hooks=[metrics]), worker_group=group, handler=lambda t, hb: hb.beat(),
            interval=0.1, lease_timeout=2, on_event=on_event,
        )  # fmt: skip
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await ended.wait_for_ends(tasks)
            runner.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "blue", metrics, 1)
        tg.start_soon(run, "green", other, 2)
    finished = {"outcome": "finished"}
    assert first.get_sample_value("asyncheartbeat_tasks_total", finished) == 1
    assert second.get_sample_value("asyncheartbeat_tasks_total", finished) == 2
    metrics.unregister()
    assert first.get_sample_value("asyncheartbeat_tasks_total", finished) is None
    PrometheusMetrics(first)  # the place is free again


@pytest.mark.asyncio
async def test_opentelemetry_metrics_read_through_the_sdk(
    dp: LocalDataPipeline, client: Any
) -> None:
    """The same troubles through OpenTelemetry: dotted names, unit s, namespaced attributes,
    the same counts."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        await troubled_fleet(dp, client, OpenTelemetryMetrics(provider))
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    [scope] = [s for r in data.resource_metrics for s in r.scope_metrics
               if s.scope.name == "asyncheartbeat"]  # fmt: skip
    found = {metric.name: metric for metric in scope.metrics}
    assert set(found) == {spec.opentelemetry for spec in METRICS}

    def points(name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        return {tuple(sorted((p.attributes or {}).items())): p
                for p in found[name].data.data_points}  # fmt: skip

    stops = {key: p.value for key, p in points("asyncheartbeat.stops").items()}
    assert stops == {(("asyncheartbeat.stop.reason", "requested"),): 1,
                     (("asyncheartbeat.stop.reason", "pipeline-deleted"),): 1}  # fmt: skip
    tasks = {key[0][1]: p.value for key, p in points("asyncheartbeat.tasks").items()}
    assert tasks == {"finished": 1, "failed": 1, "cancelled": 2}
    reports = {key[0][1]: p.value for key, p in points("asyncheartbeat.reports").items()}
    assert (reports["throttled"], reports["failed"]) == (2, 2)
    [leases] = points("asyncheartbeat.leases.held").values()
    assert leases.value == 0
    assert found["asyncheartbeat.report.duration"].unit == "s"
    [duration] = points("asyncheartbeat.report.duration").values()
    assert duration.count == reports["answered"]
    assert duration.explicit_bounds[0] == 0.005


def test_importing_the_package_imports_no_metrics_backend() -> None:
    """asyncheartbeat and asyncheartbeat.metrics load neither prometheus_client nor
    opentelemetry (a fresh interpreter's modules say so)."""
    code = (
        "import sys, asyncheartbeat, asyncheartbeat.metrics, asyncheartbeat._cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "needs", "extra"),
    [("prometheus", "prometheus_client", "prometheus"),
     ("opentelemetry", "opentelemetry", "opentelemetry")],
)  # fmt: skip
def test_a_backend_without_its_extra_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, needs: str, extra: str
) -> None:
    """Imported without its package, a backend raises ImportError naming the extra."""
    name = f"asyncheartbeat.metrics.{module}"
    monkeypatch.delitem(sys.modules, name)
    for loaded in [m for m in sys.modules if m == needs or m.startswith(f"{needs}.")]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.setitem(sys.modules, needs, None)
    with pytest.raises(ImportError, match=re.escape(f"pip install 'asyncheartbeat[{extra}]'")):
        importlib.import_module(name)


# The operating page ------------------------------------------------------------------------

#: What the page's example shows: `curl -s .../metrics | grep asyncheartbeat_ | grep -v ...`
EXAMPLE_FILTER = re.compile(r"^(# (HELP|TYPE) )?asyncheartbeat_")
HIDDEN = ("_created", "_bucket")
#: Samples whose value differs from run to run: times, and how many reports there were.
VARYING = re.compile(
    r"asyncheartbeat_(report_(duration|lateness)_seconds_\w+|report_lease_left_ratio_\w+|"
    r"reports_total\{outcome=\"answered\"\}|task_duration_seconds_sum)"
)


def example_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines()
        if EXAMPLE_FILTER.match(line) and not any(hidden in line for hidden in HIDDEN)
    ]  # fmt: skip


def page_example() -> str:
    match = re.search(r"<!-- example-scrape -->\n```text\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert match, f"{PAGE.name} has no example scrape"
    return match.group(1)


@pytest.mark.asyncio
async def test_the_example_scrape_on_the_operating_page_is_true(
    dp: LocalDataPipeline, client: Any
) -> None:
    """The page's example is a scrape of the same troubles: the same series, the same
    counts where a run cannot change them; and every metric is explained on the page."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with serve(registry) as url:
        await troubled_fleet(dp, client, metrics)
        actual = "\n".join(example_lines(await scrape_text(url))) + "\n"
    shown = page_example()
    message = f"the page's example is out of date; a fresh one:\n{actual}"
    assert example_lines(shown) == shown.splitlines()  # the page shows what the filter leaves
    actual_samples, shown_samples = parse(actual), parse(shown)
    assert set(shown_samples) == set(actual_samples), message
    for line in shown.splitlines():
        if not VARYING.match(line):
            assert line in actual.splitlines(), message
    text = PAGE.read_text()
    for spec in METRICS:
        assert f"`{spec.prometheus}`" in text, spec.prometheus
        assert f"`{spec.opentelemetry}`" in text, spec.opentelemetry
