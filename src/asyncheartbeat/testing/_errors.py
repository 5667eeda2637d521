"""The service's error answers."""

from __future__ import annotations


class ServiceError(Exception):
    """An answer in the service's error shape: ``{"__type": code, "message": message}``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.code} (HTTP {self.status}): {self.message}"
