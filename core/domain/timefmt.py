from __future__ import annotations

from datetime import UTC, datetime


def to_client_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``: the only shape the client's ``parse_datetime`` accepts."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat is C-fast; strftime showed up in LIST profiles.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def utc_now() -> datetime:
    """The wall clock, for composition roots to inject; domain logic takes ``now`` as an argument."""
    return datetime.now(UTC)
