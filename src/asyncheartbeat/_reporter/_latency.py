"""How long answers take, and so when an unanswered call deserves a second attempt."""

from __future__ import annotations

#: Weights of the smoothed latency and its deviation, as TCP's retransmission timer (RFC 6298).
ALPHA = 1 / 8
BETA = 1 / 4
#: How many deviations above the smoothed latency an answer may come before a hedge.
DEVIATIONS = 4
#: ...and at least this share of the smoothed latency above it.
SLOWER_SHARE = 0.5


class Latency:
    """A smoothed latency and its deviation, from answered calls."""

    __slots__ = ("deviation", "smoothed")

    def __init__(self) -> None:
        self.smoothed: float | None = None
        self.deviation = 0.0

    def add(self, seconds: float) -> None:
        if self.smoothed is None:
            self.smoothed, self.deviation = seconds, seconds / 2
            return
        self.deviation += BETA * (abs(self.smoothed - seconds) - self.deviation)
        self.smoothed += ALPHA * (seconds - self.smoothed)

    def overdue_after(self, floor: float) -> float:
        """When a call still unanswered is overdue: at least ``floor``, later while answers
        are slow or vary."""
        if self.smoothed is None:
            return floor
        # Answers that all take about as long leave no deviation to go by: a call is not
        # overdue before it has taken half as long again as they do.
        margin = max(DEVIATIONS * self.deviation, SLOWER_SHARE * self.smoothed)
        return max(floor, self.smoothed + margin)
