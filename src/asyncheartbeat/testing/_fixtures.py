"""The pytest plugin's fixtures, registered by it when pytest-asyncio is loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from .pytest_plugin import botocore_session, client_config

if TYPE_CHECKING:
    from ._emulator.front import LocalDataPipeline


@pytest_asyncio.fixture
async def local_datapipeline(request: pytest.FixtureRequest) -> AsyncIterator[LocalDataPipeline]:
    """A local Data Pipeline on loopback, for this test only."""
    from ._emulator.front import LocalDataPipeline  # noqa: PLC0415 - aiohttp only once a test uses it

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
