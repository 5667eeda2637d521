"""pytest fixtures for a local Data Pipeline, registered by installing asyncheartbeat.

- ``local_datapipeline``: a running `LocalDataPipeline` (options from the
  ``@pytest.mark.local_datapipeline(report_timeout=1, ...)`` marker);
- ``datapipeline_client``: an aiobotocore client aimed at it.

The fixtures are asyncio fixtures and need pytest-asyncio (``pip install
'asyncheartbeat[testing]'``); without it they exist and fail, saying so.

pytest loads this module in every run where asyncheartbeat is installed, so it imports
nothing heavy (aiohttp, botocore) until a fixture is used.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

#: What a test run without pytest-asyncio is told to install.
INSTALL_HINT = "pip install 'asyncheartbeat[testing]'"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "local_datapipeline(**options): options for the local_datapipeline fixture "
        "(ack_timeout, report_timeout, poll_timeout, seed, record_calls, rate_limits)",
    )
    # Asked of pytest, not of the import system: `-p no:asyncio` leaves pytest-asyncio out
    # even when it is installed.
    if _pytest_asyncio_loaded(config):
        from . import _fixtures  # noqa: PLC0415 - it imports pytest_asyncio

        fixtures: object = _fixtures
    else:
        fixtures = _MissingPytestAsyncio()
    config.pluginmanager.register(fixtures, "asyncheartbeat-fixtures")


def _pytest_asyncio_loaded(config: pytest.Config) -> bool:
    # Its entry point names it "asyncio"; `-p pytest_asyncio.plugin` or a conftest's
    # `pytest_plugins` register it under its module's name.
    manager = config.pluginmanager
    return manager.has_plugin("asyncio") or any(
        getattr(plugin, "__name__", "").startswith("pytest_asyncio")
        for plugin in manager.get_plugins()
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
    """The library's client config (`asyncheartbeat.client_config`), with reads that
    outlast the local Data Pipeline's long poll rather than the service's.

    Args:
        poll_timeout: The local Data Pipeline's longest PollForTask wait, in seconds.
    """
    from asyncheartbeat._datapipeline import client_config  # noqa: PLC0415 - on first use

    return client_config(read_timeout=poll_timeout + 10)


class _MissingPytestAsyncio:
    """The fixtures' names, for a run without pytest-asyncio: each fails saying why."""

    @pytest.fixture
    def local_datapipeline(self) -> None:
        """Fails: this fixture needs pytest-asyncio."""
        _fail_without_pytest_asyncio("local_datapipeline")

    @pytest.fixture
    def datapipeline_client(self) -> None:
        """Fails: this fixture needs pytest-asyncio."""
        _fail_without_pytest_asyncio("datapipeline_client")


def _fail_without_pytest_asyncio(name: str) -> None:
    pytest.fail(
        f"the {name} fixture (asyncheartbeat) is an asyncio fixture and needs the "
        f"pytest-asyncio plugin, which is not installed or not loaded (-p no:asyncio?): "
        f"{INSTALL_HINT}",
        pytrace=False,
    )
