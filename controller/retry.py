"""Errors choose the retry (STYLE.md). ``retry_for`` maps what a reconcile raised to what the work queue does:

| raised                                          | requeue                                             |
|-------------------------------------------------|-----------------------------------------------------|
| a Kubernetes 409 (someone wrote first)          | at once: re-read and converge on the newer object   |
| a Kubernetes answer that names its own wait     | after that delay, without growing the backoff       |
| (``retryAfterSeconds``: 429, 5xx ServerTimeout) |                                                     |
| ``PermanentError``                              | never: the status shows it until the spec changes   |
| ``KubeUnreachable`` (no answer, or no fresh     | per-endpoint backoff, unlogged: the client logs the |
| view of the cluster), or the database away      | outage once and the workers wait for it to end      |
| (``core.db.outage.unavailable``)                |                                                     |
| anything else (5xx, timeouts, bugs)             | per-endpoint exponential backoff with jitter        |

Reconcile turns a ``PermanentError`` about the endpoint into its ``failed`` status itself and remembers the
generation that failed, so it is not retried until the spec changes; one that escapes is logged and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.errors import PermanentError
from core.db.outage import unavailable
from core.kube.client import KubeError, KubeUnreachable


class Requeue(StrEnum):
    NOW = "now"
    AFTER = "after"
    BACKOFF = "backoff"
    WAIT = "wait"  # backoff, without a log line per endpoint: the cluster or the database is away
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Retry:
    how: Requeue
    delay: float = 0.0  # seconds, for AFTER


def retry_for(exc: BaseException) -> Retry:
    if isinstance(exc, KubeUnreachable) or unavailable(exc):
        return Retry(Requeue.WAIT)
    if isinstance(exc, KubeError) and exc.status == 409:
        return Retry(Requeue.NOW)
    if isinstance(exc, KubeError) and exc.retry_after is not None:
        return Retry(Requeue.AFTER, exc.retry_after)
    if isinstance(exc, PermanentError):
        return Retry(Requeue.NEVER)
    return Retry(Requeue.BACKOFF)
