"""The library's clock is anyio's, on every backend and under a mock clock."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio.testing

from asyncheartbeat._clock import current_time


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_library_clock_reads_what_anyio_reads(anyio_backend: str) -> None:
    """On asyncio and on trio, a reading falls between two readings of anyio's clock."""
    before = anyio.current_time()
    reading = current_time()
    after = anyio.current_time()
    assert before <= reading <= after


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend",
    [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})],
)
async def test_the_library_clock_follows_a_mock_clock(anyio_backend: tuple[str, Any]) -> None:
    """Under trio's MockClock the clock is virtual: a 1,000 s sleep moves it by 1,000 s."""
    start = current_time()
    await anyio.sleep(1000)
    assert current_time() - start == pytest.approx(1000)
    assert current_time() == anyio.current_time()
