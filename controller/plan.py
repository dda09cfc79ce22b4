"""Pure planning: desired objects vs the live ones (from the cache) → the writes to make, in order.

An object is applied when it is missing or its content hash differs from the live object's; a live
object the endpoint no longer needs (e.g. the registry Secret after the credentials were removed) is
deleted. Identical hashes mean no write at all, which is what makes a resync of unchanged endpoints free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.desired import HASH


@dataclass(frozen=True, slots=True)
class Action:
    verb: Literal["apply", "delete"]
    kind: str
    name: str
    obj: dict[str, Any] | None = None  # the desired object, for apply


def plan(desired: Sequence[dict[str, Any]], live: Sequence[dict[str, Any]]) -> list[Action]:
    """Applies in the desired order, then deletes; ``live`` objects carry their ``kind``."""
    current = {(o["kind"], o["metadata"]["name"]): o for o in live}
    actions = []
    for obj in desired:
        key = (obj["kind"], obj["metadata"]["name"])
        found = current.pop(key, None)
        if found is None or _hash(found) != obj["metadata"]["annotations"][HASH]:
            actions.append(Action("apply", *key, obj=obj))
    actions += [Action("delete", kind, name) for kind, name in sorted(current)]
    return actions


def _hash(obj: dict[str, Any]) -> str | None:
    annotations: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(HASH)
