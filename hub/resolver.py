"""The Hub as the endpoint service uses it: built once per process from settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.domain.catalog import HardwareCatalog, HardwareRow
from core.domain.spec import EndpointSpec
from core.settings import HubSettings
from hub.client import HubClient
from hub.resolve import Resolution, resolve

TOKENS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class HubResolver:
    client: HubClient
    hardware: HardwareCatalog
    headroom: float
    lenient: bool
    token_ttl_s: float = 0.0  # how long a namespace's sealed Hub token is remembered (0: read it every time)
    _tokens: dict[str, tuple[bytes | None, float]] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: HubSettings, hardware: HardwareCatalog, *, token_ttl_s: float = 0.0
    ) -> HubResolver:
        client = HubClient(
            endpoint=settings.url,
            timeout=settings.timeout_seconds,
            deadline=settings.retry_deadline_seconds,
            cache_seconds=settings.cache_seconds,
        )
        return cls(client, hardware, settings.memory_headroom, settings.offline == "lenient", token_ttl_s)

    def namespace_token(self, namespace: str, load: Callable[[], bytes | None]) -> bytes | None:
        """The namespace's sealed Hub token, read with ``load`` at most every ``token_ttl_s``: it was one of a
        create's database round trips. A change through this process applies at once (``forget_token``);
        through another, within the TTL."""
        now = time.monotonic()
        known = self._tokens.get(namespace)
        if known is not None and now - known[1] < self.token_ttl_s:
            return known[0]
        sealed = load()
        if self.token_ttl_s > 0:
            if len(self._tokens) >= TOKENS_KEPT:
                self._tokens.clear()
            self._tokens[namespace] = (sealed, now)
        return sealed

    def forget_token(self, namespace: str) -> None:
        self._tokens.pop(namespace, None)

    def resolve(self, spec: EndpointSpec, *, compute: HardwareRow, token: str | None) -> Resolution:
        return resolve(
            spec,
            compute=compute,
            hardware=self.hardware,
            client=self.client,
            token=token,
            headroom=self.headroom,
            lenient=self.lenient,
        )
