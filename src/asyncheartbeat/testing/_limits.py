"""The service's per-account call limits: a token bucket per operation.

Each operation may be called at a sustained rate after a burst; a call beyond both is
answered ThrottlingException. The figures are not in botocore's model: they come from the
AWS Data Pipeline developer guide, "AWS Data Pipeline Limits" (web service call limits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeAlias

from ._validation import operation_names

#: Calls each operation may make at once, above its sustained rate.
DOCUMENTED_BURST = 100


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """An operation's limit: ``rate`` calls a second, sustained, after a burst of ``burst``.

    ``LocalDataPipeline(rate_limits={"ReportTaskProgress": RateLimit(rate=20, burst=20)})``.

    Attributes:
        rate: Calls a second, sustained; finite and above 0.
        burst: Calls allowed at once on top of the rate (the service's is 100); at least 1.

    Raises:
        TypeError: ``rate`` is not a number, or ``burst`` not a whole number.
        ValueError: Either is out of range.
    """

    rate: float
    burst: int = DOCUMENTED_BURST

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise TypeError(
                f"rate must be a number of calls per second, "
                f"not {type(self.rate).__name__} {self.rate!r}"
            )
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(
                f"rate must be a finite number of calls per second above 0, not {self.rate!r}"
            )
        if isinstance(self.burst, bool) or not isinstance(self.burst, int):
            raise TypeError(
                f"burst must be a whole number of calls, "
                f"not {type(self.burst).__name__} {self.burst!r}"
            )
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 call, not {self.burst!r}")


# AWS Data Pipeline developer guide, "AWS Data Pipeline Limits": web service call limits
# per account, each with a burst of 100 calls.
DOCUMENTED_RATE_LIMITS: Mapping[str, RateLimit] = MappingProxyType(
    {
        "ReportTaskProgress": RateLimit(10),
        "SetTaskStatus": RateLimit(10),
        "PollForTask": RateLimit(2),
        "ReportTaskRunnerHeartbeat": RateLimit(1),
        "DescribeObjects": RateLimit(2),
        "QueryObjects": RateLimit(2),
    }
)
#: Every operation the table does not name.
DOCUMENTED_DEFAULT_RATE_LIMIT = RateLimit(1)

#: What `LocalDataPipeline(rate_limits=...)` takes: None or False for no limits, True for
#: the documented ones, or ``{operation: RateLimit}`` to limit exactly those operations.
RateLimits: TypeAlias = bool | Mapping[str, RateLimit] | None


def documented_rate_limits() -> dict[str, RateLimit]:
    """The documented limit of every operation of the service."""
    return {
        operation: DOCUMENTED_RATE_LIMITS.get(operation, DOCUMENTED_DEFAULT_RATE_LIMIT)
        for operation in sorted(operation_names())
    }


def check_operations(names: Iterable[str]) -> None:
    """Refuse names that are not operations of the service, listing those that are."""
    unknown = sorted(set(names) - operation_names(), key=repr)
    if unknown:
        raise ValueError(
            f"unknown operation{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; "
            f"the operations are: {', '.join(sorted(operation_names()))}"
        )


def resolve_rate_limits(rate_limits: RateLimits) -> dict[str, RateLimit]:
    """The limit of each limited operation; refuse unknown operations and values that are
    not a `RateLimit`."""
    if rate_limits is None or rate_limits is False:
        return {}
    if rate_limits is True:
        return documented_rate_limits()
    if not isinstance(rate_limits, Mapping):
        raise TypeError(
            f"rate_limits must be None, a bool or a mapping of operation names to RateLimit, "
            f"not {type(rate_limits).__name__}"
        )
    check_operations(rate_limits)
    for operation, limit in rate_limits.items():
        if not isinstance(limit, RateLimit):
            raise TypeError(
                f"the limit of {operation} must be a RateLimit, not {type(limit).__name__} "
                f"{limit!r}"
            )
    return dict(rate_limits)


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """Token buckets, one per limited operation, shared by every caller (one account).

    The caller says what time it is, so that the buckets follow whatever clock it runs on,
    virtual ones included. A bucket starts full; a refused call takes no token.
    """

    # Elapsed times in floating point may leave a due token short by a rounding error.
    _ROUNDING = 1e-9

    def __init__(self, limits: Mapping[str, RateLimit]) -> None:
        self.limits: Mapping[str, RateLimit] = MappingProxyType(dict(limits))
        self._buckets: dict[str, _Bucket] = {}

    def allows(self, operation: str, now: float) -> bool:
        """Whether ``operation`` may be called at ``now``; if so, the call takes a token."""
        limit = self.limits.get(operation)
        if limit is None:
            return True
        bucket = self._buckets.get(operation)
        if bucket is None:
            bucket = self._buckets[operation] = _Bucket(float(limit.burst), now)
        elapsed = max(0.0, now - bucket.updated_at)
        bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate)
        bucket.updated_at = max(bucket.updated_at, now)
        if bucket.tokens < 1 - self._ROUNDING:
            return False
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return True

    def next_token_in(self, operation: str, now: float) -> float:
        """Seconds from ``now`` until ``operation``'s bucket holds a whole token again: what a
        throttled answer's ``x-amz-retry-after`` says (0 for an operation not limited)."""
        limit = self.limits.get(operation)
        bucket = self._buckets.get(operation)
        if limit is None or bucket is None:
            return 0.0
        tokens = min(
            float(limit.burst), bucket.tokens + max(0.0, now - bucket.updated_at) * limit.rate
        )
        return max(0.0, (1 - tokens) / limit.rate)
