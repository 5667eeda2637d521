"""The service's error answers."""

from __future__ import annotations


class ServiceError(Exception):
    """An answer in the service's error shape: ``{"__type": code, "message": message}``.

    The local Data Pipeline raises it inside its handlers and answers with it; clients see a
    botocore ``ClientError`` with that code.

    Args:
        code: The error code, such as ``"TaskNotFoundException"``.
        message: The message.
        status: The HTTP status.

    Attributes:
        code: The error code.
        message: The message.
        status: The HTTP status.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.code} (HTTP {self.status}): {self.message}"
