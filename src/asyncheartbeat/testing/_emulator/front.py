"""`LocalDataPipeline`: the front that puts the emulator's pieces together."""

from __future__ import annotations

from collections.abc import Mapping

from asyncheartbeat.testing._faults import FaultPlan
from asyncheartbeat.testing._limits import RateLimit, RateLimiter, resolve_rate_limits
from asyncheartbeat.testing._service import DataPipelineService

from .moves import Moves
from .options import Configured, Options
from .recording import Recording
from .wire import Wire


class LocalDataPipeline(Configured, Moves, Recording):
    """A Data Pipeline endpoint on loopback, in-process: ``async with LocalDataPipeline() as dp``.

    Point any client at ``dp.url`` with any credentials. Every duration of the service can be
    shortened so that tests run in seconds. `add_task` makes a task a runner holds in one
    call; `cancel_task`, `forget_task`, `delete_pipeline` and `set_terminate` act from the
    outside; `inject` scripts faults; `calls` records every request.

    ``rate_limits`` answers ThrottlingException beyond the service's call limits: None or
    False for none, True for the documented ones, or ``{operation: RateLimit(rate, burst)}``
    to limit exactly those operations. ``log_requests`` logs one INFO line per request on
    the ``asyncheartbeat.emulator`` logger (operation, status, latency, task id, also as
    ``hb_*`` attributes).

    ```python
    async with LocalDataPipeline(poll_timeout=1) as dp:
        pipeline_id = dp.add_pipeline(worker_group="wg", maximum_retries=1)
    ```

    What it emulates, rule by rule: [The local Data Pipeline](../local-data-pipeline.md).

    Args:
        host: The address to listen on.
        port: The port; 0 for a free one (read `url`).
        ack_timeout: Seconds a task handed out may wait for its acknowledgement before it
            goes to the next poller (the service's 2 minutes).
        report_timeout: Seconds an acknowledged task may go without a report, unless its
            activity's ``reportProgressTimeout`` says otherwise (the service's 5 minutes).
        poll_timeout: Seconds PollForTask holds a call when no task is ready, then answers
            ``{}`` (the service's 90 s). Shorten it so that empty polls come quickly.
        seed: Seeds the faults drawn by probability, so that a run repeats itself.
        record_calls: Keep every call in `calls`; False keeps memory flat in long load
            runs.
        rate_limits: The call limits to apply, as above.
        log_requests: Log one line per request, as above.

    Raises:
        ValueError: A duration that is not finite and above 0, or a rate limit for an
            unknown operation.
        TypeError: A duration that is not a number, or ``rate_limits`` is none of the
            forms above.

    Attributes:
        service: The emulated service's state (``service.timeouts`` are its `Timeouts`).
        faults: The faults injected, in the order they are consulted.
        calls: Every call received, as a `Call`, in order of arrival.
    """

    def _configure(self, options: Options) -> None:
        Recording.__init__(self, options.record_calls)
        self._options = options
        self._rate_limiter = RateLimiter(resolve_rate_limits(options.rate_limits))
        self.service = DataPipelineService(options.timeouts())
        self.faults = FaultPlan(options.seed)
        self._wire = Wire(self, log_requests=options.log_requests)
        self._url: str | None = None

    @property
    def rate_limits(self) -> Mapping[str, RateLimit]:
        """The limit of each limited operation; operations not named are not limited."""
        return self._rate_limiter.limits

    @property
    def url(self) -> str:
        """The endpoint URL, for ``endpoint_url=``."""
        if self._url is None:
            raise RuntimeError("the local Data Pipeline is not running: use `async with`")
        return self._url

    async def __aenter__(self) -> LocalDataPipeline:
        self._start_recording()
        self._url = await self._wire.start(self._options.host, self._options.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._wire.stop()
        self._url = None
