"""What a reconcile raises when the spec itself cannot work. Pure, so that the builders can raise it too;
``controller.retry`` says how every error is retried."""

from __future__ import annotations


class PermanentError(Exception):
    """The spec cannot work as written: shown in status as ``failed``, not retried until the spec changes."""
