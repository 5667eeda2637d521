from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig

from asyncheartbeat.testing import EmulatorProcess, LocalDataPipeline, pytest_plugin

# Distinctive so that a test can prove they never reach a log line.
ACCESS_KEY = "AKIATESTACCESSKEY42"
SECRET_KEY = "test-secret-key-must-never-be-logged"


def client_config(**overrides: Any) -> AioConfig:
    """The plugin's test config (one HTTP call per attempt), with ``overrides``."""
    config: AioConfig = pytest_plugin.client_config(poll_timeout=90).merge(AioConfig(**overrides))
    return config


@pytest.fixture
def dp(local_datapipeline: LocalDataPipeline) -> LocalDataPipeline:
    """The plugin's local Data Pipeline, under a short name."""
    return local_datapipeline


def make_client(dp: LocalDataPipeline | EmulatorProcess, config: AioConfig | None = None) -> Any:
    """An aiobotocore client for ``dp`` (an async context manager)."""
    return pytest_plugin.botocore_session().create_client(
        "datapipeline",
        region_name="us-east-1",
        endpoint_url=dp.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config or client_config(),
    )


@pytest_asyncio.fixture
async def client(dp: LocalDataPipeline) -> AsyncIterator[Any]:
    async with make_client(dp) as datapipeline:
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
