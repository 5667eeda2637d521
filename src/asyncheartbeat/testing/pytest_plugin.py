"""pytest fixtures for a local Data Pipeline, registered by installing asyncheartbeat.

- ``local_datapipeline``: a running `LocalDataPipeline` (options from the
  ``@pytest.mark.local_datapipeline(report_timeout=1, ...)`` marker);
- ``datapipeline_client``: an aiobotocore client aimed at it.

The fixtures are asyncio fixtures and need pytest-asyncio; without it they are not offered.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ._server import LocalDataPipeline

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures need it; nothing else does
    HAVE_PYTEST_ASYNCIO = False
else:
    HAVE_PYTEST_ASYNCIO = True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "local_datapipeline(**options): options for the local_datapipeline fixture "
        "(ack_timeout, report_timeout, poll_timeout, seed, record_calls, rate_limits)",
    )


@functools.cache
def botocore_session() -> Any:
    """One aiobotocore session for the whole test run.

    A client made from a fresh session loads botocore's JSON models again (~100 ms); from
    a session that already has them, in ~3 ms. Clients, not sessions, hold connections.
    """
    from aiobotocore.session import get_session  # noqa: PLC0415 - only where a client is made

    return get_session()


def client_config(poll_timeout: float) -> Any:
    """A client config for tests: one HTTP call per attempt, reads that outlast a long poll."""
    from aiobotocore.config import AioConfig  # noqa: PLC0415 - only where a client is made

    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=poll_timeout + 10,
    )


if HAVE_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def local_datapipeline(
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[LocalDataPipeline]:
        """A local Data Pipeline on loopback, for this test only."""
        marker = request.node.get_closest_marker("local_datapipeline")
        options = marker.kwargs if marker else {}
        async with LocalDataPipeline(**options) as dp:
            yield dp

    @pytest_asyncio.fixture
    async def datapipeline_client(local_datapipeline: LocalDataPipeline) -> AsyncIterator[Any]:
        """An aiobotocore DataPipeline client aimed at ``local_datapipeline``."""
        async with botocore_session().create_client(
            "datapipeline",
            region_name="us-east-1",
            endpoint_url=local_datapipeline.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # the emulator checks no secret
            config=client_config(local_datapipeline.service.timeouts.poll),
        ) as client:
            yield client
