"""Turns pydantic validation errors into one 400 that names each field and says how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from api.errors import BadRequest

_FRIENDLY = {
    ("name", "string_pattern_mismatch"): (
        "use 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit"
    ),
    ("healthRoute", "string_pattern_mismatch"): "must start with '/' and hold no spaces",
    ("path", "string_pattern_mismatch"): "must start with '/' and hold no spaces",
    ("port", "greater_than_equal"): "ports run from 1 to 65535",
    ("port", "less_than_equal"): "ports run from 1 to 65535",
}


def field_path(loc: Sequence[int | str]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith("function-after") or str(part).startswith("function-wrap"):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def describe(errors: Sequence[Any]) -> list[dict[str, str]]:
    fields: list[dict[str, str]] = []
    for error in errors:
        loc = error.get("loc", ())
        field = field_path(loc)
        leaf = str(loc[-1]) if loc else ""
        kind = error.get("type", "")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "missing":
            message = "is required"
        elif (leaf, kind) in _FRIENDLY:
            message = f"{_FRIENDLY[(leaf, kind)]} (got {error.get('input')!r})"
        elif kind not in ("value_error", "assertion_error") and "input" in error:
            shown = repr(error["input"])
            message = f"{message} (got {shown[:80]})"
        fields.append({"field": field, "message": message})
    return fields


def validation_error(exc: ValidationError | Sequence[Any]) -> BadRequest:
    errors = exc.errors() if isinstance(exc, ValidationError) else exc
    fields = describe(errors)
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return BadRequest(f"invalid request: {summary}", fields=fields)


def require_zones(**times: datetime | None) -> None:
    """Query times must say their zone: a naive one is a 400 naming the field."""
    for field, value in times.items():
        if value is not None and value.tzinfo is None:
            raise BadRequest(
                f"{field}: give a time zone, as in 2026-11-29T12:00:00Z", fields=[{"field": field, "message": "naive"}]
            )
