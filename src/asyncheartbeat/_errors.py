"""Why a heartbeat stopped the work, and the exceptions that say so."""

from __future__ import annotations

import enum


class CancelReason(enum.Enum):
    """Why the heartbeat cancelled the work it guards.

    Every reason but ``STALLED`` comes from the service: the task is no longer yours (or,
    for ``REJECTED``, your calls are refused), so do not call SetTaskStatus. ``STALLED`` is
    the heartbeat's own decision about a task that is still yours: report it FAILED, so
    that the service retries it.

    Each value's text (``reason.value``) is what `TaskStopped`'s message shows in brackets.
    What to do after each: [the table of cancel reasons][cancel-reasons].

    [cancel-reasons]: ../timing-and-reasons.md#cancel-reasons-and-what-to-do-next

    Attributes:
        REQUESTED: A report answered ``canceled: true``: someone cancelled the task or its
            pipeline.
        TASK_NOT_FOUND: The service no longer knows the task: it was reassigned, finished
            or expired.
        PIPELINE_NOT_FOUND: The task's pipeline does not exist.
        PIPELINE_DELETED: The task's pipeline was deleted.
        LEASE_LOST: No report succeeded for ``lease_timeout`` seconds: the task was most
            likely reassigned.
        REJECTED: The service refused the report itself (bad request, credentials,
            permissions).
        STALLED: The body showed no progress for ``stall_timeout`` seconds. The task is
            still yours: report it FAILED (`TaskRunner` does), so that the service retries
            it.
    """

    #: A report answered ``canceled: true``: someone cancelled the task or its pipeline.
    REQUESTED = "requested"
    #: The service no longer knows the task: it was reassigned, finished or expired.
    TASK_NOT_FOUND = "task-not-found"
    #: The task's pipeline does not exist.
    PIPELINE_NOT_FOUND = "pipeline-not-found"
    #: The task's pipeline was deleted.
    PIPELINE_DELETED = "pipeline-deleted"
    #: No report succeeded for ``lease_timeout`` seconds: the task was most likely reassigned.
    LEASE_LOST = "lease-lost"
    #: The service refused the report itself (bad request, credentials, permissions).
    REJECTED = "rejected"
    #: The body showed no progress for ``stall_timeout`` seconds. The task is still yours:
    #: report it FAILED (`TaskRunner` does), so that the service retries it.
    STALLED = "stalled"


def stalled_detail(stall_timeout: float) -> str:
    """What a ``STALLED`` verdict says, in `TaskStopped` and in the task's ``errorMessage``."""
    return f"no progress for {stall_timeout:g} s"


class HeartbeatError(Exception):
    """Base class of the errors asyncheartbeat raises.

    Raised as itself for a mistake in the program that no retry can mend (a closed or sync
    client, aiobotocore on trio, a TypeError from a call), and by `TaskRunner.run` when
    polling was refused for good.
    """


class TaskStopped(HeartbeatError):
    """The heartbeat stopped the work: the task is no longer ours to run, or it stalled.

    An ordinary exception, not a cancellation exception, so that a worker loop can catch it
    and move on to its next task. ``reason`` says why; for ``REQUESTED``, ``TASK_NOT_FOUND``,
    ``PIPELINE_*`` and ``LEASE_LOST`` the caller should not call SetTaskStatus. ``STALLED``
    is the exception: the body made no progress for ``stall_timeout`` seconds, the task is
    still the caller's, and the caller should report it FAILED so that the service retries
    it (as `TaskRunner` does).

    The client's own error, if there was one, is its ``__cause__``.

    Its text reads ``task '<task id>' cancelled (<reason>): <detail>``.

    Args:
        task_id: The task whose work was stopped.
        reason: Why.
        detail: The service's error code and message, or what went wrong.

    Attributes:
        task_id: The task whose work was stopped.
        reason: Why, as a `CancelReason`.
        detail: The service's error code and message, or what went wrong; may be empty.
    """

    def __init__(self, task_id: str, reason: CancelReason, detail: str = "") -> None:
        # The arguments go to Exception so that the error pickles and copies intact.
        super().__init__(task_id, reason, detail)
        self.task_id = task_id
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        text = f"task {self.task_id!r} cancelled ({self.reason.value})"
        return f"{text}: {self.detail}" if self.detail else text
