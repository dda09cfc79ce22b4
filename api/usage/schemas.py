from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from api.schemas import Out


class UsageRow(Out):
    endpoint: str = Field(description="The endpoint's name (it may have been deleted since).")
    endpoint_id: str
    hardware: str = Field(description="The hardware row's id.")
    day: date = Field(description="The UTC day.")
    replica_hours: float
    cost: float = Field(description="At the hardware's price per hour when observed.")


class UsageTotal(Out):
    key: str = Field(description="The endpoint's name, the hardware row's id, or the day.")
    replica_hours: float
    cost: float


class UsageReport(Out):
    from_: datetime = Field(alias="from")
    to: datetime = Field(description="The end of the range, or now if that is earlier.")
    replica_hours: float
    cost: float
    items: list[UsageRow] = Field(description="Per endpoint, hardware row and day.")
    endpoints: list[UsageTotal]
    hardware: list[UsageTotal]
    days: list[UsageTotal]
