"""The client every benchmark uses: aiobotocore aimed at an emulator, one call per attempt."""

from __future__ import annotations

from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session


def bench_client(url: str, connections: int) -> Any:
    """An aiobotocore DataPipeline client for ``url`` (an async context manager)."""
    return get_session().create_client(
        "datapipeline",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=AioConfig(retries={"total_max_attempts": 1}, max_pool_connections=connections),
    )
