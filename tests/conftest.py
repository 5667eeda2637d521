from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from asyncheartbeat.testing import LocalDataPipeline

# Distinctive so that a test can prove they never reach a log line.
ACCESS_KEY = "AKIATESTACCESSKEY42"
SECRET_KEY = "test-secret-key-must-never-be-logged"


def client_config(**overrides: Any) -> AioConfig:
    """One HTTP call per attempt, so tests count calls; the heartbeat does the retrying."""
    options: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": 1},
        "connect_timeout": 2,
        "read_timeout": 5,
    }
    return AioConfig(**(options | overrides))


@pytest_asyncio.fixture
async def dp() -> AsyncIterator[LocalDataPipeline]:
    async with LocalDataPipeline() as server:
        yield server


def datapipeline_client(dp: LocalDataPipeline, config: AioConfig | None = None) -> Any:
    """An aiobotocore client for ``dp`` (an async context manager)."""
    return get_session().create_client(
        "datapipeline",
        region_name="us-east-1",
        endpoint_url=dp.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config or client_config(),
    )


@pytest_asyncio.fixture
async def client(dp: LocalDataPipeline) -> AsyncIterator[Any]:
    async with datapipeline_client(dp) as datapipeline:
        yield datapipeline


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test after which asyncio logged an error: an unretrieved task exception, an
    unclosed session or transport."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield
    errors = [
        r for r in caplog.get_records("call") if r.name == "asyncio" and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]
