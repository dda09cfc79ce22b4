"""One error base class carrying its HTTP status, rendered by one handler as ``{"error", "statusCode"}``."""

from __future__ import annotations

from typing import Any


class DaisError(Exception):
    status_code = 400

    def __init__(self, message: str, *, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "statusCode": self.status_code}
        if self.fields:
            body["fields"] = self.fields
        return body


class BadRequest(DaisError):
    status_code = 400


class Unauthorized(DaisError):
    status_code = 401


class Forbidden(DaisError):
    status_code = 403


class NotFound(DaisError):
    status_code = 404


class Conflict(DaisError):
    status_code = 409


class PreconditionFailed(DaisError):
    status_code = 412


class ServiceUnavailable(DaisError):
    status_code = 503
