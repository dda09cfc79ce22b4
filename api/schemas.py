"""Response bodies shared by every resource: the error shape, and the base of every response model.

Response models document what the API answers (OpenAPI), so that a generated client can rely on them. Handlers
on the hot paths write pre-rendered bytes; ``tests/api/test_fuzz.py`` checks every answer against these models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Out(BaseModel):
    """A response body: camelCase on the wire, as the Inference Endpoints dialect writes it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FieldError(Out):
    field: str
    message: str


class ErrorBody(Out):
    """Every 4xx and 5xx: what went wrong and what to do, and with bad input the fields at fault."""

    error: str
    status_code: int
    fields: list[FieldError] | None = None


class Empty(Out):
    """``{}``: done, nothing more to say."""


def documented(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route whose handler writes its own bytes: the 200 body's model, for OpenAPI only."""
    return {200: {"model": model, "description": description}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the errors a route answers beyond those every route may (``EVERY_ROUTE``)."""
    return {status: ERRORS[status] for status in statuses}


ERRORS: dict[int, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad input: the message and `fields` name the field and the fix."),
        (401, "No token, or a token that is unknown, expired or revoked."),
        (403, "The token may not reach this namespace or operation."),
        (404, "Not found."),
        (409, "Conflicts with the current state (a duplicate name)."),
        (412, "If-Match does not match the endpoint's current generation."),
        (500, "A bug: the message carries the request id to report; nothing was changed."),
        (503, "A dependency (the database, the Hub, Prometheus) is down: retry later (after `Retry-After`, if given)."),
    )
}
# Every route authenticates its caller and uses the database; any may meet a bug.
EVERY_ROUTE: dict[int | str, dict[str, Any]] = {status: ERRORS[status] for status in (401, 500, 503)}
