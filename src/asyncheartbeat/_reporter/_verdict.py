"""The verdict: what one report's outcome means for the work, decided in one place."""

from __future__ import annotations

from asyncheartbeat._errors import CancelReason
from asyncheartbeat._service import Answered, Final, Outcome

from ._lease import Lease, Stage


def verdict(outcome: Outcome, lease: Lease, acknowledge_within: float) -> Final | None:
    """None to go on; else why the work ends.

    An answer ends it if the service said so (``stop``); a final failure ends it for its
    reason; a transient one ends it only because the report's deadline passed with it
    (the lease, or the acknowledgement's limit), so the lease is lost.
    """
    if isinstance(outcome, Answered):
        return outcome.stop
    if isinstance(outcome, Final):
        return outcome
    if lease.stage is Stage.ACKNOWLEDGING:
        limit = min(lease.timing.lease_timeout, acknowledge_within)
        lost = f"the task was not acknowledged within {limit:g} s"
    else:
        lost = f"no report succeeded for {lease.timing.lease_timeout:g} s"
    return Final(
        CancelReason.LEASE_LOST, f"{lost}; last failure: {outcome.description}", outcome.error
    )
