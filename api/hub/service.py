"""The Hub as the endpoint service uses it: built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass

from api.domain.catalog import Compute, HardwareCatalog
from api.domain.spec import EndpointSpec
from api.hub.client import HubClient
from api.hub.resolve import Resolution, resolve
from api.settings import HubSettings


@dataclass(frozen=True, slots=True)
class HubResolver:
    client: HubClient
    hardware: HardwareCatalog
    headroom: float
    lenient: bool

    @classmethod
    def from_settings(cls, settings: HubSettings, hardware: HardwareCatalog) -> HubResolver:
        client = HubClient(
            endpoint=settings.url,
            timeout=settings.timeout_seconds,
            deadline=settings.retry_deadline_seconds,
            cache_seconds=settings.cache_seconds,
        )
        return cls(client, hardware, settings.memory_headroom, settings.offline == "lenient")

    def resolve(self, spec: EndpointSpec, *, compute: Compute, token: str | None) -> Resolution:
        return resolve(
            spec,
            compute=compute,
            hardware=self.hardware,
            client=self.client,
            token=token,
            headroom=self.headroom,
            lenient=self.lenient,
        )
