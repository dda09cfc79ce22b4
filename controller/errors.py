"""Errors choose the retry (STYLE.md): retryable after a delay, permanent until the spec changes, and
anything else retried with per-key exponential backoff."""

from __future__ import annotations


class PermanentError(Exception):
    """The spec cannot work as written: shown in status as ``failed``, not retried until the spec changes."""


class RetryLater(Exception):
    """A known wait (a dependency not there yet): retried after ``delay`` seconds, without backoff growth."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay
