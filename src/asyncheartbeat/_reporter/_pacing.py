"""Pacing by need: how far apart a heartbeat's regular reports go while the service throttles.

The lease is the service's hard rule; the interval (60 s by default) is its recommendation.
A fleet of clients shares one account's limit (ReportTaskProgress: 10/s), and each asks once
per interval per task: at the 60 s cadence, six times what five-minute leases need. When the
account cannot answer that, asking anyway only buys throttled answers, and the limit goes
to whoever asks first, not to the leases about to run out.

So while a client is throttled, its regular reports stretch, all by one factor: what its
heartbeats ask for together, over the rate it has learned it may send
(`OperationRate`). Never beyond `LEASE_MARGIN` reports per lease: the last `1 - 1 /
LEASE_MARGIN` of every lease stays for the turn, the answer and a retry. The client's rate
never falls below that need either (its floor), so a client's own pacing never costs it a
lease; and as the rate grows back, the reports close in on the interval again.

Validity counts from the send time of the last answered report, whatever the spacing, so a
report sent within the lease keeps it; a stretched schedule is as safe as the interval's.
"""

from __future__ import annotations

from asyncheartbeat._timing import Timing

#: Reports per lease, at the least, while paced: one every ``lease / LEASE_MARGIN``. The
#: throttled client's rate never falls below this many times what keeps every lease (one
#: report per lease each), so the paced reports always fit in it. Small, so that a fleet
#: fits in an account with capacity ÷ need down to about this figure (1.25 in the goals);
#: above 1, so that a report answered late in its turn still lands inside the lease.
LEASE_MARGIN = 1.2

#: Paced reports ask for this much less than the client's rate (once it holds them back): a
#: schedule that filled the rate exactly would keep a queue, and its reports would go late.
PACING_HEADROOM = 1.1


def paced_interval(timing: Timing, stretch: float) -> float:
    """The spacing of a heartbeat's regular reports when its client's reports are ``stretch``
    times more than its rate allows (1 when not throttled): the interval stretched, but never
    past ``lease / LEASE_MARGIN`` nor below the interval."""
    if stretch <= 1:
        return timing.interval
    return max(timing.interval, min(timing.interval * stretch, timing.lease_timeout / LEASE_MARGIN))
